//! The gauge-equivariant link coupling (Kanwar et al. arXiv:2003.06413;
//! arXiv:2101.08176 section V.B, the tutorial's `GaugeEquivCoupling`).
//!
//! With `P = P_01(links)`, `(P', log J) = plaq_coupling(P)` and `d = P' - P`, the
//! active links move by `theta_0 += d`, `theta_1 -= d` (mod 2 pi), so that the active
//! plaquette at the same site becomes exactly `P'`. Plaquettes are gauge invariant and
//! the update is a per-site shift of angles, hence `f(g.U) = g.f(U)`, and the Jacobian of
//! the link map is that of the plaquette map (the active links and active plaquettes are
//! in one-to-one correspondence; the others are unchanged or determined).

use super::masks::link_active_stripes;
use super::ncp::NcpPlaqCoupling;
use crate::model::Layer;
use crate::net::Activation;
use crate::ops::LatticeOps;
use latflow_physics::u1_plaquette_var;
use latflow_tensor::{Float, Tensor, Var};
use rand::Rng;
use std::f64::consts::PI;

/// One gauge-equivariant coupling layer: its plaquette coupling and active-link mask.
#[derive(Clone, Debug, PartialEq)]
pub struct GaugeEquivCoupling<T: Float> {
    /// The NCP coupling on the plaquettes (checkpoint prefix `plaq_coupling.`).
    pub plaq_coupling: NcpPlaqCoupling<T>,
    /// Direction of the updated links (0 or 1).
    pub mu: usize,
    /// Stripe offset (0..4).
    pub off: usize,
    active_mask: Tensor<T>,
    inactive_mask: Tensor<T>,
}

impl<T: Float> GaugeEquivCoupling<T> {
    /// Layer for direction `mu`, offset `off` on an `l x l` lattice with an NCP mixture
    /// of `n_mix` components and the tutorial's net (`hidden`, odd `kernel`).
    ///
    /// # Panics
    /// If `mu > 1`, `n_mix == 0`, or the net's sizes are invalid.
    #[track_caller]
    pub fn new<R: Rng + ?Sized>(
        l: usize,
        mu: usize,
        off: usize,
        n_mix: usize,
        hidden: &[usize],
        kernel: usize,
        rng: &mut R,
    ) -> Self {
        let plaq_coupling = NcpPlaqCoupling::new(l, l, mu, off, n_mix, hidden, kernel, rng);
        let mask = link_active_stripes::<T>(l, l, mu, off);
        let inactive = mask.map(|m| T::ONE - m);
        GaugeEquivCoupling { plaq_coupling, mu, off, active_mask: mask, inactive_mask: inactive }
    }

    /// The layer with `activation` between its net's convolutions (the weights unchanged).
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.plaq_coupling = self.plaq_coupling.with_activation(activation);
        self
    }

    /// The active-link mask, shape `(2, L, L)`.
    pub fn active_mask(&self) -> &Tensor<T> {
        &self.active_mask
    }

    /// The layer's constant buffers under their PyTorch `state_dict` names (the tutorial
    /// registers its masks as buffers, so its checkpoints carry them next to the
    /// parameters): `active_mask` `(2, L, L)` and `plaq_coupling.{frozen, active, passive}`
    /// `(L, L)`. They are determined by `(L, mu, off)`; a loader can check them.
    pub fn named_buffers(&self) -> Vec<(String, &Tensor<T>)> {
        let (frozen, active, passive) = self.plaq_coupling.masks();
        vec![
            ("active_mask".into(), &self.active_mask),
            ("plaq_coupling.frozen".into(), frozen),
            ("plaq_coupling.active".into(), active),
            ("plaq_coupling.passive".into(), passive),
        ]
    }

    /// `links (N, 2, L, L) -> (f(links), log|det J| (N,))`. Only the active links are
    /// touched: `theta_mu(n) -> (theta_mu(n) +- d(n)) mod 2 pi` on the stripe, `+` for
    /// `mu = 0`, `-` for `mu = 1`. Values are bit for bit those of the tutorial's masked
    /// formulation ([`GaugeEquivCoupling::forward_masked`]).
    ///
    /// # Panics
    /// If `links` is not `(N, 2, L, L)` for this layer's lattice.
    #[track_caller]
    pub fn forward(&self, links: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>) {
        let plaq = u1_plaquette_var(links, 0, 1);
        let (xa, ya, logj) = self.plaq_coupling.forward_active(&plaq, p);
        // the tutorial adds dl = (d, -d), d = f(P) - P, to the links (mod 2 pi): one fused
        // op on the active stripe (Var::u1_stripe_update)
        (links.u1_stripe_update(&ya, &xa, self.mu, self.off), logj)
    }

    /// The tutorial's `GaugeEquivCoupling.forward` op for op (mask multiplications on
    /// full lattices): the reference that [`GaugeEquivCoupling::forward`] is tested against.
    #[track_caller]
    pub fn forward_masked(&self, links: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>) {
        let plaq = u1_plaquette_var(links, 0, 1);
        let (new_plaq, logj) = self.plaq_coupling.forward_masked(&plaq, p);
        let d = new_plaq.sub(&plaq);
        let dl = Var::stack(&[d.clone(), d.neg()], 1);
        let y =
            dl.add(links).rem_euclid(2.0 * PI).mul_const(&self.active_mask).add(&links.mul_const(&self.inactive_mask));
        (y, logj)
    }

    /// `links (N, 2, L, L) -> (f^{-1}(links), log|det J_f| at f^{-1}(links) (N,))`; the
    /// plaquette map is inverted numerically ([`NcpPlaqCoupling::reverse`]); no gradients.
    ///
    /// # Panics
    /// If `links` is not `(N, 2, L, L)` for this layer's lattice.
    #[track_caller]
    pub fn reverse(&self, links: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>) {
        let links = links.detach();
        let plaq = u1_plaquette_var(&links, 0, 1);
        let (old_plaq, logj) = self.plaq_coupling.reverse(&plaq, p);
        let d = plaq.sub(&old_plaq);
        let dl = Var::stack(&[d.clone(), d.neg()], 1);
        let x =
            links.sub(&dl).rem_euclid(2.0 * PI).mul_const(&self.active_mask).add(&links.mul_const(&self.inactive_mask));
        (x, logj)
    }
}

impl<T: Float> Layer<T> for GaugeEquivCoupling<T> {
    fn forward(&self, x: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>) {
        GaugeEquivCoupling::forward(self, x, p)
    }
    fn reverse(&self, y: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>) {
        GaugeEquivCoupling::reverse(self, y, p)
    }
    fn n_params(&self) -> usize {
        self.plaq_coupling.net.n_params()
    }
    fn params(&self) -> Vec<&Tensor<T>> {
        self.plaq_coupling.net.params()
    }
    fn params_mut(&mut self) -> Vec<&mut Tensor<T>> {
        self.plaq_coupling.net.params_mut()
    }
    fn param_names(&self) -> Vec<String> {
        self.plaq_coupling.net.param_names().into_iter().map(|n| format!("plaq_coupling.{n}")).collect()
    }
    fn named_buffers(&self) -> Vec<(String, &Tensor<T>)> {
        GaugeEquivCoupling::named_buffers(self)
    }
    fn constants_mut(&mut self) -> Vec<&mut Tensor<T>> {
        let mut v = vec![&mut self.active_mask, &mut self.inactive_mask];
        v.extend(self.plaq_coupling.masks_mut());
        v
    }
    fn box_clone(&self) -> Box<dyn Layer<T>> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    /// The stripe masks repeat every 4 sites.
    fn period(&self) -> usize {
        4
    }
}
