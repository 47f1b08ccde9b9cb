//! One conv layer's backward pass as a training step runs it (a shard on a rayon worker,
//! one thread; `y = LeakyReLU(conv(x))`, both gradients from `g = dL/dy`): what
//! `conv2d::backward_act` picks, the two passes on their own backends (`g act'(y)` formed,
//! then `backward_input` and `backward_weight`, each on the backend `auto_backend_for`
//! picks: FFT input gradient, Winograd or direct weight gradient) and the fused FFT pass
//! (`conv2d_fft::backward_fused`: `g act'(y)` formed as it is loaded and transformed once for
//! both gradients). 8x8
//! lattice, 3x3 kernel, f32, the tutorial's layers (8 -> 8, the heads 8 -> 3 and 8 -> 2, the first layers 2 -> 8 and 1 -> 8), batch 64 (a shard of a batch-1024
//! step), 128, 256; median us per call, the three variants alternated three times and the
//! middle median kept.
//!
//! ```text
//! cargo bench --bench conv2d_backward
//! ```

mod common;

use std::hint::black_box;

use common::median_ms;
use latflow_tensor::kernels::conv2d::{self, ActGrad, Conv2dShape, Pass};
use latflow_tensor::Tensor;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Median us per call over 200 calls (after 2 warm-up calls).
fn median_us(f: impl FnMut()) -> f64 {
    median_ms(f, 200) * 1e3
}

const SLOPE: f32 = 0.01;

fn main() {
    // as the training step does: large buffers stay on the heap (no mmap and page faults
    // per call)
    latflow_tensor::malloc::keep_large_blocks_on_heap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    pool.install(|| {
        println!("{}", common::cpu_model());
        println!("shape     batch   picked (us)   separate (us)   fft fused (us)   separate / fused");
        for (cin, cout) in [(8, 8), (8, 3), (8, 2), (2, 8), (1, 8)] {
            for n in [64, 128, 256] {
                let s = Conv2dShape { n, cin, cout, h: 8, w: 8, k: 3 };
                let fused_fits = latflow_tensor::kernels::conv2d::Backend::available::<f32>(&s)
                    .contains(&latflow_tensor::kernels::conv2d::Backend::Fft);
                let mut rng = StdRng::seed_from_u64(1);
                let mut u = |len: usize| Tensor::<f32>::uniform(&[len], -1.0, 1.0, &mut rng).into_vec();
                let (x, w, b, g) = (u(s.input_len()), u(s.weight_len()), u(s.cout), u(s.output_len()));
                let mut y = vec![0f32; s.output_len()];
                conv2d::forward_leaky(&x, &w, Some(&b), s, &mut y, SLOPE);
                let gz =
                    || -> Vec<f32> { g.iter().zip(&y).map(|(&g, &y)| if y > 0.0 { g } else { SLOPE * g }).collect() };
                let (mut tp, mut ts, mut tf) = (Vec::new(), Vec::new(), Vec::new());
                for _ in 0..3 {
                    tp.push(median_us(|| {
                        drop(black_box(conv2d::backward_act(&g, &y, Some(ActGrad::Leaky(SLOPE)), &x, &w, s, true)))
                    }));
                    ts.push(median_us(|| {
                        let gz = gz();
                        let (mut dx, mut dw, mut db) =
                            (vec![0f32; s.input_len()], vec![0f32; s.weight_len()], vec![0f32; s.cout]);
                        conv2d::backward_input_with(
                            conv2d::auto_backend_for::<f32>(Pass::BackwardInput, &s),
                            &gz,
                            &w,
                            s,
                            &mut dx,
                        );
                        conv2d::backward_weight(&gz, &x, s, &mut dw, Some(&mut db));
                        black_box((dx, dw, db));
                    }));
                    if fused_fits {
                        #[cfg(target_arch = "x86_64")]
                        tf.push(median_us(|| {
                            let (mut dx, mut dw, mut db) =
                                (vec![0f32; s.input_len()], vec![0f32; s.weight_len()], vec![0f32; s.cout]);
                            latflow_tensor::kernels::conv2d_fft::backward_fused(
                                &g,
                                &y,
                                Some(latflow_tensor::kernels::conv2d_avx512::ActGrad::Leaky(SLOPE)),
                                &x,
                                &w,
                                s,
                                Some(&mut dx),
                                &mut dw,
                                Some(&mut db),
                            );
                            black_box((dx, dw, db));
                        }));
                    }
                }
                let mid = |v: &mut Vec<f64>| {
                    v.sort_by(f64::total_cmp);
                    v.get(1).copied().unwrap_or(f64::NAN)
                };
                let (p, sep, f) = (mid(&mut tp), mid(&mut ts), mid(&mut tf));
                println!("{cin}->{cout} {n:>10} {p:>13.1} {sep:>15.1} {f:>16.1} {:>17.2}x", sep / f);
            }
        }
    });
}
