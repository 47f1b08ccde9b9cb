//! A Z2-equivariant affine coupling for phi^4 (whose action is even, `S(-phi) = S(phi)`):
//! the affine coupling of [`super::affine`] with a scale `s` even and a shift `t` odd in the
//! frozen sites,
//!
//! `s(-x_F) = s(x_F)`, `t(-x_F) = -t(x_F)`  =>  `f(-x) = -f(x)`, `log|det J(-x)| = log|det J(x)|`,
//!
//! so a flow of such layers on an even prior has `q(-x) = q(x)`: it cannot prefer one
//! vacuum of the broken phase (Nicoli et al. arXiv:2007.07115, Del Debbio et al.
//! arXiv:2105.12481). Two ways to get there, chosen by [`Z2Kind`]:
//!
//! - [`Z2Kind::Symmetrized`]: the tutorial's net `n = (n_s, n_t)` (LeakyReLU, final tanh)
//!   symmetrized over `+-x_F`: `s = (n_s(x_F) + n_s(-x_F)) / 2`, `t = (n_t(x_F) - n_t(-x_F)) / 2`
//!   (one net pass over the batch `[x_F; -x_F]`, twice the cost of the plain coupling). Its
//!   checkpoint names are the tutorial's (`net.0.weight`, ...).
//! - [`Z2Kind::OddNet`]: by architecture, one trunk of bias-free convolutions with tanh
//!   (an odd function: `h(-x_F) = -h(x_F)`), then `t = tanh(conv(h))` (bias-free, odd) and
//!   `s = tanh(conv(h * h) + b)` (even); about the cost of the plain coupling. Names
//!   `net.{0,2,..}.weight` (trunk), `s.weight`, `s.bias`, `t.weight`.
//!
//! The coupling itself and its log-Jacobian are the fused ops of the plain layer
//! ([`LatticeOps::affine_couple`], [`LatticeOps::masked_channel_sum`]); only `(s, t)` differ.

use crate::model::Layer;
use crate::net::{Activation, ConvNet, ConvNetConfig};
use crate::ops::LatticeOps;
use latflow_tensor::elementwise::Unary;
use latflow_tensor::layers::Conv2d;
use latflow_tensor::{Float, Tensor, Var};
use rand::Rng;

/// How a [`Z2Coupling`] makes `s` even and `t` odd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Z2Kind {
    /// The tutorial's net averaged over `+-x_F` (exact by construction, 2x the net cost).
    Symmetrized,
    /// Bias-free tanh trunk, odd `t` head, `s` head on the squared features.
    OddNet,
}

/// The `(s, t)` nets of the two kinds.
#[derive(Clone, Debug, PartialEq)]
enum Z2Net<T: Float> {
    Symmetrized {
        net: ConvNet<T>,
        /// `(2, H, W)`: 0.5 on channel 0, -0.5 on channel 1 (`st = a/2 + b * pm`).
        pm: Tensor<T>,
    },
    OddNet {
        /// Bias-free trunk weights `(cout, cin, k, k)`.
        trunk: Vec<Tensor<T>>,
        /// `s` head: weight `(1, c, k, k)`.
        s_weight: Tensor<T>,
        /// `s` head: bias `(1,)`.
        s_bias: Tensor<T>,
        /// `t` head: weight `(1, c, k, k)`, no bias.
        t_weight: Tensor<T>,
        final_tanh: bool,
    },
}

/// One Z2-equivariant affine coupling layer (module docs): `f(x) = m x + (1 - m)(x e^s + t)`,
/// `log|det J| = sum (1 - m) s`, with `s` even and `t` odd in `x_F = m x`.
///
/// ```
/// use latflow_flow::phi4::z2::{Z2Coupling, Z2Kind};
/// use latflow_flow::model::Layer;
/// use latflow_tensor::{Tensor, Var};
/// let mut rng = rand::thread_rng();
/// let layer = Z2Coupling::<f64>::new(4, 4, 0, &[8, 8], 3, true, Z2Kind::OddNet, &mut rng);
/// let z = Tensor::<f64>::randn(&[2, 4, 4], &mut rng);
/// let p: Vec<Var<f64>> = layer.params().into_iter().map(|t| Var::constant(t.clone())).collect();
/// let (y, lj) = Layer::forward(&layer, &Var::constant(z.clone()), &p);
/// let (ym, ljm) = Layer::forward(&layer, &Var::constant(z.map(|v| -v)), &p);
/// for (a, b) in y.value().data().iter().zip(ym.value().data()) {
///     assert!((a + b).abs() < 1e-12); // f(-z) = -f(z)
/// }
/// assert!((lj.value().data()[0] - ljm.value().data()[0]).abs() < 1e-12);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Z2Coupling<T: Float> {
    net: Z2Net<T>,
    /// Mask parity (0 or 1) of [`super::masks::checkerboard`].
    pub parity: usize,
    mask: Tensor<T>,
    inv_mask: Tensor<T>,
}

impl<T: Float> Z2Coupling<T> {
    /// A layer on an `h x w` lattice: nets of `hidden` channels, odd `kernel`, a tanh on
    /// `s` and `t` when `final_tanh`, PyTorch's default init.
    ///
    /// # Panics
    /// If the kernel is even or a size is zero.
    #[allow(clippy::too_many_arguments)]
    #[track_caller]
    pub fn new<R: Rng + ?Sized>(
        h: usize,
        w: usize,
        parity: usize,
        hidden: &[usize],
        kernel: usize,
        final_tanh: bool,
        kind: Z2Kind,
        rng: &mut R,
    ) -> Self {
        let net = match kind {
            Z2Kind::Symmetrized => {
                let config = ConvNetConfig {
                    in_channels: 1,
                    hidden: hidden.to_vec(),
                    out_channels: 2,
                    kernel,
                    final_tanh,
                    activation: Activation::TUTORIAL,
                };
                let mut pm = vec![T::from_f64(0.5); 2 * h * w];
                for v in &mut pm[h * w..] {
                    *v = T::from_f64(-0.5);
                }
                Z2Net::Symmetrized { net: ConvNet::new(config, rng), pm: Tensor::from_vec(&[2, h, w], pm) }
            }
            Z2Kind::OddNet => {
                let mut sizes = vec![1];
                sizes.extend(hidden);
                let trunk = sizes.windows(2).map(|c| Conv2d::<T>::new(c[0], c[1], kernel, rng).weight).collect();
                let last = *sizes.last().expect("starts with 1");
                let s = Conv2d::<T>::new(last, 1, kernel, rng);
                let t = Conv2d::<T>::new(last, 1, kernel, rng);
                Z2Net::OddNet { trunk, s_weight: s.weight, s_bias: s.bias, t_weight: t.weight, final_tanh }
            }
        };
        let mask = super::masks::checkerboard::<T>(h, w, parity);
        let inv_mask = mask.map(|m| T::ONE - m);
        Z2Coupling { net, parity, mask, inv_mask }
    }

    /// Which construction makes the layer equivariant.
    pub fn kind(&self) -> Z2Kind {
        match self.net {
            Z2Net::Symmetrized { .. } => Z2Kind::Symmetrized,
            Z2Net::OddNet { .. } => Z2Kind::OddNet,
        }
    }

    /// The checkerboard mask `(H, W)` (1 = frozen).
    pub fn mask(&self) -> &Tensor<T> {
        &self.mask
    }

    /// `st (N, 2, H, W)`: the even scale `s` (channel 0) and the odd shift `t` (channel 1)
    /// on the frozen part of `x (N, H, W)`.
    fn scale_shift(&self, x: &Var<T>, p: &[Var<T>]) -> Var<T> {
        let xf = x.mul_const(&self.mask).unsqueeze(1);
        match &self.net {
            Z2Net::Symmetrized { net, pm } => {
                // s = (n_s(x) + n_s(-x)) / 2, t = (n_t(x) - n_t(-x)) / 2: exact negation and
                // commutative sums, so f(-x) = -f(x) holds to the last bit
                let n = x.shape()[0];
                let out = net.forward(&Var::concat(&[xf.clone(), xf.neg()], 0), p);
                out.narrow(0, 0, n).mul_scalar(0.5).add(&out.narrow(0, n, n).mul_const(pm))
            }
            Z2Net::OddNet { trunk, final_tanh, .. } => {
                let mut h = xf;
                for (i, _) in trunk.iter().enumerate() {
                    h = h.conv2d_act(&p[i], None, Some(Unary::Tanh));
                }
                let k = trunk.len();
                let act = final_tanh.then_some(Unary::Tanh);
                let s = h.square().conv2d_act(&p[k], Some(&p[k + 1]), act);
                let t = h.conv2d_act(&p[k + 2], None, act);
                Var::concat(&[s, t], 1)
            }
        }
    }

    /// `x (N, H, W) -> (f(x), log|det J| (N,))`.
    pub fn forward(&self, x: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>) {
        let st = self.scale_shift(x, p);
        (x.affine_couple(&st, &self.mask, false), st.masked_channel_sum(0, &self.inv_mask))
    }

    /// `y (N, H, W) -> (f^{-1}(y), log|det J_f| at f^{-1}(y) (N,))`.
    pub fn reverse(&self, y: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>) {
        let st = self.scale_shift(y, p);
        (y.affine_couple(&st, &self.mask, true), st.masked_channel_sum(0, &self.inv_mask))
    }
}

impl<T: Float> Layer<T> for Z2Coupling<T> {
    fn forward(&self, x: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>) {
        Z2Coupling::forward(self, x, p)
    }
    fn reverse(&self, y: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>) {
        Z2Coupling::reverse(self, y, p)
    }
    fn n_params(&self) -> usize {
        match &self.net {
            Z2Net::Symmetrized { net, .. } => net.n_params(),
            Z2Net::OddNet { trunk, .. } => trunk.len() + 3,
        }
    }
    fn params(&self) -> Vec<&Tensor<T>> {
        match &self.net {
            Z2Net::Symmetrized { net, .. } => net.params(),
            Z2Net::OddNet { trunk, s_weight, s_bias, t_weight, .. } => {
                trunk.iter().chain([s_weight, s_bias, t_weight]).collect()
            }
        }
    }
    fn params_mut(&mut self) -> Vec<&mut Tensor<T>> {
        match &mut self.net {
            Z2Net::Symmetrized { net, .. } => net.params_mut(),
            Z2Net::OddNet { trunk, s_weight, s_bias, t_weight, .. } => {
                trunk.iter_mut().chain([s_weight, s_bias, t_weight]).collect()
            }
        }
    }
    fn param_names(&self) -> Vec<String> {
        match &self.net {
            Z2Net::Symmetrized { net, .. } => net.param_names(),
            Z2Net::OddNet { trunk, .. } => (0..trunk.len())
                .map(|i| format!("net.{}.weight", 2 * i))
                .chain(["s.weight".into(), "s.bias".into(), "t.weight".into()])
                .collect(),
        }
    }
    fn named_buffers(&self) -> Vec<(String, &Tensor<T>)> {
        vec![("mask".into(), &self.mask)]
    }
    fn constants_mut(&mut self) -> Vec<&mut Tensor<T>> {
        let mut c = vec![&mut self.mask, &mut self.inv_mask];
        if let Z2Net::Symmetrized { pm, .. } = &mut self.net {
            c.push(pm);
        }
        c
    }
    fn box_clone(&self) -> Box<dyn Layer<T>> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    /// The checkerboard repeats every 2 sites.
    fn period(&self) -> usize {
        2
    }
}
