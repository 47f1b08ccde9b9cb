//! The affine coupling layer of arXiv:2101.08176 (section IV.B, after Dinh et al.,
//! arXiv:1605.08803), with a checkerboard mask `m` (1 = frozen):
//!
//! `x_f = m x`, `(s, t) = net(x_f)`, `f(x) = x_f + (1 - m) (x e^s + t)`,
//! `log|det J| = sum_sites (1 - m) s`.
//!
//! The reverse pass recomputes `(s, t)` from the frozen sites (unchanged by `f`) and
//! solves `x_a = (y_a - t) e^{-s}`.

use crate::model::Layer;
use crate::net::{Activation, ConvNet, ConvNetConfig};
use crate::ops::LatticeOps;
use latflow_tensor::{Float, Tensor, Var};
use rand::Rng;

/// One affine coupling layer: the net and its mask.
#[derive(Clone, Debug, PartialEq)]
pub struct AffineCoupling<T: Float> {
    /// The conv net `(N, 1, H, W) -> (N, 2, H, W)` giving s (channel 0) and t (channel 1).
    pub net: ConvNet<T>,
    /// Mask parity (0 or 1) of [`super::masks::checkerboard`].
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
        let config = ConvNetConfig {
            in_channels: 1,
            hidden: hidden.to_vec(),
            out_channels: 2,
            kernel,
            final_tanh,
            activation: Activation::TUTORIAL,
        };
        let net = ConvNet::new(config, rng);
        let mask = super::masks::checkerboard::<T>(h, w, parity);
        let inv_mask = mask.map(|m| T::ONE - m);
        AffineCoupling { net, parity, mask, inv_mask }
    }

    /// The layer with `activation` between its net's convolutions (the weights unchanged).
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.net.config.activation = activation;
        self
    }

    /// The checkerboard mask `(H, W)` (1 = frozen), the tutorial's `mask` buffer.
    pub fn mask(&self) -> &Tensor<T> {
        &self.mask
    }

    /// The net's output `st (N, 2, H, W)` on the frozen part of `x (N, H, W)`: the scale
    /// `s` (channel 0) and shift `t` (channel 1).
    fn scale_shift(&self, x: &Var<T>, p: &[Var<T>]) -> Var<T> {
        self.net.forward(&x.mul_const(&self.mask).unsqueeze(1), p)
    }

    /// `x (N, H, W) -> (f(x), log|det J| (N,))`: `f(x) = m x + (1-m)(x e^s + t)` and
    /// `log|det J| = sum (1-m) s`, each one fused op ([`LatticeOps::affine_couple`],
    /// [`LatticeOps::masked_channel_sum`]).
    pub fn forward(&self, x: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>) {
        let st = self.scale_shift(x, p);
        (x.affine_couple(&st, &self.mask, false), st.masked_channel_sum(0, &self.inv_mask))
    }

    /// `y (N, H, W) -> (f^{-1}(y), log|det J_f| at f^{-1}(y) (N,))`:
    /// `f^{-1}(y) = m y + (1-m)(y - t) e^{-s}`, `(s, t)` from the frozen sites of `y`
    /// (which `f` leaves unchanged).
    pub fn reverse(&self, y: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>) {
        let st = self.scale_shift(y, p);
        (y.affine_couple(&st, &self.mask, true), st.masked_channel_sum(0, &self.inv_mask))
    }
}

impl<T: Float> Layer<T> for AffineCoupling<T> {
    fn forward(&self, x: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>) {
        AffineCoupling::forward(self, x, p)
    }
    fn reverse(&self, y: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>) {
        AffineCoupling::reverse(self, y, p)
    }
    fn n_params(&self) -> usize {
        self.net.n_params()
    }
    fn params(&self) -> Vec<&Tensor<T>> {
        self.net.params()
    }
    fn params_mut(&mut self) -> Vec<&mut Tensor<T>> {
        self.net.params_mut()
    }
    fn param_names(&self) -> Vec<String> {
        self.net.param_names()
    }
    fn named_buffers(&self) -> Vec<(String, &Tensor<T>)> {
        vec![("mask".into(), &self.mask)]
    }
    fn constants_mut(&mut self) -> Vec<&mut Tensor<T>> {
        vec![&mut self.mask, &mut self.inv_mask]
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
