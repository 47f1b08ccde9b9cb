//! Finite-difference audit of reverse-mode gradients (f64).
//!
//! For `f` of several tensors, the scalar `L(x) = sum_i r_i f(x)_i` with a fixed random
//! projection `r` (so every output component is checked) is differentiated twice: by
//! the tape, and by the fourth-order central difference
//! `(8 (L(x + h e_j) - L(x - h e_j)) - (L(x + 2h e_j) - L(x - 2h e_j))) / 12h` for every
//! input element `j` (truncation error `h^4 L^(5) / 30`, where the two-point rule's
//! `h^2 L^(3) / 6` alone is `1e-10` for `x^3` at `h = 1e-5`). The report gives the max absolute and relative error per input,
//! with relative error `|a - n| / max(|a|, |n|, floor)`.
//!
//! Each difference is taken output by output, `sum_i r_i (f(x + h e_j)_i - f(x - h e_j)_i)`,
//! not as `L(x + h e_j) - L(x - h e_j)`: outputs that do not depend on `x_j` then cancel
//! exactly, and the rounding noise is that of the outputs `x_j` touches (`~ulp(f_i)/h`)
//! rather than that of the whole sum (`~ulp(L)/h`, which grows with the output size).

use crate::{Tensor, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Pass threshold of [`gradcheck`] in f64: max relative error 1e-6.
pub const GRADCHECK_TOL_F64: f64 = 1e-6;

/// Finite-difference settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradcheckConfig {
    /// Finite-difference step `h`. Default 1e-5 (truncation ~h^4, roundoff ~1e-16/h).
    /// Inputs must lie more than `2h` from a kink or jump of `f`.
    pub step: f64,
    /// Smallest denominator of the relative error, so that gradients that are zero
    /// up to rounding are judged on an absolute scale. Default 1e-3.
    pub floor: f64,
    /// Pass threshold on the max relative error. Default [`GRADCHECK_TOL_F64`] = 1e-6.
    pub tolerance: f64,
    /// Seed of the output projection. Default 0.
    pub seed: u64,
}

impl Default for GradcheckConfig {
    fn default() -> Self {
        GradcheckConfig { step: 1e-5, floor: 1e-3, tolerance: GRADCHECK_TOL_F64, seed: 0 }
    }
}

/// Errors of one input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InputError {
    /// max_j |analytic_j - numeric_j|
    pub max_abs: f64,
    /// max_j |analytic_j - numeric_j| / max(|analytic_j|, |numeric_j|, floor);
    /// infinite if a gradient (either kind) is NaN or infinite.
    pub max_rel: f64,
    /// The element `j` where the relative error is largest (0 for an empty input).
    pub worst: usize,
}

/// The result of [`gradcheck`].
#[derive(Clone, Debug, PartialEq)]
pub struct GradcheckReport {
    /// One entry per input, in order.
    pub inputs: Vec<InputError>,
    /// The pass threshold used.
    pub tolerance: f64,
}

impl GradcheckReport {
    /// Largest relative error over all inputs.
    pub fn max_rel(&self) -> f64 {
        self.inputs.iter().map(|e| e.max_rel).fold(0.0, f64::max)
    }
    /// Largest absolute error over all inputs.
    pub fn max_abs(&self) -> f64 {
        self.inputs.iter().map(|e| e.max_abs).fold(0.0, f64::max)
    }
    /// Whether every input's max relative error is below the tolerance (a NaN or
    /// infinite gradient never passes).
    pub fn passed(&self) -> bool {
        self.inputs.iter().all(|e| e.max_rel.is_finite() && e.max_rel < self.tolerance)
    }
}

/// Audits the tape's gradient of `f` at `inputs` against central differences.
///
/// ```
/// use latflow_tensor::{gradcheck, GradcheckConfig, Tensor, Var};
/// let x = Tensor::from_vec(&[3], vec![0.3, -1.2, 2.0]);
/// let report = gradcheck(|v: &[Var<f64>]| v[0].tanh().mul(&v[0]), &[x], GradcheckConfig::default());
/// assert!(report.passed(), "{report:?}");
/// ```
pub fn gradcheck(
    f: impl Fn(&[Var<f64>]) -> Var<f64>,
    inputs: &[Tensor<f64>],
    config: GradcheckConfig,
) -> GradcheckReport {
    let vars: Vec<Var<f64>> = inputs.iter().map(|t| Var::param(t.clone())).collect();
    let out = f(&vars);
    let proj = Var::constant(Tensor::<f64>::randn(out.shape(), &mut StdRng::seed_from_u64(config.seed)));
    let loss = out.mul(&proj).sum();
    let grads = loss.backward();
    let eval = |xs: &[Tensor<f64>]| -> Tensor<f64> {
        let vs: Vec<Var<f64>> = xs.iter().map(|t| Var::constant(t.clone())).collect();
        let y = f(&vs).value().clone();
        assert_eq!(y.shape(), out.shape(), "gradcheck: f's output shape changed under a perturbation");
        y
    };
    let mut errors = Vec::new();
    let mut xs: Vec<Tensor<f64>> = inputs.to_vec();
    for (i, v) in vars.iter().enumerate() {
        let analytic = grads.get_or_zeros(v);
        let (mut max_abs, mut max_rel, mut worst) = (0.0f64, 0.0f64, 0usize);
        for j in 0..xs[i].len() {
            let x0 = xs[i].data()[j];
            let mut at = |dx: f64| {
                xs[i].data_mut()[j] = x0 + dx;
                let y = eval(&xs);
                xs[i].data_mut()[j] = x0;
                y
            };
            let h = config.step;
            let (p1, m1, p2, m2) = (at(h), at(-h), at(2.0 * h), at(-2.0 * h));
            let r = proj.value().data();
            let mut dl = 0.0;
            for k in 0..r.len() {
                dl += r[k] * (8.0 * (p1.data()[k] - m1.data()[k]) - (p2.data()[k] - m2.data()[k]));
            }
            let numeric = dl / (12.0 * h);
            let a = analytic.data()[j];
            // A non-finite gradient is an infinite error (f64::max would drop a NaN).
            let (err, rel) = if a.is_finite() && numeric.is_finite() {
                let err = (a - numeric).abs();
                (err, err / a.abs().max(numeric.abs()).max(config.floor))
            } else {
                (f64::INFINITY, f64::INFINITY)
            };
            max_abs = max_abs.max(err);
            if rel > max_rel {
                (max_rel, worst) = (rel, j);
            }
        }
        errors.push(InputError { max_abs, max_rel, worst });
    }
    GradcheckReport { inputs: errors, tolerance: config.tolerance }
}
