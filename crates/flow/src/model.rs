//! A flow model: a prior r(z) and a stack of invertible layers f = f_L o ... o f_1,
//! with density `log q(x) = log r(z) - sum_l log|det J_l|` (arXiv:2101.08176 eq. (9)).

use crate::prior::Prior;
use latflow_tensor::{Device, Float, Tensor, Var};
use rand::Rng;

/// An invertible layer with a tractable log-Jacobian.
pub trait Layer<T: Float>: Sync {
    /// `x -> (f(x), log|det J_f(x)|)` per sample.
    fn forward(&self, x: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>);
    /// `y -> (f^{-1}(y), log|det J_f(f^{-1}(y))|)` per sample.
    fn reverse(&self, y: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>);
    /// Parameters with their names inside the layer (PyTorch `state_dict` names).
    fn named_params(&self) -> Vec<(String, &Tensor<T>)>;
    /// Mutable parameters, same order as [`Layer::named_params`].
    fn params_mut(&mut self) -> Vec<&mut Tensor<T>>;
    /// Constant buffers (masks) under their PyTorch `state_dict` names; checkpoints
    /// carry them so the file loads into the reference model with `strict=True`.
    fn named_buffers(&self) -> Vec<(String, &Tensor<T>)> {
        Vec::new()
    }
    /// Every constant tensor the layer's ops use besides its parameters (masks), so that
    /// [`Flow::to_device`] can move them with the parameters.
    fn constants_mut(&mut self) -> Vec<&mut Tensor<T>>;
}

impl<T: Float> Layer<T> for crate::affine::AffineCoupling<T> {
    fn forward(&self, x: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>) {
        crate::affine::AffineCoupling::forward(self, x, p)
    }
    fn reverse(&self, y: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>) {
        crate::affine::AffineCoupling::reverse(self, y, p)
    }
    fn named_params(&self) -> Vec<(String, &Tensor<T>)> {
        self.net.named_params()
    }
    fn params_mut(&mut self) -> Vec<&mut Tensor<T>> {
        self.net.params_mut()
    }
    fn named_buffers(&self) -> Vec<(String, &Tensor<T>)> {
        vec![("mask".into(), self.mask())]
    }
    fn constants_mut(&mut self) -> Vec<&mut Tensor<T>> {
        crate::affine::AffineCoupling::constants_mut(self)
    }
}

/// Prior plus layers.
#[derive(Clone, Debug, PartialEq)]
pub struct Flow<P, L> {
    /// The base distribution.
    pub prior: P,
    /// The layers, applied in order to prior samples.
    pub layers: Vec<L>,
}

/// How parameters enter the tape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// Parameters are leaves with gradients (training).
    Params,
    /// Parameters are constants; nothing is recorded (sampling).
    Off,
}

impl<P, L> Flow<P, L> {
    /// All parameters with their checkpoint names `{layer}.{name}` (the tutorial's
    /// `model['layers'].state_dict()` keys).
    pub fn named_params<T: Float>(&self) -> Vec<(String, &Tensor<T>)>
    where
        L: Layer<T>,
    {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.named_params().into_iter().map(move |(n, t)| (format!("{i}.{n}"), t)))
            .collect()
    }

    /// All constant buffers with their checkpoint names `{layer}.{name}`.
    pub fn named_buffers<T: Float>(&self) -> Vec<(String, &Tensor<T>)>
    where
        L: Layer<T>,
    {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.named_buffers().into_iter().map(move |(n, t)| (format!("{i}.{n}"), t)))
            .collect()
    }

    /// Mutable parameters in [`Flow::named_params`] order.
    pub fn params_mut<T: Float>(&mut self) -> Vec<&mut Tensor<T>>
    where
        L: Layer<T>,
    {
        self.layers.iter_mut().flat_map(|l| l.params_mut()).collect()
    }

    /// Moves the parameters and the layers' constants to `device` (a no-op for tensors
    /// already there). Training and sampling then run there; checkpoints are written from
    /// host copies.
    ///
    /// # Errors
    /// If the device cannot be used ([`Device::check`]).
    pub fn to_device<T: Float>(&mut self, device: Device) -> Result<(), String>
    where
        L: Layer<T>,
    {
        device.check()?;
        for l in &mut self.layers {
            for t in l.params_mut() {
                *t = t.to_device(device)?;
            }
            for t in l.constants_mut() {
                *t = t.to_device(device)?;
            }
        }
        Ok(())
    }

    /// Where the parameters live (the CPU for a flow without parameters).
    pub fn device<T: Float>(&self) -> Device
    where
        L: Layer<T>,
    {
        self.named_params().first().map_or(Device::Cpu, |(_, t)| t.device())
    }

    /// The parameters as tape leaves (`Record::Params`) or constants (`Record::Off`).
    pub fn param_vars<T: Float>(&self, record: Record) -> Vec<Var<T>>
    where
        L: Layer<T>,
    {
        self.named_params()
            .into_iter()
            .map(|(_, t)| match record {
                Record::Params => Var::param(t.clone()),
                Record::Off => Var::constant(t.clone()),
            })
            .collect()
    }

    /// Pushes `z` through every layer: `(x, log q(x))` given `log r(z)`.
    pub fn forward<T: Float>(&self, z: Var<T>, log_r: Var<T>, params: &[Var<T>]) -> (Var<T>, Var<T>)
    where
        L: Layer<T>,
    {
        let mut x = z;
        let mut logq = log_r;
        let mut at = 0;
        for l in &self.layers {
            let np = l.named_params().len();
            let (y, logj) = l.forward(&x, &params[at..at + np]);
            at += np;
            x = y;
            logq = logq.sub(&logj);
        }
        (x, logq)
    }

    /// Draws `n` samples: `(z, x, log q(x))`, parameters entering the tape per `record`.
    pub fn sample_vars<T: Float, R: Rng + ?Sized>(
        &self,
        n: usize,
        rng: &mut R,
        params: &[Var<T>],
    ) -> (Tensor<T>, Var<T>, Var<T>)
    where
        P: Prior<T>,
        L: Layer<T>,
    {
        let z = self.prior.sample(n, rng);
        let log_r = self.prior.log_prob(&z);
        // the prior is sampled on the host (same numbers on every device), then moved to
        // the parameters' device
        let device = params.first().map_or(Device::Cpu, |p| p.value().device());
        let to = |t: Tensor<T>| t.to_device(device).unwrap_or_else(|e| panic!("{e}"));
        let (z, log_r) = (to(z), to(log_r));
        let (x, logq) = self.forward(Var::constant(z.clone()), Var::constant(log_r), params);
        (z, x, logq)
    }

    /// Draws `n` samples without recording: `(x, log q(x))`.
    pub fn sample<T: Float, R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> (Tensor<T>, Tensor<T>)
    where
        P: Prior<T>,
        L: Layer<T>,
    {
        let params = self.param_vars(Record::Off);
        let (_, x, logq) = self.sample_vars(n, rng, &params);
        (x.value().clone(), logq.value().clone())
    }

    /// Inverts the flow: `(z = f^{-1}(x), log q(x))`.
    pub fn reverse<T: Float>(&self, x: &Tensor<T>) -> (Tensor<T>, Tensor<T>)
    where
        P: Prior<T>,
        L: Layer<T>,
    {
        let params: Vec<Var<T>> = self.param_vars(Record::Off);
        let mut offsets = Vec::with_capacity(self.layers.len());
        let mut at = 0;
        for l in &self.layers {
            offsets.push(at);
            at += l.named_params().len();
        }
        let mut y = Var::constant(x.clone());
        let mut sum_logj = Tensor::zeros(&[x.shape()[0]]);
        for (l, &o) in self.layers.iter().zip(&offsets).rev() {
            let np = l.named_params().len();
            let (z, logj) = l.reverse(&y, &params[o..o + np]);
            for (s, v) in sum_logj.data_mut().iter_mut().zip(logj.value().to_host_vec()) {
                *s += v;
            }
            y = z;
        }
        let z = y.value().to_device(Device::Cpu).expect("the CPU is always there");
        let log_r = self.prior.log_prob(&z);
        let logq = log_r.zip_map(&sum_logj, |a, b| a - b);
        (z, logq)
    }

    /// `log q(x)` per sample, through the reverse pass.
    pub fn log_prob<T: Float>(&self, x: &Tensor<T>) -> Tensor<T>
    where
        P: Prior<T>,
        L: Layer<T>,
    {
        self.reverse(x).1
    }
}
