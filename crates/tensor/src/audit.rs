//! The gradient audit catalogue: every op of the engine (and a few whole-model
//! compositions) checked by [`gradcheck`] in f64 on seeded random inputs, plus one
//! Adam step against PyTorch's update formula. `latflow audit` prints the result as a
//! table and fails if any case fails.
//!
//! Inputs are drawn away from kinks and jumps so central differences are meaningful:
//! `leaky_relu` and `powi(-n)` inputs have `|x| >= 0.1`, `log` inputs and denominators
//! lie in `[0.5, 2]` (in magnitude), `tan` inputs in `(-1.2, 1.2)`, `rem_euclid(m)`
//! inputs at least `0.05 m` from a multiple of `m`, and pre-activations of the conv net
//! at least `1e-2` from 0 (resampled otherwise).
//!
//! ```
//! use latflow_tensor::audit::run_audit;
//! let cases = run_audit(0);
//! assert!(cases.iter().any(|c| c.op == "conv2d k=3 +bias"));
//! assert!(cases.iter().all(|c| c.passed()), "{cases:?}");
//! ```

use crate::elementwise::Unary;
use crate::layers::Linear;
use crate::{gradcheck, Adam, AdamConfig, GradcheckConfig, GradcheckReport, InputError, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One audited op: its name (with the variant: axis, kernel size, broadcast kind), the
/// shapes of its inputs, and the gradcheck result.
#[derive(Clone, Debug)]
pub struct AuditCase {
    /// Op name and variant, e.g. `"div (channel bcast)"`, `"conv2d k=5"`.
    pub op: &'static str,
    /// Input shapes, e.g. `"(2,3,5,4) (4,3,3,3) (4)"`.
    pub shapes: String,
    /// Max absolute and relative error per input, and the tolerance.
    pub report: GradcheckReport,
}

impl AuditCase {
    /// Whether the case passed (max relative error below the tolerance, all finite).
    pub fn passed(&self) -> bool {
        self.report.passed()
    }
}

/// Formats shapes as `(2,3) (3)`; a scalar is `()`.
pub fn format_shapes(shapes: &[&[usize]]) -> String {
    let one = |s: &[usize]| format!("({})", s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(","));
    shapes.iter().map(|s| one(s)).collect::<Vec<_>>().join(" ")
}

/// Builds a list of [`AuditCase`]s on seeded random inputs: the engine's catalogue
/// ([`run_audit`]) and those of crates with their own ops (the flows' fused ops) use it.
pub struct Audit {
    rng: StdRng,
    config: GradcheckConfig,
    cases: Vec<AuditCase>,
}

type F = fn(&[Var<f64>]) -> Var<f64>;

impl Audit {
    /// An empty audit drawing inputs from `seed`, each case checked with
    /// [`GradcheckConfig::default`] and the projection seed `seed`.
    pub fn new(seed: u64) -> Self {
        let config = GradcheckConfig { seed, ..GradcheckConfig::default() };
        Audit { rng: StdRng::seed_from_u64(seed), config, cases: Vec::new() }
    }

    /// The cases checked so far.
    pub fn into_cases(self) -> Vec<AuditCase> {
        self.cases
    }

    /// Checks `f` at `inputs` with [`gradcheck`] and records the case as `op`.
    pub fn check(&mut self, op: &'static str, inputs: Vec<Tensor<f64>>, f: impl Fn(&[Var<f64>]) -> Var<f64>) {
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        let shapes = format_shapes(&shapes);
        let report = gradcheck(f, &inputs, self.config);
        self.cases.push(AuditCase { op, shapes, report });
    }

    /// Standard normal entries.
    pub fn normal(&mut self, shape: &[usize]) -> Tensor<f64> {
        Tensor::randn(shape, &mut self.rng)
    }

    /// Uniform entries in `[lo, hi)`.
    pub fn uniform(&mut self, shape: &[usize], lo: f64, hi: f64) -> Tensor<f64> {
        Tensor::uniform(shape, lo, hi, &mut self.rng)
    }

    /// Entries with magnitude uniform in `[lo, hi)` and a random sign.
    pub fn signed(&mut self, shape: &[usize], lo: f64, hi: f64) -> Tensor<f64> {
        let mut t = self.uniform(shape, lo, hi);
        for x in t.data_mut() {
            if self.rng.gen::<bool>() {
                *x = -*x;
            }
        }
        t
    }

    /// Entries `k m + u` with integer `k` in `[-2, 2]` and `u` in `[0.05 m, 0.95 m)`:
    /// away from the jumps of `rem_euclid(m)`.
    pub fn off_multiples(&mut self, shape: &[usize], m: f64) -> Tensor<f64> {
        let mut t = self.uniform(shape, 0.05 * m, 0.95 * m);
        for x in t.data_mut() {
            *x += m * self.rng.gen_range(-2i32..=2) as f64;
        }
        t
    }
}

/// Central-difference audit of every op, on inputs drawn from `seed` (see the module
/// docs for how they avoid kinks). Each case uses [`GradcheckConfig::default`] with
/// the projection seed derived from `seed`.
pub fn run_audit(seed: u64) -> Vec<AuditCase> {
    let mut a = Audit::new(seed);
    elementwise_binary(&mut a);
    elementwise_unary(&mut a);
    reductions(&mut a);
    data_movement(&mut a);
    linear_algebra(&mut a);
    convolutions(&mut a);
    compositions(&mut a);
    a.cases.push(adam_case(&mut a.rng, "adam (3 steps vs PyTorch formula)", AdamConfig::default()));
    let custom = AdamConfig { lr: 0.05, beta1: 0.8, beta2: 0.95, eps: 1e-6 };
    a.cases.push(adam_case(&mut a.rng, "adam lr=.05 b=(.8,.95) eps=1e-6", custom));
    a.cases
}

fn elementwise_binary(a: &mut Audit) {
    let s = [3, 4];
    let ops: [(&'static str, F); 4] = [
        ("add", |v| v[0].add(&v[1])),
        ("sub", |v| v[0].sub(&v[1])),
        ("mul", |v| v[0].mul(&v[1])),
        ("div", |v| v[0].div(&v[1])),
    ];
    for (name, f) in ops {
        let (x, y) = (a.normal(&s), a.signed(&s, 0.5, 2.0));
        a.check(name, vec![x, y], f);
    }
    // A scalar var broadcast to the other operand's shape.
    let ops: [(&'static str, F); 4] = [
        ("add (scalar bcast)", |v| v[0].add(&v[1].broadcast_to(v[0].shape()))),
        ("sub (scalar bcast)", |v| v[0].sub(&v[1].broadcast_to(v[0].shape()))),
        ("mul (scalar bcast)", |v| v[0].mul(&v[1].broadcast_to(v[0].shape()))),
        ("div (scalar bcast)", |v| v[0].div(&v[1].broadcast_to(v[0].shape()))),
    ];
    for (name, f) in ops {
        let (x, c) = (a.normal(&[2, 3, 4]), a.signed(&[], 0.5, 2.0));
        a.check(name, vec![x, c], f);
    }
    // A per-channel (C,) var broadcast over (N, C, H, W).
    fn chan(b: &Var<f64>, like: &Var<f64>) -> Var<f64> {
        b.reshape(&[1, b.shape()[0], 1, 1]).broadcast_to(like.shape())
    }
    let ops: [(&'static str, F); 4] = [
        ("add (channel bcast)", |v| v[0].add(&chan(&v[1], &v[0]))),
        ("sub (channel bcast)", |v| v[0].sub(&chan(&v[1], &v[0]))),
        ("mul (channel bcast)", |v| v[0].mul(&chan(&v[1], &v[0]))),
        ("div (channel bcast)", |v| v[0].div(&chan(&v[1], &v[0]))),
    ];
    for (name, f) in ops {
        let (x, b) = (a.normal(&[2, 3, 4, 5]), a.signed(&[3], 0.5, 2.0));
        a.check(name, vec![x, b], f);
    }
    let (x, b) = (a.normal(&[2, 3, 4, 5]), a.normal(&[3]));
    a.check("add_bias (N,C,H,W)+(C)", vec![x, b], |v| v[0].add_bias(&v[1]));
    let (x, b) = (a.normal(&[5, 3]), a.normal(&[3]));
    a.check("add_bias (N,C)+(C)", vec![x, b], |v| v[0].add_bias(&v[1]));
    let x = a.normal(&[3, 4]);
    a.check("add_scalar 0.7", vec![x], |v| v[0].add_scalar(0.7));
    let x = a.normal(&[3, 4]);
    a.check("mul_scalar -1.3", vec![x], |v| v[0].mul_scalar(-1.3));
    let x = a.normal(&[3, 4]);
    a.check("x / constant 2.5", vec![x], |v| v[0].mul_scalar(1.0 / 2.5));
}

fn elementwise_unary(a: &mut Audit) {
    let s = [3, 5];
    let x = a.normal(&s);
    a.check("neg", vec![x], |v| v[0].neg());
    let x = a.uniform(&s, -2.0, 2.0);
    a.check("exp", vec![x], |v| v[0].exp());
    let x = a.uniform(&s, 0.5, 3.0);
    a.check("log", vec![x], |v| v[0].log());
    let x = a.uniform(&s, -2.5, 2.5);
    a.check("tanh", vec![x], |v| v[0].tanh());
    let x = a.signed(&s, 0.1, 2.0);
    a.check("leaky_relu(0.01)", vec![x], |v| v[0].leaky_relu(0.01));
    let x = a.signed(&s, 0.1, 2.0);
    a.check("leaky_relu(0.2)", vec![x], |v| v[0].leaky_relu(0.2));
    let x = a.uniform(&s, -4.0, 4.0);
    a.check("sin", vec![x], |v| v[0].sin());
    let x = a.uniform(&s, -4.0, 4.0);
    a.check("cos", vec![x], |v| v[0].cos());
    let x = a.uniform(&s, -1.2, 1.2);
    a.check("tan", vec![x], |v| v[0].tan());
    let x = a.uniform(&s, -3.0, 3.0);
    a.check("atan", vec![x], |v| v[0].atan());
    let x = a.normal(&s);
    a.check("square", vec![x], |v| v[0].square());
    let x = a.normal(&s);
    a.check("powi(3)", vec![x], |v| v[0].powi(3));
    let x = a.normal(&s);
    a.check("powi(4)", vec![x], |v| v[0].powi(4));
    let x = a.normal(&s);
    a.check("powi(1)", vec![x], |v| v[0].powi(1));
    let x = a.normal(&s);
    a.check("powi(0)", vec![x], |v| v[0].powi(0));
    let x = a.signed(&s, 0.5, 2.0);
    a.check("powi(-1)", vec![x], |v| v[0].powi(-1));
    let x = a.signed(&s, 0.5, 2.0);
    a.check("powi(-2)", vec![x], |v| v[0].powi(-2));
    let m = std::f64::consts::TAU;
    let x = a.off_multiples(&s, m);
    a.check("rem_euclid(2 pi)", vec![x], |v| v[0].rem_euclid(std::f64::consts::TAU));
    let x = a.off_multiples(&s, 1.5);
    a.check("rem_euclid(1.5)", vec![x], |v| v[0].rem_euclid(1.5));
    // Constant mask (a suffix of the input shape, broadcast over the batch).
    let mask = checkerboard(4, 5);
    let x = a.normal(&[2, 1, 4, 5]);
    a.check("mul_const (checkerboard mask)", vec![x], move |v| v[0].mul_const(&mask));
}

/// The `h x w` checkerboard mask `(i + j) mod 2`.
fn checkerboard(h: usize, w: usize) -> Tensor<f64> {
    Tensor::from_vec(&[h, w], (0..h * w).map(|i| ((i / w + i % w) % 2) as f64).collect())
}

fn reductions(a: &mut Audit) {
    let s = [2, 3, 4];
    let x = a.normal(&s);
    a.check("sum (all)", vec![x], |v| v[0].sum());
    let x = a.normal(&s);
    a.check("sum_axes [1]", vec![x], |v| v[0].sum_axes(&[1]));
    let x = a.normal(&s);
    a.check("sum_axes [0,2]", vec![x], |v| v[0].sum_axes(&[0, 2]));
    let x = a.normal(&s);
    a.check("mean (all)", vec![x], |v| v[0].mean());
    let x = a.normal(&[2, 3, 4, 5]);
    a.check("mean_axes [1,2,3]", vec![x], |v| v[0].mean_axes(&[1, 2, 3]));
    let x = a.normal(&s);
    a.check("logsumexp axis 0", vec![x], |v| v[0].logsumexp(0));
    let x = a.normal(&s);
    a.check("logsumexp axis 1", vec![x], |v| v[0].logsumexp(1));
    let x = a.normal(&s).map(|x| 3.0 * x);
    a.check("logsumexp axis 2", vec![x], |v| v[0].logsumexp(2));
}

fn data_movement(a: &mut Audit) {
    let s = [2, 3, 4, 5];
    let x = a.normal(&s);
    a.check("roll axis 2 by +1", vec![x], |v| v[0].roll(2, 1));
    let x = a.normal(&s);
    a.check("roll axis 3 by -2", vec![x], |v| v[0].roll(3, -2));
    let x = a.normal(&s);
    a.check("roll axis 1 by +7", vec![x], |v| v[0].roll(1, 7));
    let x = a.normal(&[2, 3, 4]);
    a.check("reshape", vec![x], |v| v[0].reshape(&[4, 6]));
    let x = a.normal(&[2, 3]);
    a.check("unsqueeze axis 1", vec![x], |v| v[0].unsqueeze(1));
    let x = a.normal(&[2, 1, 3]);
    a.check("squeeze axis 1", vec![x], |v| v[0].squeeze(1));
    let x = a.normal(&[3, 1]);
    a.check("broadcast_to", vec![x], |v| v[0].broadcast_to(&[2, 3, 4]));
    let (x, y, z) = (a.normal(&[2, 3]), a.normal(&[2, 3]), a.normal(&[2, 3]));
    a.check("stack axis 0", vec![x, y, z], |v| Var::stack(v, 0));
    let (x, y) = (a.normal(&[2, 3]), a.normal(&[2, 3]));
    a.check("stack axis 2", vec![x, y], |v| Var::stack(v, 2));
    let (x, y) = (a.normal(&[2, 1, 4]), a.normal(&[2, 3, 4]));
    a.check("concat axis 1", vec![x, y], |v| Var::concat(v, 1));
    let (x, y) = (a.normal(&[2, 3]), a.normal(&[1, 3]));
    a.check("concat axis 0", vec![x, y], |v| Var::concat(v, 0));
    let x = a.normal(&s);
    a.check("select axis 1 index 2", vec![x], |v| v[0].select(1, 2));
    let x = a.normal(&s);
    a.check("narrow axis 2 1..3", vec![x], |v| v[0].narrow(2, 1, 2));
    let x = a.normal(&[3, 4]);
    a.check("transpose 2-D", vec![x], |v| v[0].t());
    let x = a.normal(&[2, 3, 4]);
    a.check("transpose batched", vec![x], |v| v[0].t());
}

fn linear_algebra(a: &mut Audit) {
    let (x, y) = (a.normal(&[3, 4]), a.normal(&[4, 5]));
    a.check("matmul 2-D", vec![x, y], |v| v[0].matmul(&v[1]));
    let (x, y) = (a.normal(&[2, 3, 4]), a.normal(&[2, 4, 2]));
    a.check("matmul batched", vec![x, y], |v| v[0].matmul(&v[1]));
    let x = a.normal(&[3, 4]);
    a.check("matmul x x^T (shared)", vec![x], |v| v[0].matmul(&v[0].t()));
    let (x, w, b) = (a.normal(&[5, 3]), a.normal(&[4, 3]), a.normal(&[4]));
    a.check("Linear layer", vec![x, w, b], |v| Linear::forward(&v[0], &v[1], &v[2]));
}

/// (name, n, cin, cout, h, w, k, bias)
type ConvCase = (&'static str, usize, usize, usize, usize, usize, usize, bool);

fn convolutions(a: &mut Audit) {
    let cases: [ConvCase; 9] = [
        ("conv2d k=1 +bias", 2, 3, 2, 4, 5, 1, true),
        ("conv2d k=1", 2, 2, 3, 5, 3, 1, false),
        ("conv2d k=3 +bias", 2, 3, 2, 5, 4, 3, true),
        ("conv2d k=3", 1, 2, 3, 4, 6, 3, false),
        ("conv2d k=3 on 3x3", 2, 2, 2, 3, 3, 3, true),
        ("conv2d k=5 +bias", 2, 2, 2, 5, 7, 5, true),
        ("conv2d k=5", 1, 2, 2, 6, 5, 5, false),
        ("conv2d k=5 on 5x5", 1, 1, 2, 5, 5, 5, true),
        ("conv2d k=3 1 ch", 3, 1, 1, 6, 4, 3, true),
    ];
    for (name, n, cin, cout, h, w, k, bias) in cases {
        let x = a.normal(&[n, cin, h, w]);
        let wt = a.normal(&[cout, cin, k, k]);
        if bias {
            let b = a.normal(&[cout]);
            a.check(name, vec![x, wt, b], |v| v[0].conv2d(&v[1], Some(&v[2])));
        } else {
            a.check(name, vec![x, wt], |v| v[0].conv2d(&v[1], None));
        }
    }
}

/// The tutorial's conv net shape: conv -> leaky_relu -> conv -> tanh.
fn conv_net(v: &[Var<f64>]) -> Var<f64> {
    v[0].conv2d(&v[1], Some(&v[2])).leaky_relu(0.01).conv2d(&v[3], Some(&v[4])).tanh()
}

fn compositions(a: &mut Audit) {
    // Conv net; resample until every pre-activation is at least 1e-2 from the kink.
    let inputs = loop {
        let inputs = vec![
            a.normal(&[2, 2, 4, 5]),
            a.normal(&[4, 2, 3, 3]).map(|x| x * 0.3),
            a.normal(&[4]).map(|x| x * 0.3),
            a.normal(&[1, 4, 3, 3]).map(|x| x * 0.3),
            a.normal(&[1]).map(|x| x * 0.3),
        ];
        let x = Var::constant(inputs[0].clone());
        let pre = x.conv2d(&Var::constant(inputs[1].clone()), Some(&Var::constant(inputs[2].clone())));
        if pre.value().data().iter().all(|p| p.abs() >= 1e-2) {
            break inputs;
        }
    };
    a.check("convnet conv-lrelu-conv-tanh", inputs.clone(), conv_net);
    a.check("convnet fused conv+act", inputs, |v| {
        v[0].conv2d_act(&v[1], Some(&v[2]), Some(Unary::LeakyRelu(0.01))).conv2d_act(
            &v[3],
            Some(&v[4]),
            Some(Unary::Tanh),
        )
    });

    let mask = checkerboard(4, 4);
    let x = a.uniform(&[3, 4, 4], -3.0, 3.0);
    a.check("logsumexp(sin(x) * mask)", vec![x], move |v| v[0].sin().mul_const(&mask).logsumexp(2));

    // Affine coupling (arXiv:2101.08176 eq. 18): y = m x + (1-m)(x e^s + t), s and t
    // from a conv of the frozen half; output (y flattened, log J) per sample.
    let mask = checkerboard(4, 4);
    let inputs =
        vec![a.normal(&[2, 1, 4, 4]), a.normal(&[2, 1, 3, 3]).map(|x| 0.3 * x), a.normal(&[2]).map(|x| 0.3 * x)];
    a.check("affine coupling (y, log J)", inputs, move |v| {
        let inv = mask.map(|m| 1.0 - m);
        let frozen = v[0].mul_const(&mask);
        let st = frozen.conv2d(&v[1], Some(&v[2]));
        let s = st.narrow(1, 0, 1).tanh();
        let t = st.narrow(1, 1, 1);
        let y = frozen.add(&v[0].mul(&s.exp()).add(&t).mul_const(&inv));
        let logj = s.mul_const(&inv).sum_axes(&[1, 2, 3]);
        Var::concat(&[y.reshape(&[2, 16]), logj.unsqueeze(1)], 1)
    });

    let x = a.uniform(&[3, 4, 4], -7.0, 7.0);
    a.check("fused cos_sin", vec![x], |v| v[0].cos_sin());

    // phi^4 action per sample (docs/architecture.md, "Conventions"), M2 = -4, lam = 8.
    let phi = a.normal(&[2, 1, 4, 5]);
    a.check("phi^4 action", vec![phi], |v| {
        let p = &v[0];
        let hop = p.mul_scalar(4.0).sub(&p.roll(2, 1)).sub(&p.roll(2, -1)).sub(&p.roll(3, 1)).sub(&p.roll(3, -1));
        let s = p.mul(&hop).add(&p.square().mul_scalar(-4.0)).add(&p.powi(4).mul_scalar(8.0));
        s.sum_axes(&[1, 2, 3])
    });
}

/// Adam's update written out as PyTorch's `_single_tensor_adam` (torch 2.x) computes
/// it, in f64: `m.lerp_(g, 1-b1)`, `v = v*b2 + (1-b2) g g`,
/// `p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)`.
pub fn adam_reference_step(c: &AdamConfig, t: i32, p: &mut [f64], m: &mut [f64], v: &mut [f64], g: &[f64]) {
    let bc1 = 1.0 - c.beta1.powi(t);
    let bc2 = 1.0 - c.beta2.powi(t);
    let step_size = c.lr / bc1;
    for i in 0..p.len() {
        m[i] += (g[i] - m[i]) * (1.0 - c.beta1);
        v[i] = v[i] * c.beta2 + (1.0 - c.beta2) * g[i] * g[i];
        let denom = v[i].sqrt() / bc2.sqrt() + c.eps;
        p[i] -= step_size * m[i] / denom;
    }
}

/// Three Adam steps with fresh gradients, compared with [`adam_reference_step`]: the
/// errors are those of the parameter updates `p_t - p_{t-1}` (relative to their size).
fn adam_case(rng: &mut StdRng, op: &'static str, config: AdamConfig) -> AuditCase {
    let n = 6;
    let p0 = Tensor::<f64>::randn(&[n], rng);
    let mut p = p0.clone();
    let mut opt = Adam::<f64>::new(config, &[n]);
    let (mut rp, mut rm, mut rv) = (p0.data().to_vec(), vec![0.0; n], vec![0.0; n]);
    let (mut max_abs, mut max_rel, mut worst) = (0.0f64, 0.0f64, 0);
    for t in 1..=3 {
        let mut g = Tensor::<f64>::randn(&[n], rng);
        g.data_mut()[0] = 0.0; // a zero gradient must not produce 0/0
        let (before, rbefore) = (p.clone(), rp.clone());
        opt.step(&mut [&mut p], &[&g]);
        adam_reference_step(&config, t, &mut rp, &mut rm, &mut rv, g.data());
        for j in 0..n {
            let (da, dr) = (p.data()[j] - before.data()[j], rp[j] - rbefore[j]);
            let err = if da.is_finite() && dr.is_finite() { (da - dr).abs() } else { f64::INFINITY };
            let rel = err / da.abs().max(dr.abs()).max(1e-300);
            max_abs = max_abs.max(err);
            if rel > max_rel || !rel.is_finite() {
                (max_rel, worst) = (if rel.is_nan() { f64::INFINITY } else { rel }, j);
            }
        }
    }
    let report = GradcheckReport {
        inputs: vec![InputError { max_abs, max_rel, worst }],
        tolerance: GradcheckConfig::default().tolerance,
    };
    AuditCase { op, shapes: format!("p({n}) g({n}) x3 steps"), report }
}
