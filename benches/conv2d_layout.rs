//! What the samples-as-lanes layout would save the FFT conv kernels: the forward pass and the
//! fused backward pass (both gradients) of the tutorial's FFT layers (8 -> 8, 8 -> 3, 8 -> 2;
//! 8x8 lattice, 3x3 kernel, f32, LeakyReLU, one thread) on NCHW tensors
//! (`conv2d_fft::forward`, `backward_fused`: each plane of 16 samples loaded and stored through
//! a 16x16 transpose) against the same passes on tensors already in the kernels' layout
//! (`forward_lanes`, `backward_fused_lanes`: 64 contiguous vectors per plane, no transposes;
//! the same bits); and the direct kernels' forward pass of the 1 -> 8 and 2 -> 8 layers
//! (`conv2d_avx512::forward`, a lane permutation per tap, against `conv2d_avx512::lanes`: plain
//! FMAs on shifted site vectors; the same bits). Median us per call, the two alternated three
//! times and the middle median kept; on CPUs without AVX-512 it prints nothing to compare.
//!
//! ```text
//! cargo bench --bench conv2d_layout
//! ```

mod common;

fn main() {
    #[cfg(target_arch = "x86_64")]
    run();
    #[cfg(not(target_arch = "x86_64"))]
    println!("conv2d_layout: the FFT kernels are x86-64 only");
}

/// The middle of three medians of 200 calls.
#[cfg(target_arch = "x86_64")]
fn middle(mut f: impl FnMut()) -> f64 {
    let mut m: Vec<f64> = (0..3).map(|_| common::median_ms(&mut f, 200) * 1e3).collect();
    m.sort_by(f64::total_cmp);
    m[1]
}

#[cfg(target_arch = "x86_64")]
fn run() {
    use latflow_tensor::kernels::conv2d::{Backend, Conv2dShape};
    use latflow_tensor::kernels::conv2d_avx512::ActGrad;
    use latflow_tensor::kernels::{conv2d_avx512, conv2d_fft};
    use latflow_tensor::Tensor;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::hint::black_box;
    const SLOPE: f32 = 0.01;
    latflow_tensor::malloc::keep_large_blocks_on_heap();
    println!(
        "{}",
        std::process::Command::new("sh")
            .arg("-c")
            .arg("lscpu | grep 'Model name'")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    );
    println!("shape     batch   pass       NCHW (us)   lanes (us)   NCHW / lanes");
    // the direct kernels' layers (phi^4 1 -> 8, U(1) 2 -> 8): the one-thread AVX-512 forward
    // kernel on NCHW (in-register permutations per tap) against the lanes one (plain FMAs)
    for (cin, cout) in [(1, 8), (2, 8)] {
        for n in [64, 1024] {
            let s = Conv2dShape { n, cin, cout, h: 8, w: 8, k: 3 };
            if !Backend::available::<f32>(&s).contains(&Backend::Avx512) {
                println!("{cin}->{cout}  {n:>8}   (no AVX-512 kernels on this CPU)");
                continue;
            }
            let mut rng = StdRng::seed_from_u64(2);
            let mut u = |len: usize| Tensor::<f32>::uniform(&[len], -1.0, 1.0, &mut rng).into_vec();
            let (x, w, b) = (u(s.input_len()), u(s.weight_len()), u(s.cout));
            let xl = conv2d_fft::to_lanes(&x, n, cin, false);
            let mut out = vec![0f32; s.output_len()];
            let mut t = [Vec::new(), Vec::new()];
            for _ in 0..3 {
                t[0].push(middle(|| {
                    conv2d_avx512::forward(black_box(&x), &w, Some(&b), s, &mut out, false, Some(SLOPE))
                }));
                t[1].push(middle(|| {
                    conv2d_avx512::lanes::forward_lanes(black_box(&xl), &w, Some(&b), s, &mut out, Some(SLOPE))
                }));
            }
            for v in t.iter_mut() {
                v.sort_by(f64::total_cmp);
            }
            let (a, l) = (t[0][1], t[1][1]);
            println!("{cin}->{cout}  {n:>8}   {:<9} {a:>10.1}  {l:>11.1}  {:>11.2}x", "fwd direct", a / l);
        }
    }
    for (cin, cout) in [(8, 8), (8, 3), (8, 2)] {
        for n in [64, 1024] {
            let s = Conv2dShape { n, cin, cout, h: 8, w: 8, k: 3 };
            if !Backend::available::<f32>(&s).contains(&Backend::Fft) {
                println!("{cin}->{cout}  {n:>8}   (no FFT kernels on this CPU)");
                continue;
            }
            let mut rng = StdRng::seed_from_u64(1);
            let mut u = |len: usize| Tensor::<f32>::uniform(&[len], -1.0, 1.0, &mut rng).into_vec();
            let (x, w, b, g) = (u(s.input_len()), u(s.weight_len()), u(s.cout), u(s.output_len()));
            let lanes = |a: &[f32], c: usize| conv2d_fft::to_lanes(a, n, c, false);
            let mut y = vec![0f32; s.output_len()];
            conv2d_fft::forward(&x, &w, Some(&b), s, &mut y, false, Some(SLOPE));
            let (xl, yl, gl) = (lanes(&x, cin), lanes(&y, cout), lanes(&g, cout));
            let mut out = vec![0f32; s.output_len()];
            let (mut dx, mut dw, mut db) = (vec![0f32; s.input_len()], vec![0f32; s.weight_len()], vec![0f32; cout]);
            let act = Some(ActGrad::Leaky(SLOPE));
            let (mut fwd, mut bwd) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
            for _ in 0..3 {
                fwd[0]
                    .push(middle(|| conv2d_fft::forward(black_box(&x), &w, Some(&b), s, &mut out, false, Some(SLOPE))));
                fwd[1]
                    .push(middle(|| conv2d_fft::forward_lanes(black_box(&xl), &w, Some(&b), s, &mut out, Some(SLOPE))));
                bwd[0].push(middle(|| {
                    conv2d_fft::backward_fused(black_box(&g), &y, act, &x, &w, s, Some(&mut dx), &mut dw, Some(&mut db))
                }));
                bwd[1].push(middle(|| {
                    conv2d_fft::backward_fused_lanes(
                        black_box(&gl),
                        &yl,
                        act,
                        &xl,
                        &w,
                        s,
                        Some(&mut dx),
                        &mut dw,
                        Some(&mut db),
                    )
                }));
            }
            for (pass, t) in [("forward", &mut fwd), ("backward", &mut bwd)] {
                for v in t.iter_mut() {
                    v.sort_by(f64::total_cmp);
                }
                let (a, l) = (t[0][1], t[1][1]);
                println!("{cin}->{cout}  {n:>8}   {pass:<9} {a:>10.1}  {l:>11.1}  {:>11.2}x", a / l);
            }
        }
    }
}
