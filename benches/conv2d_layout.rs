//! What the samples-as-lanes layout would save the FFT conv kernels: the forward pass of the
//! tutorial's FFT layers (8 -> 8, 8 -> 3, 8 -> 2; 8x8 lattice, 3x3 kernel, f32, LeakyReLU, one
//! thread) on NCHW tensors (`conv2d_fft::forward`: each plane of 16 samples loaded and stored
//! through a 16x16 transpose) against the same pass on tensors already in the kernels' layout
//! (`conv2d_fft::forward_lanes`: 64 contiguous vectors per plane, no transposes; the same
//! bits). Median us per call, the two alternated three times and the middle median kept; on
//! CPUs without AVX-512 it prints nothing to compare.
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
    use latflow_tensor::kernels::conv2d_fft;
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
    println!("shape     batch   NCHW (us)   lanes (us)   NCHW / lanes");
    for (cin, cout) in [(8, 8), (8, 3), (8, 2)] {
        for n in [64, 1024] {
            let s = Conv2dShape { n, cin, cout, h: 8, w: 8, k: 3 };
            if !Backend::available::<f32>(&s).contains(&Backend::Fft) {
                println!("{cin}->{cout}  {n:>8}   (no FFT kernels on this CPU)");
                continue;
            }
            let mut rng = StdRng::seed_from_u64(1);
            let mut u = |len: usize| Tensor::<f32>::uniform(&[len], -1.0, 1.0, &mut rng).into_vec();
            let (x, w, b) = (u(s.input_len()), u(s.weight_len()), u(s.cout));
            let xl = conv2d_fft::to_lanes(&x, n, cin, false);
            let mut y = vec![0f32; s.output_len()];
            let (mut nchw, mut lanes) = (Vec::new(), Vec::new());
            for _ in 0..3 {
                nchw.push(middle(|| conv2d_fft::forward(black_box(&x), &w, Some(&b), s, &mut y, false, Some(SLOPE))));
                lanes.push(middle(|| conv2d_fft::forward_lanes(black_box(&xl), &w, Some(&b), s, &mut y, Some(SLOPE))));
            }
            nchw.sort_by(f64::total_cmp);
            lanes.sort_by(f64::total_cmp);
            let (a, l) = (nchw[1], lanes[1]);
            println!("{cin}->{cout}  {n:>8}  {a:>10.1}  {l:>11.1}  {:>11.2}x", a / l);
        }
    }
}
