//! Adam (Kingma & Ba, arXiv:1412.6980) with PyTorch's defaults and update rule:
//!
//! `m <- b1 m + (1-b1) g`, `v <- b2 v + (1-b2) g^2`,
//! `p <- p - lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)`.

use crate::{Float, Tensor};

/// Adam hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate. Default 1e-3.
    pub lr: f64,
    /// First-moment decay. Default 0.9.
    pub beta1: f64,
    /// Second-moment decay. Default 0.999.
    pub beta2: f64,
    /// Denominator offset. Default 1e-8.
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

impl AdamConfig {
    /// Checks the ranges outside which the update produces NaN or infinities (or, for
    /// a negative learning rate, ascends): `lr` finite and `>= 0`, `beta1` and `beta2`
    /// in `[0, 1)` (a bias correction `1 - beta^t` of zero divides by zero), `eps`
    /// finite and `> 0` (a zero gradient would give `0 / 0`).
    ///
    /// ```
    /// use latflow_tensor::AdamConfig;
    /// assert!(AdamConfig::default().validate().is_ok());
    /// let bad = AdamConfig { beta2: 1.0, ..AdamConfig::default() };
    /// assert!(bad.validate().unwrap_err().contains("beta2"));
    /// ```
    pub fn validate(&self) -> Result<(), String> {
        let AdamConfig { lr, beta1, beta2, eps } = *self;
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(format!("Adam: lr must be finite and >= 0, got {lr}"));
        }
        for (name, b) in [("beta1", beta1), ("beta2", beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(format!("Adam: {name} must be in [0, 1), got {b}"));
            }
        }
        if !(eps.is_finite() && eps > 0.0) {
            return Err(format!("Adam: eps must be finite and > 0, got {eps}"));
        }
        Ok(())
    }
}

/// A copy of [`Adam`]'s state on the host, see [`Adam::snapshot_into`].
#[derive(Clone, Debug, Default)]
pub struct AdamSnapshot<T> {
    step: u64,
    m: Vec<Vec<T>>,
    v: Vec<Vec<T>>,
}

/// Adam state for a fixed list of parameter tensors.
#[derive(Clone, Debug)]
pub struct Adam<T: Float> {
    /// Hyper-parameters (the learning rate may be changed between steps).
    pub config: AdamConfig,
    step: u64,
    /// Moments, one tensor per parameter, on the parameter's device (moved there at the
    /// first step that sees the parameter on the GPU).
    m: Vec<Tensor<T>>,
    v: Vec<Tensor<T>>,
}

impl<T: Float> Adam<T> {
    /// Fresh state (zero moments) for parameters of the given lengths.
    ///
    /// # Panics
    /// If the config is out of range (see [`AdamConfig::validate`]; call it first to
    /// get the message as an error instead).
    #[track_caller]
    pub fn new(config: AdamConfig, param_lens: &[usize]) -> Self {
        if let Err(e) = config.validate() {
            panic!("{e}");
        }
        Adam {
            config,
            step: 0,
            m: param_lens.iter().map(|&n| Tensor::zeros(&[n])).collect(),
            v: param_lens.iter().map(|&n| Tensor::zeros(&[n])).collect(),
        }
    }

    /// Number of steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The moment estimates `(m, v)`, one vector per parameter (for checkpoints; copied
    /// from the GPU when they live there).
    pub fn moments(&self) -> (Vec<Vec<T>>, Vec<Vec<T>>) {
        let host = |x: &[Tensor<T>]| x.iter().map(Tensor::to_host_vec).collect();
        (host(&self.m), host(&self.v))
    }

    /// Copies the step count and the moments into `snap` (host tensors only), reusing its
    /// buffers: a cheap snapshot taken before every update, for [`Adam::restore_from`].
    ///
    /// # Panics
    /// If a moment lives on the GPU.
    pub fn snapshot_into(&self, snap: &mut AdamSnapshot<T>) {
        snap.step = self.step;
        for (dst, src) in [(&mut snap.m, &self.m), (&mut snap.v, &self.v)] {
            dst.resize_with(src.len(), Vec::new);
            for (d, t) in dst.iter_mut().zip(src) {
                d.clear();
                d.extend_from_slice(t.data());
            }
        }
    }

    /// Goes back to a state saved by [`Adam::snapshot_into`] (host tensors only).
    ///
    /// # Panics
    /// If the snapshot does not fit this optimizer or a moment lives on the GPU.
    pub fn restore_from(&mut self, snap: &AdamSnapshot<T>) {
        self.step = snap.step;
        for (dst, src) in [(&mut self.m, &snap.m), (&mut self.v, &snap.v)] {
            assert_eq!(dst.len(), src.len(), "Adam::restore_from: snapshot of another optimizer");
            for (t, s) in dst.iter_mut().zip(src) {
                t.data_mut().copy_from_slice(s);
            }
        }
    }

    /// Restores a saved state: step count and moments.
    ///
    /// # Panics
    /// If the number or lengths of the moment vectors differ from this optimizer's.
    #[track_caller]
    pub fn restore(&mut self, step: u64, m: Vec<Vec<T>>, v: Vec<Vec<T>>) {
        let lens = |x: &[Vec<T>]| x.iter().map(Vec::len).collect::<Vec<_>>();
        let have: Vec<usize> = self.m.iter().map(Tensor::len).collect();
        assert_eq!(lens(&m), have, "Adam::restore: first-moment shapes");
        assert_eq!(lens(&v), have, "Adam::restore: second-moment shapes");
        let tensors = |x: Vec<Vec<T>>| x.into_iter().map(|x| Tensor::from_vec(&[x.len()], x)).collect();
        self.step = step;
        self.m = tensors(m);
        self.v = tensors(v);
    }

    /// One update of every parameter with its gradient.
    ///
    /// # Panics
    /// If the number or lengths of parameters and gradients differ from construction,
    /// or [`Adam::config`] was changed to values out of range ([`AdamConfig::validate`]).
    #[track_caller]
    pub fn step(&mut self, params: &mut [&mut Tensor<T>], grads: &[&Tensor<T>]) {
        if let Err(e) = self.config.validate() {
            panic!("{e}");
        }
        assert_eq!(params.len(), self.m.len(), "Adam::step: parameter count");
        assert_eq!(grads.len(), self.m.len(), "Adam::step: gradient count");
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        let (b1, b2) = (T::from_f64(c.beta1), T::from_f64(c.beta2));
        let (ob1, ob2) = (T::from_f64(1.0 - c.beta1), T::from_f64(1.0 - c.beta2));
        let step_size = T::from_f64(c.lr / bc1);
        let inv_sqrt_bc2 = T::from_f64(1.0 / bc2.sqrt());
        let eps = T::from_f64(c.eps);
        for (i, (p, g)) in params.iter().zip(grads).enumerate() {
            assert_eq!(p.len(), g.len(), "Adam::step: shape mismatch, {:?} vs {:?}", p.shape(), g.shape());
            assert_eq!(p.len(), self.m[i].len(), "Adam::step: parameter {i} changed length");
        }
        // on the GPU: every parameter in one launch (moments moved there on first use)
        #[cfg(feature = "cuda")]
        if params.first().is_some_and(|p| p.is_cuda()) {
            for t in self.m.iter_mut().chain(self.v.iter_mut()) {
                if !t.is_cuda() {
                    *t = t.to_device(crate::Device::Cuda).expect("parameters on the GPU: the GPU works");
                }
            }
            let k = latflow_cuda_kernels::ops::AdamStep {
                b1: c.beta1 as f32,
                b2: c.beta2 as f32,
                ob1: (1.0 - c.beta1) as f32,
                ob2: (1.0 - c.beta2) as f32,
                step_size: (c.lr / bc1) as f32,
                inv_sqrt_bc2: (1.0 / bc2.sqrt()) as f32,
                eps: c.eps as f32,
            };
            crate::cuda::adam_multi(params, grads, &mut self.m, &mut self.v, k);
            return;
        }
        for (i, (p, g)) in params.iter_mut().zip(grads).enumerate() {
            let (m, v) = (self.m[i].data_mut(), self.v[i].data_mut());
            for (((p, &g), m), v) in p.data_mut().iter_mut().zip(g.data()).zip(m.iter_mut()).zip(v.iter_mut()) {
                *m = b1 * *m + ob1 * g;
                *v = b2 * *v + ob2 * g * g;
                *p -= step_size * *m / (v.sqrt() * inv_sqrt_bc2 + eps);
            }
        }
    }
}
