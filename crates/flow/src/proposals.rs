//! A flow as a proposal source of the sampler crate: `n` samples `x ~ q` with `log q(x)`,
//! widened to f64 (copied back from the GPU when the flow runs there), so that
//! [`latflow_sampler::ensemble::IndependenceSampler`] can run independence Metropolis and
//! reweighting over them.

use crate::model::Flow;
use latflow_sampler::ensemble::ProposalSource;
use latflow_tensor::Float;
use rand::RngCore;

impl<T: Float> ProposalSource for Flow<T> {
    fn dof(&self) -> usize {
        self.prior.shape().iter().product()
    }

    fn propose(&self, n: usize, rng: &mut dyn RngCore) -> (Vec<f64>, Vec<f64>) {
        let (x, logq) = self.sample(n, rng);
        let widen = |t: latflow_tensor::Tensor<T>| t.into_vec().into_iter().map(|v| v.to_f64()).collect();
        (widen(x), widen(logq))
    }
}
