//! A flow as the latent map of flow-HMC ([`latflow_sampler::flow_hmc`], after Foreman et
//! al. arXiv:2112.01586): `x = f(z)` through every layer, `log|det J_f(z)| = sum_l log|det
//! J_l|`, and the force's vector-Jacobian product
//! `J_f(z)^T g - d log|det J_f(z)| / dz` in one reverse sweep of the tape
//! ([`Var::vjp`]) with the input `z` as the only leaf that needs a gradient: the parameters
//! enter as constants ([`Record::Off`]), so no weight gradient is computed.
//!
//! The batch runs through the flow as one batch (the engine's kernels split it over the
//! threads), in `T` (f64 for the audits; the parameters of an f32 checkpoint widen
//! exactly). The latent field lives on a torus when the prior does ([`Prior::period`]:
//! U(1) links).
//!
//! [`Prior::period`]: crate::prior::Prior::period

use crate::model::{Flow, Record};
use latflow_sampler::flow_hmc::LatentMap;
use latflow_tensor::{Device, Float, Tensor, Var};

impl<T: Float> Flow<T> {
    /// `z (n * dof values) -> Tensor (n, shape...)` on the parameters' device.
    fn latent_tensor(&self, z: &[f64], n: usize) -> Tensor<T> {
        let mut shape = vec![n];
        shape.extend(self.prior.shape());
        let t = Tensor::from_vec(&shape, z.iter().map(|&v| T::from_f64(v)).collect());
        t.to_device(self.device()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The flow on the tape from the latent `z`: `(x, log q - log r = -log|det J_f|)`.
    fn push_latent(&self, z: Var<T>, n: usize, params: &[Var<T>]) -> (Var<T>, Var<T>) {
        let zeros = Tensor::<T>::zeros(&[n]).to_device(self.device()).unwrap_or_else(|e| panic!("{e}"));
        self.forward(z, Var::constant(zeros), params)
    }

    /// `x` and `log|det J_f|` of a pass through [`Flow::push_latent`], widened to f64.
    fn write_outputs(xv: &Var<T>, neg_logdet: &Var<T>, x: &mut [f64], logdet: &mut [f64]) {
        widen(xv.value(), x);
        for (o, v) in logdet.iter_mut().zip(neg_logdet.value().to_host_vec()) {
            *o = -v.to_f64();
        }
    }

    /// [`LatentMap::pullback`] of one batch on one tape.
    fn pullback_shard(
        &self,
        z: &[f64],
        x: &mut [f64],
        logdet: &mut [f64],
        cotangent: &(dyn Fn(&[f64], &mut [f64]) + Sync),
        grad: &mut [f64],
    ) {
        let n = logdet.len();
        let params = self.param_vars(Record::Off);
        let zv = Var::param(self.latent_tensor(z, n));
        let (xv, neg_logdet) = self.push_latent(zv.clone(), n, &params);
        Self::write_outputs(&xv, &neg_logdet, x, logdet);
        let mut g = vec![0.0; x.len()];
        cotangent(x, &mut g);
        let device = self.device();
        let gx = Tensor::from_vec(xv.shape(), g.iter().map(|&v| T::from_f64(v)).collect());
        let gx = gx.to_device(device).unwrap_or_else(|e| panic!("{e}"));
        // d/dz [<g, x> - log|det J|] = J^T g + d(-log|det J|)/dz: seed -log|det J| with 1
        let ones = Tensor::full_on(&[n], T::ONE, device);
        let grads = Var::vjp(&[(&xv, gx), (&neg_logdet, ones)]);
        match grads.get(&zv) {
            Some(gz) => widen(gz, grad),
            None => grad.fill(0.0),
        }
    }
}

fn widen<T: Float>(t: &Tensor<T>, out: &mut [f64]) {
    for (o, v) in out.iter_mut().zip(t.to_host_vec()) {
        *o = v.to_f64();
    }
}

impl<T: Float> LatentMap for Flow<T> {
    fn dof(&self) -> usize {
        self.prior.shape().iter().product()
    }

    fn forward(&self, z: &[f64], x: &mut [f64], logdet: &mut [f64]) {
        let n = logdet.len();
        let params = self.param_vars(Record::Off);
        let (xv, neg_logdet) = self.push_latent(Var::constant(self.latent_tensor(z, n)), n, &params);
        Self::write_outputs(&xv, &neg_logdet, x, logdet);
    }

    fn pullback(
        &self,
        z: &[f64],
        x: &mut [f64],
        logdet: &mut [f64],
        cotangent: &(dyn Fn(&[f64], &mut [f64]) + Sync),
        grad: &mut [f64],
    ) {
        let n = logdet.len();
        let d = self.dof();
        if self.device() != Device::Cpu || n < 2 {
            return self.pullback_shard(z, x, logdet, cotangent, grad);
        }
        // shards of the batch on their own tapes, one rayon task each (as a training step):
        // every op of the flow runs on both cores, not only the convolutions; the values of a
        // configuration do not depend on the shard it is in
        let shards = crate::train::shard_count(n);
        let mut parts = Vec::with_capacity(shards);
        let (mut z, mut x, mut logdet, mut grad) = (z, x, logdet, grad);
        for m in (0..shards).map(|i| crate::train::shard_size(n, i)) {
            let (zs, zr) = z.split_at(m * d);
            let (xs, xr) = std::mem::take(&mut x).split_at_mut(m * d);
            let (ls, lr) = std::mem::take(&mut logdet).split_at_mut(m);
            let (gs, gr) = std::mem::take(&mut grad).split_at_mut(m * d);
            parts.push((zs, xs, ls, gs));
            (z, x, logdet, grad) = (zr, xr, lr, gr);
        }
        rayon::scope(|s| {
            for (zs, xs, ls, gs) in parts {
                s.spawn(move |_| self.pullback_shard(zs, xs, ls, cotangent, gs));
            }
        });
    }

    fn reverse(&self, x: &[f64], z: &mut [f64]) {
        let n = x.len() / self.dof().max(1);
        let (zt, _) = Flow::reverse(self, &self.latent_tensor(x, n));
        widen(&zt, z);
    }

    fn period(&self) -> Option<f64> {
        self.prior.period()
    }
}
