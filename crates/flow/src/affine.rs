//! The affine coupling layer of arXiv:2101.08176 (section IV.B, after Dinh et al.,
//! arXiv:1605.08803), with a checkerboard mask `m` (1 = frozen):
//!
//! `x_f = m x`, `(s, t) = net(x_f)`, `f(x) = x_f + (1 - m) (x e^s + t)`,
//! `log|det J| = sum_sites (1 - m) s`.
//!
//! The reverse pass recomputes `(s, t)` from the frozen sites (unchanged by `f`) and
//! solves `x_a = (y_a - t) e^{-s}`.

use crate::net::{ConvNet, ConvNetConfig};
use latflow_tensor::{Float, Tensor, Var};
use rand::Rng;

/// One affine coupling layer: the net and its mask.
#[derive(Clone, Debug, PartialEq)]
pub struct AffineCoupling<T: Float> {
    /// The conv net `(N, 1, H, W) -> (N, 2, H, W)` giving s (channel 0) and t (channel 1).
    pub net: ConvNet<T>,
    /// Mask parity (0 or 1) of [`crate::masks::checkerboard`].
    pub parity: usize,
    mask: Tensor<T>,
    inv_mask: Tensor<T>,
}

impl<T: Float> AffineCoupling<T> {
    /// A layer on an `h x w` lattice with the tutorial's net (1 -> hidden -> 2 channels).
    pub fn new<R: Rng + ?Sized>(
        h: usize,
        w: usize,
        parity: usize,
        hidden: &[usize],
        kernel: usize,
        final_tanh: bool,
        rng: &mut R,
    ) -> Self {
        let config =
            ConvNetConfig { in_channels: 1, hidden: hidden.to_vec(), out_channels: 2, kernel, final_tanh, slope: 0.01 };
        let net = ConvNet::new(config, rng);
        let mask = crate::masks::checkerboard::<T>(h, w, parity);
        let inv_mask = mask.map(|m| T::ONE - m);
        AffineCoupling { net, parity, mask, inv_mask }
    }

    /// The checkerboard mask `(H, W)` (1 = frozen), the tutorial's `mask` buffer.
    pub fn mask(&self) -> &Tensor<T> {
        &self.mask
    }

    /// `(s, t)` of the net on the frozen part `x_f` (shape `(N, H, W)` each).
    fn scale_shift(&self, xf: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>) {
        let out = self.net.forward(&xf.unsqueeze(1), p);
        (out.select(1, 0), out.select(1, 1))
    }

    /// `x (N, H, W) -> (f(x), log|det J| (N,))`.
    pub fn forward(&self, x: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>) {
        let xf = x.mul_const(&self.mask);
        let (s, t) = self.scale_shift(&xf, p);
        let s = s.mul_const(&self.inv_mask);
        let active = x.mul(&s.exp()).add(&t).mul_const(&self.inv_mask);
        let logj = s.sum_axes(&[1, 2]);
        (xf.add(&active), logj)
    }

    /// `y (N, H, W) -> (f^{-1}(y), log|det J_f| at f^{-1}(y) (N,))`.
    pub fn reverse(&self, y: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>) {
        let yf = y.mul_const(&self.mask);
        let (s, t) = self.scale_shift(&yf, p);
        let s = s.mul_const(&self.inv_mask);
        let active = y.sub(&t).mul(&s.neg().exp()).mul_const(&self.inv_mask);
        let logj = s.sum_axes(&[1, 2]);
        (yf.add(&active), logj)
    }
}
