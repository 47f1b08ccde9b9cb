//! Property tests: for every op, the tape's gradient equals f64 central differences
//! ([`gradcheck`], max relative error below [`GRADCHECK_TOL_F64`] = 1e-6) on random
//! shapes and values. Values come from a seeded RNG per case and are drawn away from
//! kinks and jumps (leaky_relu at 0, rem_euclid at multiples of m, log / div / negative
//! powers near 0, tan near pi/2).

use crate::cases::{CaseResult, Index};
use latflow_tensor::elementwise::Unary;
use latflow_tensor::layers::Linear;
use latflow_tensor::{gradcheck, GradcheckConfig, Tensor, Var, GRADCHECK_TOL_F64};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::rc::Rc;

/// Cases per property: enough to vary shapes, few enough that the suite stays fast.
/// `LATFLOW_CASES=N` overrides it for a longer run ([`crate::cases`]).
const CASES: u32 = 32;

/// Shapes of rank 1..=4 with extents 1..=4.
fn shape(g: &mut StdRng) -> Vec<usize> {
    (0..g.gen_range(1..=4)).map(|_| g.gen_range(1..=4)).collect()
}

/// Shapes of rank 2..=4 (for per-channel ops and transposes).
fn shape2(g: &mut StdRng) -> Vec<usize> {
    (0..g.gen_range(2..=4)).map(|_| g.gen_range(1..=4)).collect()
}

fn normal(shape: &[usize], rng: &mut StdRng) -> Tensor<f64> {
    Tensor::randn(shape, rng)
}

fn uniform(shape: &[usize], lo: f64, hi: f64, rng: &mut StdRng) -> Tensor<f64> {
    Tensor::uniform(shape, lo, hi, rng)
}

/// Magnitude uniform in `[lo, hi)`, random sign.
fn signed(shape: &[usize], lo: f64, hi: f64, rng: &mut StdRng) -> Tensor<f64> {
    let mut t = uniform(shape, lo, hi, rng);
    for x in t.data_mut() {
        if rng.gen::<bool>() {
            *x = -*x;
        }
    }
    t
}

/// `k m + u` with `u` in `[0.05 m, 0.95 m)`: away from the jumps of `rem_euclid(m)`.
fn off_multiples(shape: &[usize], m: f64, rng: &mut StdRng) -> Tensor<f64> {
    let mut t = uniform(shape, 0.05 * m, 0.95 * m, rng);
    for x in t.data_mut() {
        *x += m * rng.gen_range(-3i32..=3) as f64;
    }
    t
}

fn check(f: impl Fn(&[Var<f64>]) -> Var<f64>, inputs: &[Tensor<f64>], seed: u64) -> CaseResult {
    let r = gradcheck(f, inputs, GradcheckConfig { seed, ..GradcheckConfig::default() });
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    ensure!(r.passed(), "shapes {shapes:?}: {r:?}");
    ensure!(r.max_rel() < GRADCHECK_TOL_F64);
    Ok(())
}

/// One property per unary op: `$gen(shape, rng)` draws the inputs, `$f` is the op.
macro_rules! unary_props {
    ($($name:ident: $gen:expr => $f:expr;)*) => {$(
        properties! {
                        fn $name(g) cases CASES => {
                let s = shape(g);
                let seed = g.gen::<u64>();
                let mut rng = StdRng::seed_from_u64(seed);
                #[allow(clippy::redundant_closure_call)]
                let x = ($gen)(&s, &mut rng);
                check($f, &[x], seed)?;
            }
        }
    )*};
}

unary_props! {
    neg: normal => |v: &[Var<f64>]| v[0].neg();
    exp: |s: &[usize], r: &mut StdRng| uniform(s, -2.0, 2.0, r) => |v: &[Var<f64>]| v[0].exp();
    log: |s: &[usize], r: &mut StdRng| uniform(s, 0.3, 4.0, r) => |v: &[Var<f64>]| v[0].log();
    tanh: |s: &[usize], r: &mut StdRng| uniform(s, -3.0, 3.0, r) => |v: &[Var<f64>]| v[0].tanh();
    leaky_relu_001: |s: &[usize], r: &mut StdRng| signed(s, 0.05, 2.0, r) => |v: &[Var<f64>]| v[0].leaky_relu(0.01);
    leaky_relu_03: |s: &[usize], r: &mut StdRng| signed(s, 0.05, 2.0, r) => |v: &[Var<f64>]| v[0].leaky_relu(0.3);
    sin: |s: &[usize], r: &mut StdRng| uniform(s, -5.0, 5.0, r) => |v: &[Var<f64>]| v[0].sin();
    cos: |s: &[usize], r: &mut StdRng| uniform(s, -5.0, 5.0, r) => |v: &[Var<f64>]| v[0].cos();
    tan: |s: &[usize], r: &mut StdRng| uniform(s, -1.2, 1.2, r) => |v: &[Var<f64>]| v[0].tan();
    atan: |s: &[usize], r: &mut StdRng| uniform(s, -4.0, 4.0, r) => |v: &[Var<f64>]| v[0].atan();
    square: normal => |v: &[Var<f64>]| v[0].square();
    powi_3: normal => |v: &[Var<f64>]| v[0].powi(3);
    powi_5: |s: &[usize], r: &mut StdRng| uniform(s, -1.5, 1.5, r) => |v: &[Var<f64>]| v[0].powi(5);
    powi_0: normal => |v: &[Var<f64>]| v[0].powi(0);
    powi_neg1: |s: &[usize], r: &mut StdRng| signed(s, 0.4, 2.0, r) => |v: &[Var<f64>]| v[0].powi(-1);
    powi_neg3: |s: &[usize], r: &mut StdRng| signed(s, 0.5, 2.0, r) => |v: &[Var<f64>]| v[0].powi(-3);
    add_scalar: normal => |v: &[Var<f64>]| v[0].add_scalar(-0.37);
    mul_scalar: normal => |v: &[Var<f64>]| v[0].mul_scalar(2.9);
    rem_euclid_tau: |s: &[usize], r: &mut StdRng| off_multiples(s, std::f64::consts::TAU, r)
        => |v: &[Var<f64>]| v[0].rem_euclid(std::f64::consts::TAU);
    rem_euclid_07: |s: &[usize], r: &mut StdRng| off_multiples(s, 0.7, r) => |v: &[Var<f64>]| v[0].rem_euclid(0.7);
    sum_all: normal => |v: &[Var<f64>]| v[0].sum();
    mean_all: normal => |v: &[Var<f64>]| v[0].mean();
    transpose: |s: &[usize], r: &mut StdRng| { let mut s = s.to_vec(); s.insert(0, 2); normal(&s, r) }
        => |v: &[Var<f64>]| v[0].t();
}

type Bin = fn(&Var<f64>, &Var<f64>) -> Var<f64>;
const BINARY: [(&str, Bin); 4] =
    [("add", |a, b| a.add(b)), ("sub", |a, b| a.sub(b)), ("mul", |a, b| a.mul(b)), ("div", |a, b| a.div(b))];

properties! {

    fn binary_same_shape(g) cases CASES => {
        let s = shape(g);
        let op = g.gen_range(0usize..4);
        let seed = g.gen::<u64>();
        let mut rng = StdRng::seed_from_u64(seed);
        let (name, f) = BINARY[op];
        let (a, b) = (normal(&s, &mut rng), signed(&s, 0.4, 2.0, &mut rng));
        check(|v| f(&v[0], &v[1]), &[a, b], seed).map_err(|e| format!("{name}: {e}"))?;
    }

    fn binary_scalar_broadcast(g) cases CASES => {
        let s = shape(g);
        let op = g.gen_range(0usize..4);
        let swap: bool = g.gen();
        let seed = g.gen::<u64>();
        let mut rng = StdRng::seed_from_u64(seed);
        let (name, f) = BINARY[op];
        let (x, c) = (signed(&s, 0.4, 2.0, &mut rng), signed(&[], 0.4, 2.0, &mut rng));
        let g = move |v: &[Var<f64>]| {
            let c = v[1].broadcast_to(v[0].shape());
            if swap { f(&c, &v[0]) } else { f(&v[0], &c) }
        };
        check(g, &[x, c], seed).map_err(|e| format!("{name}: {e}"))?;
    }

    fn binary_channel_broadcast(g) cases CASES => {
        let s = shape2(g);
        let op = g.gen_range(0usize..4);
        let seed = g.gen::<u64>();
        let mut rng = StdRng::seed_from_u64(seed);
        let (name, f) = BINARY[op];
        let (x, b) = (normal(&s, &mut rng), signed(&[s[1]], 0.4, 2.0, &mut rng));
        let g = move |v: &[Var<f64>]| {
            let mut bs = vec![1; v[0].shape().len()];
            bs[1] = v[1].shape()[0];
            f(&v[0], &v[1].reshape(&bs).broadcast_to(v[0].shape()))
        };
        check(g, &[x, b], seed).map_err(|e| format!("{name}: {e}"))?;
    }

    fn add_bias(g) cases CASES => {
        let s = shape2(g);
        let seed = g.gen::<u64>();
        let mut rng = StdRng::seed_from_u64(seed);
        let (x, b) = (normal(&s, &mut rng), normal(&[s[1]], &mut rng));
        check(|v| v[0].add_bias(&v[1]), &[x, b], seed)?;
    }

    fn mul_const_mask(g) cases CASES => {
        let s = shape(g);
        let suffix = g.gen_range(0usize..=4);
        let seed = g.gen::<u64>();
        let mut rng = StdRng::seed_from_u64(seed);
        let k = suffix.min(s.len());
        let mask = Rc::new(normal(&s[s.len() - k..], &mut rng).map(|m| if m > 0.0 { 1.0 } else { 0.0 }));
        let x = normal(&s, &mut rng);
        check(move |v| v[0].mul_const(&mask), &[x], seed)?;
    }

    fn sum_and_mean_over_axes(g) cases CASES => {
        let s = shape(g);
        let pick = (0..4).map(|_| g.gen::<bool>()).collect::<Vec<_>>();
        let mean: bool = g.gen();
        let seed = g.gen::<u64>();
        let mut rng = StdRng::seed_from_u64(seed);
        let axes: Vec<usize> = (0..s.len()).filter(|&d| pick[d]).collect();
        let x = normal(&s, &mut rng);
        check(move |v| if mean { v[0].mean_axes(&axes) } else { v[0].sum_axes(&axes) }, &[x], seed)?;
    }

    fn logsumexp(g) cases CASES => {
        let s = shape(g);
        let axis = Index::draw(g);
        let seed = g.gen::<u64>();
        let mut rng = StdRng::seed_from_u64(seed);
        let axis = axis.index(s.len());
        let x = normal(&s, &mut rng).map(|x| 3.0 * x);
        check(move |v| v[0].logsumexp(axis), &[x], seed)?;
    }

    fn roll(g) cases CASES => {
        let s = shape(g);
        let axis = Index::draw(g);
        let shift = g.gen_range(-9isize..=9);
        let seed = g.gen::<u64>();
        let mut rng = StdRng::seed_from_u64(seed);
        let axis = axis.index(s.len());
        let x = normal(&s, &mut rng);
        check(move |v| v[0].roll(axis, shift), &[x], seed)?;
    }

    fn reshape_unsqueeze_squeeze(g) cases CASES => {
        let s = shape(g);
        let axis = Index::draw(g);
        let seed = g.gen::<u64>();
        let mut rng = StdRng::seed_from_u64(seed);
        let axis = axis.index(s.len() + 1);
        let x = normal(&s, &mut rng);
        let n = x.len();
        check(move |v| v[0].reshape(&[n]).reshape(v[0].shape()).unsqueeze(axis).mul_scalar(1.5).squeeze(axis), &[x], seed)?;
    }

    fn broadcast_to(g) cases CASES => {
        let s = shape(g);
        let ones = (0..4).map(|_| g.gen::<bool>()).collect::<Vec<_>>();
        let lead = g.gen_range(0usize..=2);
        let seed = g.gen::<u64>();
        let mut rng = StdRng::seed_from_u64(seed);
        let small: Vec<usize> = s.iter().enumerate().map(|(d, &n)| if ones[d] { 1 } else { n }).collect();
        let mut big = vec![3; lead];
        big.extend(&s);
        let x = normal(&small, &mut rng);
        check(move |v| v[0].broadcast_to(&big), &[x], seed)?;
    }

    fn stack(g) cases CASES => {
        let s = shape(g);
        let axis = Index::draw(g);
        let k = g.gen_range(1usize..=3);
        let seed = g.gen::<u64>();
        let mut rng = StdRng::seed_from_u64(seed);
        let axis = axis.index(s.len() + 1);
        let xs: Vec<Tensor<f64>> = (0..k).map(|_| normal(&s, &mut rng)).collect();
        check(move |v| Var::stack(v, axis), &xs, seed)?;
    }

    fn concat(g) cases CASES => {
        let s = shape(g);
        let axis = Index::draw(g);
        let sizes = (0..g.gen_range(1..=3)).map(|_| g.gen_range(1usize..=3)).collect::<Vec<_>>();
        let seed = g.gen::<u64>();
        let mut rng = StdRng::seed_from_u64(seed);
        let axis = axis.index(s.len());
        let xs: Vec<Tensor<f64>> = sizes
            .iter()
            .map(|&n| {
                let mut si = s.clone();
                si[axis] = n;
                normal(&si, &mut rng)
            })
            .collect();
        check(move |v| Var::concat(v, axis), &xs, seed)?;
    }

    fn select_and_narrow(g) cases CASES => {
        let s = shape(g);
        let axis = Index::draw(g);
        let a = Index::draw(g);
        let b = Index::draw(g);
        let seed = g.gen::<u64>();
        let mut rng = StdRng::seed_from_u64(seed);
        let axis = axis.index(s.len());
        let n = s[axis];
        let (start, index) = (a.index(n), b.index(n));
        let len = 1 + b.index(n - start);
        let x = normal(&s, &mut rng);
        check(move |v| Var::concat(&[v[0].narrow(axis, start, len), v[0].select(axis, index).unsqueeze(axis)], axis), &[x], seed)?;
    }

    fn matmul(g) cases CASES => {
        let batch = (0..g.gen_range(0..=2)).map(|_| g.gen_range(1usize..=3)).collect::<Vec<_>>();
        let m = g.gen_range(1usize..=4);
        let k = g.gen_range(1usize..=4);
        let n = g.gen_range(1usize..=4);
        let seed = g.gen::<u64>();
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut sa, mut sb) = (batch.clone(), batch);
        sa.extend([m, k]);
        sb.extend([k, n]);
        let (a, b) = (normal(&sa, &mut rng), normal(&sb, &mut rng));
        check(|v| v[0].matmul(&v[1]), &[a, b], seed)?;
    }

    fn linear_layer(g) cases CASES => {
        let n = g.gen_range(1usize..=4);
        let fan_in = g.gen_range(1usize..=5);
        let fan_out = g.gen_range(1usize..=5);
        let seed = g.gen::<u64>();
        let mut rng = StdRng::seed_from_u64(seed);
        let l = Linear::<f64>::new(fan_in, fan_out, &mut rng);
        let x = normal(&[n, fan_in], &mut rng);
        check(|v| Linear::forward(&v[0], &v[1], &v[2]), &[x, l.weight, l.bias], seed)?;
    }

    fn conv2d(g) cases CASES => {
        let n = g.gen_range(1usize..=2);
        let cin = g.gen_range(1usize..=3);
        let cout = g.gen_range(1usize..=3);
        let k = [1usize, 3, 5][g.gen_range(0..3)];
        let dh = g.gen_range(0usize..=3);
        let dw = g.gen_range(0usize..=3);
        let bias: bool = g.gen();
        let seed = g.gen::<u64>();
        let mut rng = StdRng::seed_from_u64(seed);
        let (h, w) = (k + dh, k + dw);
        let x = normal(&[n, cin, h, w], &mut rng);
        let wt = normal(&[cout, cin, k, k], &mut rng);
        if bias {
            let b = normal(&[cout], &mut rng);
            check(|v| v[0].conv2d(&v[1], Some(&v[2])), &[x, wt, b], seed)?;
        } else {
            check(|v| v[0].conv2d(&v[1], None), &[x, wt], seed)?;
        }
    }

    /// conv -> leaky_relu -> conv -> tanh, with every pre-activation at least 1e-3 from
    /// the kink (cases that are not are discarded).
    fn conv_net(g) cases CASES => {
        let n = g.gen_range(1usize..=2);
        let hidden = g.gen_range(1usize..=4);
        let h = g.gen_range(3usize..=5);
        let w = g.gen_range(3usize..=5);
        let seed = g.gen::<u64>();
        let mut rng = StdRng::seed_from_u64(seed);
        let x = normal(&[n, 1, h, w], &mut rng);
        let (w1, b1) = (normal(&[hidden, 1, 3, 3], &mut rng), normal(&[hidden], &mut rng));
        let (w2, b2) = (normal(&[1, hidden, 3, 3], &mut rng).map(|x| 0.3 * x), normal(&[1], &mut rng));
        let pre = Var::constant(x.clone()).conv2d(&Var::constant(w1.clone()), Some(&Var::constant(b1.clone())));
        assume!(pre.value().data().iter().all(|p| p.abs() > 1e-3)); // a case too close to the kink is skipped
        let f = |v: &[Var<f64>]| v[0].conv2d(&v[1], Some(&v[2])).leaky_relu(0.01).conv2d(&v[3], Some(&v[4])).tanh();
        check(f, &[x.clone(), w1.clone(), b1.clone(), w2.clone(), b2.clone()], seed)?;
        // the same net with conv + bias + activation fused into single ops
        let fused = |v: &[Var<f64>]| {
            v[0].conv2d_act(&v[1], Some(&v[2]), Some(Unary::LeakyRelu(0.01)))
                .conv2d_act(&v[3], Some(&v[4]), Some(Unary::Tanh))
        };
        check(fused, &[x, w1, b1, w2, b2], seed)?;
    }

    /// The fused conv + activation gives the same values and gradients as the two ops.
    fn conv2d_act_equals_conv_then_activation(g) cases CASES => {
        let n = g.gen_range(1usize..=2);
        let cin = g.gen_range(1usize..=3);
        let cout = g.gen_range(1usize..=3);
        let slope = g.gen_range(0.001f64..1.0);
        let tanh: bool = g.gen();
        let seed = g.gen::<u64>();
        let mut rng = StdRng::seed_from_u64(seed);
        let x = Var::param(normal(&[n, cin, 5, 4], &mut rng));
        let w = Var::param(normal(&[cout, cin, 3, 3], &mut rng));
        let b = Var::param(normal(&[cout], &mut rng));
        let act = if tanh { Unary::Tanh } else { Unary::LeakyRelu(slope) };
        let two = x.conv2d(&w, Some(&b)).unary(act);
        let one = x.conv2d_act(&w, Some(&b), Some(act));
        ensure_eq!(one.value().data(), two.value().data());
        let gt = normal(&[n, cout, 5, 4], &mut rng);
        let g2 = two.mul_const(&gt).sum().backward();
        let g1 = one.mul_const(&gt).sum().backward();
        for v in [&x, &w, &b] {
            let (a, c) = (g1.get(v).unwrap(), g2.get(v).unwrap());
            for (p, q) in a.data().iter().zip(c.data()) {
                ensure!((p - q).abs() <= 1e-12 * (1.0 + q.abs()), "{} vs {}", p, q);
            }
        }
    }

    fn logsumexp_of_masked_sin(g) cases CASES => {
        let n = g.gen_range(1usize..=3);
        let l = g.gen_range(2usize..=5);
        let seed = g.gen::<u64>();
        let mut rng = StdRng::seed_from_u64(seed);
        let mask = Rc::new(Tensor::from_vec(&[l, l], (0..l * l).map(|i| ((i / l + i % l) % 2) as f64).collect()));
        let x = uniform(&[n, l, l], -4.0, 4.0, &mut rng);
        check(move |v| v[0].sin().mul_const(&mask).reshape(&[n, l * l]).logsumexp(1), &[x], seed)?;
    }

    /// A value used several times (gradients accumulate) through several paths.
    fn reuse_accumulates(g) cases CASES => {
        let s = shape(g);
        let seed = g.gen::<u64>();
        let mut rng = StdRng::seed_from_u64(seed);
        let x = uniform(&s, -1.0, 1.0, &mut rng);
        check(|v| v[0].mul(&v[0]).add(&v[0].sin()).mul(&v[0].tanh()).sub(&v[0]), &[x], seed)?;
    }
}

/// f32 on the tutorial's 8x8 lattice (the AVX-512 kernels where the CPU has them, which
/// apply LeakyReLU per sample inside the conv): the fused op's values are the two ops'
/// bit for bit, on one thread (batch 3) and threaded (batch 200).
#[test]
fn conv2d_act_leaky_f32_on_8x8_equals_conv_then_activation() {
    let mut rng = StdRng::seed_from_u64(3);
    for (n, cin, cout) in [(3, 1, 8), (200, 8, 8), (200, 2, 8), (3, 8, 3)] {
        let x = Var::constant(Tensor::<f32>::randn(&[n, cin, 8, 8], &mut rng));
        let w = Var::constant(Tensor::<f32>::randn(&[cout, cin, 3, 3], &mut rng));
        let b = Var::constant(Tensor::<f32>::randn(&[cout], &mut rng));
        let act = Unary::LeakyRelu(0.01f32);
        let two = x.conv2d(&w, Some(&b)).unary(act);
        let one = x.conv2d_act(&w, Some(&b), Some(act));
        assert_eq!(one.value(), two.value(), "n {n}, {cin} -> {cout}");
    }
}
