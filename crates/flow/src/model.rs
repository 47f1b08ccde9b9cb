//! A flow model: a prior r(z) and a stack of invertible layers f = f_L o ... o f_1,
//! with density `log q(x) = log r(z) - sum_l log|det J_l|` (arXiv:2101.08176 eq. (9)).
//!
//! The layers are trait objects ([`Layer`]), so one flow can mix layer kinds (a fixed
//! layer first, couplings of different kinds after it); each layer says how many
//! parameter tensors it has ([`Layer::n_params`]), and the flow keeps the offsets of every
//! layer's parameters in one list computed when it is built.

use crate::prior::Prior;
use latflow_tensor::{Device, Float, Tensor, Var};
use rand::RngCore;
use std::any::Any;
use std::fmt;

/// An invertible layer with a tractable log-Jacobian.
pub trait Layer<T: Float>: Send + Sync {
    /// `x -> (f(x), log|det J_f(x)|)` per sample; `p` are the layer's parameters in
    /// [`Layer::params`] order.
    fn forward(&self, x: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>);
    /// `y -> (f^{-1}(y), log|det J_f(f^{-1}(y))|)` per sample.
    fn reverse(&self, y: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>);
    /// Number of parameter tensors (the length of [`Layer::params`]).
    fn n_params(&self) -> usize;
    /// The parameter tensors, in the order [`Layer::forward`] takes them.
    fn params(&self) -> Vec<&Tensor<T>>;
    /// Mutable parameters, same order as [`Layer::params`].
    fn params_mut(&mut self) -> Vec<&mut Tensor<T>>;
    /// The names of the parameters inside the layer (PyTorch `state_dict` names, e.g.
    /// `net.0.weight`), same order as [`Layer::params`]. Only checkpoints need them.
    fn param_names(&self) -> Vec<String>;
    /// Constant buffers (masks) under their PyTorch `state_dict` names; checkpoints
    /// carry them so the file loads into the reference model with `strict=True`.
    fn named_buffers(&self) -> Vec<(String, &Tensor<T>)> {
        Vec::new()
    }
    /// Every constant tensor the layer's ops use besides its parameters (masks), so that
    /// [`Flow::to_device`] can move them with the parameters.
    fn constants_mut(&mut self) -> Vec<&mut Tensor<T>>;
    /// A boxed copy (flows are cloned by tests and by the GPU comparison runs).
    fn box_clone(&self) -> Box<dyn Layer<T>>;
    /// The layer as `Any`, for tests and tools that need the concrete layer type.
    fn as_any(&self) -> &dyn Any;
    /// The period of the layer's masks along each lattice axis: the same parameters define
    /// the layer on any lattice whose extent is a multiple of it (convolutions are
    /// translation invariant with circular padding; only the masks depend on `L`). 2 for
    /// the checkerboard of phi^4's couplings, 4 for U(1)'s stripes; 1 (no masks) by default.
    fn period(&self) -> usize {
        1
    }
}

/// Prior plus layers.
pub struct Flow<T: Float> {
    /// The base distribution.
    pub prior: Box<dyn Prior<T>>,
    layers: Vec<Box<dyn Layer<T>>>,
    /// `offsets[i]..offsets[i + 1]` are layer `i`'s parameters in [`Flow::params`].
    offsets: Vec<usize>,
}

/// How parameters enter the tape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// Parameters are leaves with gradients (training).
    Params,
    /// Parameters are constants; nothing is recorded (sampling).
    Off,
}

impl<T: Float> Clone for Flow<T> {
    fn clone(&self) -> Self {
        Flow {
            prior: self.prior.box_clone(),
            layers: self.layers.iter().map(|l| l.box_clone()).collect(),
            offsets: self.offsets.clone(),
        }
    }
}

impl<T: Float> fmt::Debug for Flow<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flow")
            .field("prior_shape", &self.prior.shape())
            .field("layers", &self.layers.len())
            .field("param_tensors", &self.n_params())
            .finish()
    }
}

/// Two flows are equal when their prior shapes, parameter and buffer names and values are.
impl<T: Float> PartialEq for Flow<T> {
    fn eq(&self, other: &Self) -> bool {
        let same = |a: Vec<(String, &Tensor<T>)>, b: Vec<(String, &Tensor<T>)>| {
            a.len() == b.len()
                && a.iter().zip(&b).all(|((na, ta), (nb, tb))| {
                    na == nb && ta.shape() == tb.shape() && ta.to_host_vec() == tb.to_host_vec()
                })
        };
        self.prior.shape() == other.prior.shape()
            && same(self.named_params(), other.named_params())
            && same(self.named_buffers(), other.named_buffers())
    }
}

impl<T: Float> Flow<T> {
    /// A flow of `layers` applied in order to samples of `prior`.
    pub fn new(prior: Box<dyn Prior<T>>, layers: Vec<Box<dyn Layer<T>>>) -> Self {
        let mut offsets = vec![0];
        for l in &layers {
            offsets.push(offsets.last().expect("starts with 0") + l.n_params());
        }
        Flow { prior, layers, offsets }
    }

    /// The layers, in the order they are applied to prior samples.
    pub fn layers(&self) -> &[Box<dyn Layer<T>>] {
        &self.layers
    }

    /// Mutable layers (the parameter count of a layer must not change).
    pub fn layers_mut(&mut self) -> &mut [Box<dyn Layer<T>>] {
        &mut self.layers
    }

    /// The period of all layers' masks ([`Layer::period`], their least common multiple):
    /// the flow's parameters apply to any lattice whose extent is a multiple of it.
    pub fn period(&self) -> usize {
        fn gcd(a: usize, b: usize) -> usize {
            if b == 0 {
                a
            } else {
                gcd(b, a % b)
            }
        }
        self.layers.iter().map(|l| l.period().max(1)).fold(1, |acc, p| acc / gcd(acc, p) * p)
    }

    /// Copies every parameter of `other` into this flow: the same flow at another lattice
    /// size. A flow trained at `L0` runs at `L` (a multiple of [`Flow::period`]) by building
    /// the architecture at `L` (its masks and prior at `L`) and copying the parameters, which
    /// do not depend on the lattice size. On error this flow is left unchanged.
    ///
    /// # Errors
    /// If the parameter names or shapes differ (another architecture).
    pub fn copy_params_from(&mut self, other: &Flow<T>) -> Result<(), String> {
        let (mine, theirs) = (self.named_params(), other.named_params());
        if mine.len() != theirs.len() {
            return Err(format!("{} parameter tensors here, {} in the source flow", mine.len(), theirs.len()));
        }
        for ((na, ta), (nb, tb)) in mine.iter().zip(&theirs) {
            if na != nb || ta.shape() != tb.shape() {
                return Err(format!(
                    "parameter {na:?} {:?} does not match the source's {nb:?} {:?}",
                    ta.shape(),
                    tb.shape()
                ));
            }
        }
        let values: Vec<Tensor<T>> = other.params().into_iter().cloned().collect();
        for (p, v) in self.params_mut().into_iter().zip(values) {
            *p = v;
        }
        Ok(())
    }

    /// Number of parameter tensors of all layers.
    pub fn n_params(&self) -> usize {
        *self.offsets.last().expect("starts with 0")
    }

    /// Layer `i`'s parameters within a list of all of them ([`Flow::params`] order).
    pub fn layer_params<'a, V>(&self, i: usize, all: &'a [V]) -> &'a [V] {
        &all[self.offsets[i]..self.offsets[i + 1]]
    }

    /// All parameters, layer by layer.
    pub fn params(&self) -> Vec<&Tensor<T>> {
        self.layers.iter().flat_map(|l| l.params()).collect()
    }

    /// All parameters with their checkpoint names `{layer}.{name}` (the tutorial's
    /// `model['layers'].state_dict()` keys).
    pub fn named_params(&self) -> Vec<(String, &Tensor<T>)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.param_names().into_iter().zip(l.params()).map(move |(n, t)| (format!("{i}.{n}"), t)))
            .collect()
    }

    /// All constant buffers with their checkpoint names `{layer}.{name}`.
    pub fn named_buffers(&self) -> Vec<(String, &Tensor<T>)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.named_buffers().into_iter().map(move |(n, t)| (format!("{i}.{n}"), t)))
            .collect()
    }

    /// Mutable parameters in [`Flow::params`] order.
    pub fn params_mut(&mut self) -> Vec<&mut Tensor<T>> {
        self.layers.iter_mut().flat_map(|l| l.params_mut()).collect()
    }

    /// Moves the parameters and the layers' constants to `device` (a no-op for tensors
    /// already there). Training and sampling then run there; checkpoints are written from
    /// host copies.
    ///
    /// # Errors
    /// If the device cannot be used ([`Device::check`]).
    pub fn to_device(&mut self, device: Device) -> Result<(), String> {
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
    pub fn device(&self) -> Device {
        self.layers.iter().find_map(|l| l.params().first().map(|t| t.device())).unwrap_or(Device::Cpu)
    }

    /// The parameters as tape leaves (`Record::Params`) or constants (`Record::Off`).
    pub fn param_vars(&self, record: Record) -> Vec<Var<T>> {
        self.params()
            .into_iter()
            .map(|t| match record {
                Record::Params => Var::param(t.clone()),
                Record::Off => Var::constant(t.clone()),
            })
            .collect()
    }

    /// Pushes `z` through every layer: `(x, log q(x))` given `log r(z)`.
    pub fn forward(&self, z: Var<T>, log_r: Var<T>, params: &[Var<T>]) -> (Var<T>, Var<T>) {
        let mut x = z;
        let mut logq = log_r;
        for (i, l) in self.layers.iter().enumerate() {
            let (y, logj) = l.forward(&x, self.layer_params(i, params));
            x = y;
            logq = logq.sub(&logj);
        }
        (x, logq)
    }

    /// Draws `n` samples: `(z, x, log q(x))`, parameters entering the tape per `params`.
    pub fn sample_vars(&self, n: usize, rng: &mut dyn RngCore, params: &[Var<T>]) -> (Tensor<T>, Var<T>, Var<T>) {
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
    pub fn sample(&self, n: usize, rng: &mut dyn RngCore) -> (Tensor<T>, Tensor<T>) {
        let params = self.param_vars(Record::Off);
        let (_, x, logq) = self.sample_vars(n, rng, &params);
        (x.value().clone(), logq.value().clone())
    }

    /// Inverts the flow: `(z = f^{-1}(x), log q(x))`.
    pub fn reverse(&self, x: &Tensor<T>) -> (Tensor<T>, Tensor<T>) {
        let params: Vec<Var<T>> = self.param_vars(Record::Off);
        let mut y = Var::constant(x.clone());
        let mut sum_logj = Tensor::zeros(&[x.shape()[0]]);
        for (i, l) in self.layers.iter().enumerate().rev() {
            let (z, logj) = l.reverse(&y, self.layer_params(i, &params));
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
    pub fn log_prob(&self, x: &Tensor<T>) -> Tensor<T> {
        self.reverse(x).1
    }

    /// The reverse pass on the tape: `(z = f^{-1}(x), log q(x))` with
    /// `log q(x) = log r(z) - sum_l log|det J_l|` (each layer's [`Layer::reverse`] and the
    /// prior's [`Prior::log_prob_var`]), differentiable in `x` and in the parameters (the Z2
    /// mixture's `log q(-x)` in training: [`crate::z2::mixture_log_prob_var`]).
    ///
    /// # Panics
    /// If the prior has no tape form ([`Prior::log_prob_var`] gives `None`).
    #[track_caller]
    pub fn reverse_vars(&self, x: &Var<T>, params: &[Var<T>]) -> (Var<T>, Var<T>) {
        let mut y = x.clone();
        let mut sum_logj: Option<Var<T>> = None;
        for (i, l) in self.layers.iter().enumerate().rev() {
            let (z, logj) = l.reverse(&y, self.layer_params(i, params));
            sum_logj = Some(match sum_logj {
                None => logj,
                Some(s) => s.add(&logj),
            });
            y = z;
        }
        let log_r = self
            .prior
            .log_prob_var(&y)
            .unwrap_or_else(|| panic!("Flow::reverse_vars: this prior has no tape form of log r"));
        let logq = match sum_logj {
            Some(s) => log_r.sub(&s),
            None => log_r,
        };
        (y, logq)
    }
}
