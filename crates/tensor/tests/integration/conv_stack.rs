//! `conv_stack::conv_stack_lanes` (a conv net as one node, its activations in the
//! samples-as-lanes layout) against the per-layer ops it replaces (`Var::conv2d_act`), on
//! the nets of the flows (phi^4's 1 -> 8 -> 8 -> 2 with a final tanh, U(1)'s 2 -> 8 -> 8 -> 3)
//! and a tanh-hidden one, inside a one-thread rayon pool (a training shard): the forward
//! values bit for bit; the gradients bit for bit where every layer takes the fused FFT
//! backward pass in both (U(1)'s net), else within [`STACK_GRAD_TOL_F32`]. And where the
//! path must not apply.

use latflow_tensor::conv_stack::{conv_stack_lanes, lanes_applies, LANES_MIN_BATCH};
use latflow_tensor::elementwise::Unary;
use latflow_tensor::kernels::{conv2d, conv2d_avx512, conv2d_fft};
use latflow_tensor::{Tensor, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Largest difference of a gradient tensor of the lanes path from the per-layer ops',
/// relative to the tensor's largest magnitude. Both are f32 sums of a few hundred terms per
/// lane through three layers (rounding ~ 300 x 6e-8 = 2e-5 of the magnitudes each) in
/// different orders; a tap, channel or sample out of place gives differences of order 1.
const STACK_GRAD_TOL_F32: f64 = 1e-4;

/// A net's channels, its activations, whether its gradients must match bit for bit, whether
/// the input needs its gradient (not for the first coupling's net: the prior sample), and the
/// parameters held constant (by index into `[w_0, b_0, w_1, ...]`).
type Case = (Vec<usize>, Vec<Option<Unary<f32>>>, bool, bool, Vec<usize>);

fn lanes_path_here() -> bool {
    conv2d_avx512::available() && conv2d_fft::available() && std::env::var_os("LATFLOW_NO_LANES").is_none()
}

/// A net `channels[0] -> ... -> channels[last]` (3x3, PyTorch-like scales) as parameter vars.
fn net(channels: &[usize], rng: &mut StdRng) -> Vec<Var<f32>> {
    channels
        .windows(2)
        .flat_map(|c| {
            let bound = 1.0 / ((c[0] * 9) as f64).sqrt();
            [
                Var::param(Tensor::uniform(&[c[1], c[0], 3, 3], -bound, bound, rng)),
                Var::param(Tensor::uniform(&[c[1]], -bound, bound, rng)),
            ]
        })
        .collect()
}

fn per_layer(x: &Var<f32>, p: &[Var<f32>], acts: &[Option<Unary<f32>>]) -> Var<f32> {
    let mut h = x.clone();
    for (i, a) in acts.iter().enumerate() {
        h = h.conv2d_act(&p[2 * i], Some(&p[2 * i + 1]), *a);
    }
    h
}

fn bits(t: &Tensor<f32>) -> Vec<u32> {
    t.data().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn the_lanes_stack_gives_the_per_layer_values_and_gradients() {
    if !lanes_path_here() {
        eprintln!("skipped: no AVX-512 or the FFT kernels are off");
        return;
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let leaky = Some(Unary::LeakyRelu(0.01f32));
    let n = conv2d::fft_min_batch().max(LANES_MIN_BATCH).next_multiple_of(16);
    // (channels, activations, gradients bit for bit)
    let cases: Vec<Case> = vec![
        (vec![1, 8, 8, 2], vec![leaky, leaky, Some(Unary::Tanh)], false, true, vec![]),
        (vec![1, 8, 8, 2], vec![leaky, leaky, Some(Unary::Tanh)], false, false, vec![]),
        (vec![2, 8, 8, 3], vec![leaky, leaky, None], true, true, vec![]),
        (vec![2, 8, 8, 3], vec![leaky, leaky, None], true, false, vec![0, 1, 3]),
        (vec![1, 8, 8, 2], vec![Some(Unary::Tanh), Some(Unary::Tanh), None], false, true, vec![]),
        // direct layers only (1 -> 4, 4 -> 4: outputs >= inputs), the last one fused FFT
        (vec![1, 4, 4, 4], vec![leaky, leaky, None], false, true, vec![]),
    ];
    for (seed, (channels, acts, same_bits, x_grad, frozen)) in cases.into_iter().enumerate() {
        // vars are not Send: everything on the pool's thread
        pool.install(move || {
            let mut rng = StdRng::seed_from_u64(11 + seed as u64);
            let p: Vec<Var<f32>> = net(&channels, &mut rng)
                .into_iter()
                .enumerate()
                .map(|(i, v)| if frozen.contains(&i) { Var::constant(v.value().clone()) } else { v })
                .collect();
            let x0 = Tensor::uniform(&[n, channels[0], 8, 8], -1.5, 1.5, &mut rng);
            let x = if x_grad { Var::param(x0) } else { Var::constant(x0) };
            let r = Var::constant(Tensor::uniform(&[n, *channels.last().unwrap(), 8, 8], -1.0, 1.0, &mut rng));
            assert!(lanes_applies(&x, &p, &acts), "{channels:?}: the lanes path should apply");
            let yl = conv_stack_lanes(&x, &p, &acts);
            let yr = per_layer(&x, &p, &acts);
            assert_eq!(bits(yl.value()), bits(yr.value()), "{channels:?}: forward values");
            let gl = yl.mul(&r).sum().backward();
            let gr = yr.mul(&r).sum().backward();
            for (i, v) in std::iter::once(&x).chain(&p).enumerate() {
                let (a, b) = match (gl.get(v), gr.get(v)) {
                    (Some(a), Some(b)) => (a, b),
                    (None, None) => {
                        assert!(!v.requires_grad(), "{channels:?}: no gradient of input {i}");
                        continue;
                    }
                    (a, b) => panic!("{channels:?}: gradient of input {i}: {} against {}", a.is_some(), b.is_some()),
                };
                if same_bits {
                    assert_eq!(bits(a), bits(b), "{channels:?}: gradient of input {i}");
                } else {
                    let scale = b.data().iter().fold(0f64, |m, v| m.max(f64::from(v.abs())));
                    let diff = a.data().iter().zip(b.data()).fold(0f64, |m, (a, b)| m.max(f64::from((a - b).abs())));
                    assert!(
                        diff <= STACK_GRAD_TOL_F32 * scale,
                        "{channels:?}: gradient of input {i}: {diff} of {scale}"
                    );
                }
            }
        });
    }
}

#[test]
fn the_lanes_stack_applies_only_to_training_shards_it_computes() {
    if !lanes_path_here() {
        eprintln!("skipped: no AVX-512 or the FFT kernels are off");
        return;
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let leaky = Some(Unary::LeakyRelu(0.01f32));
    let acts = vec![leaky, leaky, Some(Unary::Tanh)];
    let n = conv2d::fft_min_batch().max(LANES_MIN_BATCH).next_multiple_of(16);
    let build = || {
        let mut rng = StdRng::seed_from_u64(12);
        let p = net(&[1, 8, 8, 2], &mut rng);
        let x = Var::constant(Tensor::uniform(&[n, 1, 8, 8], -1.0, 1.0, &mut rng));
        (p, x)
    };
    // outside a rayon worker (the per-layer ops thread the batch themselves)
    let (p, x) = build();
    assert!(!lanes_applies(&x, &p, &acts));
    let acts2 = acts.clone();
    pool.install(move || {
        let (acts, (p, x)) = (acts2, build());
        assert!(lanes_applies(&x, &p, &acts));
        // parameters without gradients (flow-HMC's input-only gradients)
        let frozen: Vec<Var<f32>> = p.iter().map(|v| v.detach()).collect();
        assert!(!lanes_applies(&x, &frozen, &acts));
        // a shard below LANES_MIN_BATCH (the demo's shards of 32)
        let small = Var::constant(Tensor::uniform(&[32, 1, 8, 8], -1.0, 1.0, &mut StdRng::seed_from_u64(3)));
        assert!(!lanes_applies(&small, &p, &acts));
        // a batch that is not a multiple of 16
        let odd = Var::constant(Tensor::uniform(&[n + 8, 1, 8, 8], -1.0, 1.0, &mut StdRng::seed_from_u64(1)));
        assert!(!lanes_applies(&odd, &p, &acts));
        // another lattice
        let big = Var::constant(Tensor::uniform(&[n, 1, 16, 16], -1.0, 1.0, &mut StdRng::seed_from_u64(2)));
        assert!(!lanes_applies(&big, &p, &acts));
        // a direct layer with fewer outputs than inputs (4 -> 2: the NCHW kernel rolls the
        // outputs, another order of the sums)
        let narrow = net(&[1, 4, 4, 2], &mut StdRng::seed_from_u64(4));
        assert!(!lanes_applies(&x, &narrow, &acts));
        // an activation without a derivative from its output
        assert!(!lanes_applies(&x, &p, &[leaky, Some(Unary::Exp), None]));
        // f64
        let p64: Vec<Var<f64>> = p.iter().map(|v| Var::param(v.value().cast::<f64>())).collect();
        let x64 = Var::constant(x.value().cast::<f64>());
        assert!(!lanes_applies(&x64, &p64, &acts.iter().map(|a| a.map(|_| Unary::Tanh)).collect::<Vec<_>>()));
    });
}
