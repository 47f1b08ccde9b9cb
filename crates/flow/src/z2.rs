//! The Z2 mixture of a flow (Hackett et al. arXiv:2107.00734, section III): for a flow `q`
//! and the global sign flip `phi -> -phi`,
//!
//! `q_mix(phi) = (q(phi) + q(-phi)) / 2`,
//! `log q_mix(phi) = logsumexp(log q(phi), log q(-phi)) - log 2`,
//!
//! sampled exactly as `phi = +-f(z)` with a fair random sign. `q_mix` is even whatever `q`
//! is, so a flow that has learned one vacuum of phi^4's broken phase proposes both, and
//! independence Metropolis and reweighting on `q_mix` are exact for an even action.
//! `log q(-phi)` needs the flow's reverse pass ([`Flow::log_prob`]).
//!
//! - [`Z2Mixture`]: `q_mix` as a [`ProposalSource`] of the sampler crate, and its density.
//! - [`mixture_log_prob_var`]: `log q_mix` of flow samples on the tape, the reverse pass
//!   differentiable in the parameters, for reverse-KL training through `q_mix`
//!   ([`crate::train::Objective::Z2Mixture`]).

use crate::model::Flow;
use latflow_sampler::ensemble::ProposalSource;
use latflow_tensor::{Float, Tensor, Var};
use rand::{Rng, RngCore};
use std::f64::consts::LN_2;

/// `logsumexp(a, b) - log 2`, stable for any finite or infinite pair.
pub fn log_mean_exp2(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + ((a - m).exp() + (b - m).exp()).ln() - LN_2
}

/// A flow's Z2 mixture `q_mix(phi) = (q(phi) + q(-phi)) / 2` (module docs).
///
/// ```
/// use latflow_flow::phi4::Phi4FlowConfig;
/// use latflow_flow::z2::Z2Mixture;
/// use latflow_sampler::ensemble::ProposalSource;
/// use rand::SeedableRng;
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let flow = Phi4FlowConfig { l: 4, layers: 2, ..Default::default() }.build::<f64>(&mut rng);
/// let mix = Z2Mixture::new(&flow);
/// let (phi, logq) = mix.propose(3, &mut rng);
/// assert_eq!((phi.len(), logq.len()), (3 * 16, 3));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Z2Mixture<'a, T: Float> {
    flow: &'a Flow<T>,
}

impl<'a, T: Float> Z2Mixture<'a, T> {
    /// The mixture of `flow` and its mirror image.
    pub fn new(flow: &'a Flow<T>) -> Self {
        Z2Mixture { flow }
    }

    /// The flow.
    pub fn flow(&self) -> &'a Flow<T> {
        self.flow
    }

    /// `log q_mix(x)` per sample of `x (N, ...)` (on any device; the result in f64 on the
    /// host): two reverse passes of the flow, at `x` and `-x`.
    pub fn log_prob(&self, x: &Tensor<T>) -> Vec<f64> {
        let x = x.to_device(self.flow.device()).unwrap_or_else(|e| panic!("{e}"));
        let neg = Var::constant(x.clone()).neg().value().clone();
        let a = self.flow.log_prob(&x).to_host_vec();
        let b = self.flow.log_prob(&neg).to_host_vec();
        a.iter().zip(&b).map(|(a, b)| log_mean_exp2(a.to_f64(), b.to_f64())).collect()
    }
}

impl<T: Float> ProposalSource for Z2Mixture<'_, T> {
    fn dof(&self) -> usize {
        self.flow.prior.shape().iter().product()
    }

    /// `x = f(z)` with `log q(x)` (the forward pass), `log q(-x)` (the reverse pass at
    /// `-x`), then `phi = +-x` with a fair sign drawn from `rng` per sample; `log q_mix` is
    /// the same for both signs.
    fn propose(&self, n: usize, rng: &mut dyn RngCore) -> (Vec<f64>, Vec<f64>) {
        let (x, logq) = self.flow.sample(n, rng);
        let neg = Var::constant(x.clone()).neg().value().clone();
        let logq_neg = self.flow.log_prob(&neg).to_host_vec();
        let dof = self.dof();
        let mut phi: Vec<f64> = x.to_host_vec().iter().map(|v| v.to_f64()).collect();
        for c in phi.chunks_mut(dof.max(1)) {
            if rng.gen::<bool>() {
                c.iter_mut().for_each(|v| *v = -*v);
            }
        }
        let logq = logq.to_host_vec();
        let mix = logq.iter().zip(&logq_neg).map(|(a, b)| log_mean_exp2(a.to_f64(), b.to_f64())).collect();
        (phi, mix)
    }
}

/// `log q_mix(x) = logsumexp(log q(x), log q(-x)) - log 2` on the tape, for flow samples
/// `x` whose `log q(x)` the forward pass gave (`logq`); `log q(-x)` comes from the reverse
/// pass on the tape ([`Flow::reverse_vars`]), so the result is differentiable in the
/// parameters through both terms. Derivative: `w d log q(x) + (1 - w) d log q(-x)` with
/// `w = q(x) / (q(x) + q(-x))`.
///
/// # Panics
/// If the prior has no tape form, or on shape mismatches.
#[track_caller]
pub fn mixture_log_prob_var<T: Float>(flow: &Flow<T>, x: &Var<T>, logq: &Var<T>, params: &[Var<T>]) -> Var<T> {
    let (_, logq_neg) = flow.reverse_vars(&x.neg(), params);
    Var::stack(&[logq.clone(), logq_neg], 1).logsumexp(1).add_scalar(-LN_2)
}
