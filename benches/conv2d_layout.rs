//! What the samples-as-lanes layout (`latflow_tensor::conv_stack`) saves the conv kernels: the
//! forward pass and the fused backward pass (both gradients) of the tutorial's FFT layers (8 -> 8, 8 -> 3, 8 -> 2;
//! 8x8 lattice, 3x3 kernel, f32, LeakyReLU, one thread) on NCHW tensors
//! (`conv2d_fft::forward`, `backward_fused`: each plane of 16 samples loaded and stored through
//! a 16x16 transpose) against the same passes on tensors already in the kernels' layout
//! (`forward_lanes`, `backward_fused_lanes`: 64 contiguous vectors per plane, no transposes;
//! the same bits); and the direct kernels' forward pass of the 1 -> 8 and 2 -> 8 layers
//! (`conv2d_avx512::forward`, a lane permutation per tap, against `conv2d_avx512::lanes`: plain
//! FMAs on shifted site vectors; the same bits); and the backward pass of the layers the
//! per-layer ops give to the direct kernels (8 -> 2, 1 -> 8): the direct AVX-512 fused pass on
//! NCHW against the fused FFT pass in the lanes layout (what `conv_stack` runs; row `bwd
//! D->FFT`). Median us per call, the two alternated three
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

/// The NCHW and the lanes version of a pass, alternated three times: the middle of each
/// side's three medians of 200 calls, in us.
#[cfg(target_arch = "x86_64")]
fn versus(mut nchw: impl FnMut(), mut lanes: impl FnMut()) -> (f64, f64) {
    let (mut a, mut l) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        a.push(common::median_ms(&mut nchw, 200) * 1e3);
        l.push(common::median_ms(&mut lanes, 200) * 1e3);
    }
    a.sort_by(f64::total_cmp);
    l.sort_by(f64::total_cmp);
    (a[1], l[1])
}

/// One line of the table.
#[cfg(target_arch = "x86_64")]
fn row(cin: usize, cout: usize, n: usize, pass: &str, (a, l): (f64, f64)) {
    println!("{cin}->{cout}  {n:>8}   {pass:<10} {a:>9.1}  {l:>11.1}  {:>11.2}x", a / l);
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
    println!("{}", common::cpu_model());
    println!("shape     batch   pass        NCHW (us)   lanes (us)   NCHW / lanes");
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
            let (mut ya, mut yb) = (vec![0f32; s.output_len()], vec![0f32; s.output_len()]);
            let t = versus(
                || conv2d_avx512::forward(black_box(&x), &w, Some(&b), s, &mut ya, false, Some(SLOPE)),
                || conv2d_avx512::lanes::forward_lanes(black_box(&xl), &w, Some(&b), s, &mut yb, Some(SLOPE)),
            );
            row(cin, cout, n, "fwd direct", t);
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
            let (mut ya, mut yb) = (vec![0f32; s.output_len()], vec![0f32; s.output_len()]);
            let t = versus(
                || conv2d_fft::forward(black_box(&x), &w, Some(&b), s, &mut ya, false, Some(SLOPE)),
                || conv2d_fft::forward_lanes(black_box(&xl), &w, Some(&b), s, &mut yb, Some(SLOPE)),
            );
            row(cin, cout, n, "forward", t);
            let grads = || (vec![0f32; s.input_len()], vec![0f32; s.weight_len()], vec![0f32; cout]);
            let ((mut dxa, mut dwa, mut dba), (mut dxb, mut dwb, mut dbb)) = (grads(), grads());
            let act = Some(ActGrad::Leaky(SLOPE));
            let t = versus(
                || {
                    let (g, dx) = (black_box(&g), Some(&mut dxa[..]));
                    conv2d_fft::backward_fused(g, &y, act, &x, &w, s, dx, &mut dwa, Some(&mut dba))
                },
                || {
                    let (gl, dx) = (black_box(&gl), Some(&mut dxb[..]));
                    conv2d_fft::backward_fused_lanes(gl, &yl, act, &xl, &w, s, dx, &mut dwb, Some(&mut dbb))
                },
            );
            row(cin, cout, n, "backward", t);
        }
    }
    // the layers whose backward pass the per-layer ops give to the direct kernels (phi^4's
    // 8 -> 2 and 1 -> 8): the direct AVX-512 fused pass on NCHW against the fused FFT pass in
    // the lanes layout, which `conv_stack` runs for them
    for (cin, cout) in [(8, 2), (1, 8)] {
        for n in [64, 1024] {
            let s = Conv2dShape { n, cin, cout, h: 8, w: 8, k: 3 };
            if !Backend::available::<f32>(&s).contains(&Backend::Fft) {
                println!("{cin}->{cout}  {n:>8}   (no FFT kernels on this CPU)");
                continue;
            }
            let mut rng = StdRng::seed_from_u64(3);
            let mut u = |len: usize| Tensor::<f32>::uniform(&[len], -1.0, 1.0, &mut rng).into_vec();
            let (x, w, g, y) = (u(s.input_len()), u(s.weight_len()), u(s.output_len()), u(s.output_len()));
            let lanes = |a: &[f32], c: usize| conv2d_fft::to_lanes(a, n, c, false);
            let (xl, yl, gl) = (lanes(&x, cin), lanes(&y, cout), lanes(&g, cout));
            let grads = || (vec![0f32; s.input_len()], vec![0f32; s.weight_len()], vec![0f32; cout]);
            let ((mut dxa, mut dwa, mut dba), (mut dxb, mut dwb, mut dbb)) = (grads(), grads());
            let act = Some(ActGrad::Leaky(SLOPE));
            let t = versus(
                || {
                    let (g, dx) = (black_box(&g), Some(&mut dxa[..]));
                    conv2d_avx512::backward_fused(g, &y, act, &x, &w, s, dx, &mut dwa, Some(&mut dba))
                },
                || {
                    let (gl, dx) = (black_box(&gl), Some(&mut dxb[..]));
                    conv2d_fft::backward_fused_lanes(gl, &yl, act, &xl, &w, s, dx, &mut dwb, Some(&mut dbb))
                },
            );
            row(cin, cout, n, "bwd D->FFT", t);
        }
    }
}
