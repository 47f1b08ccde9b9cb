//! The phi^4 action in the tutorial's parametrization (arXiv:2101.08176, eq. 22):
//! `S = sum_n [ phi(n) sum_mu (2 phi(n) - phi(n+mu) - phi(n-mu)) + M2 phi(n)^2 + lam phi(n)^4 ]`.

use crate::{Action, Lattice};
use latflow_tensor::{Float, Var};

/// Real scalar phi^4 theory on a periodic lattice of any dimension.
///
/// Using `sum_n phi(n) phi(n - mu) = sum_n phi(n) phi(n + mu)`:
/// `S = sum_n [ (2 Nd + M2) phi^2 + lam phi^4 - 2 phi(n) sum_mu phi(n + mu) ]`, and the force is
/// `dS/dphi(n) = 2 (2 Nd + M2) phi(n) + 4 lam phi(n)^3 - 2 sum_mu (phi(n + mu) + phi(n - mu))`.
///
/// ```
/// use latflow_physics::{Action, Lattice, Phi4};
/// let s = Phi4::new(Lattice::new(&[2, 2]), -4.0, 8.0);
/// // a constant field has no kinetic term: S = V (M2 phi^2 + lam phi^4)
/// assert!((s.action(&[0.5; 4]) - 4.0 * (-4.0 * 0.25 + 8.0 * 0.0625)).abs() < 1e-12);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Phi4 {
    lattice: Lattice,
    /// Bare mass squared `M2` (the tutorial uses -4).
    pub m2: f64,
    /// Quartic coupling `lam` (the tutorial uses 8).
    pub lam: f64,
}

impl Phi4 {
    /// The action on `lattice` with couplings `m2`, `lam`.
    pub fn new(lattice: Lattice, m2: f64, lam: f64) -> Self {
        Phi4 { lattice, m2, lam }
    }

    /// The lattice.
    pub fn lattice(&self) -> &Lattice {
        &self.lattice
    }

    /// The tensor form for training: `phi` of shape `(N, L_0, ..., L_{Nd-1})` to the
    /// actions `(N,)`; see [`phi4_action_var`].
    ///
    /// # Panics
    /// If `phi`'s trailing shape is not the lattice's.
    #[track_caller]
    pub fn action_var<T: Float>(&self, phi: &Var<T>) -> Var<T> {
        assert!(
            phi.shape().len() == self.lattice.nd() + 1 && phi.shape()[1..] == *self.lattice.shape(),
            "Phi4::action_var: shape mismatch, phi {:?} vs lattice {:?}",
            phi.shape(),
            self.lattice.shape()
        );
        phi4_action_var(phi, self.m2, self.lam)
    }

    #[inline]
    fn check(&self, x: &[f64]) {
        assert_eq!(
            x.len(),
            self.lattice.volume(),
            "Phi4: configuration of length {} on {:?}",
            x.len(),
            self.lattice.shape()
        );
    }
}

impl Action for Phi4 {
    fn dof(&self) -> usize {
        self.lattice.volume()
    }

    #[track_caller]
    fn action(&self, phi: &[f64]) -> f64 {
        self.check(phi);
        let nd = self.lattice.nd();
        let fwd = self.lattice.fwd_table();
        let c2 = 2.0 * nd as f64 + self.m2;
        if nd == 2 {
            return action_2d(phi, self.lattice.shape()[0], self.lattice.shape()[1], c2, self.lam);
        }
        let mut s = 0.0;
        for (n, &p) in phi.iter().enumerate() {
            let nb: f64 = fwd[n * nd..(n + 1) * nd].iter().map(|&m| phi[m]).sum();
            let p2 = p * p;
            s += p2 * (c2 + self.lam * p2) - 2.0 * p * nb;
        }
        s
    }

    #[track_caller]
    fn force(&self, phi: &[f64], out: &mut [f64]) {
        self.check(phi);
        self.check(out);
        let nd = self.lattice.nd();
        let c2 = 2.0 * (2.0 * nd as f64 + self.m2);
        let c4 = 4.0 * self.lam;
        if nd == 2 && self.lattice.shape()[1] >= 3 {
            force_2d(phi, out, self.lattice.shape()[0], self.lattice.shape()[1], c2, c4);
            return;
        }
        let (fwd, bwd) = (self.lattice.fwd_table(), self.lattice.bwd_table());
        for (n, (o, &p)) in out.iter_mut().zip(phi).enumerate() {
            let nb: f64 = (0..nd).map(|mu| phi[fwd[n * nd + mu]] + phi[bwd[n * nd + mu]]).sum();
            *o = p * (c2 + c4 * p * p) - 2.0 * nb;
        }
    }

    /// `phi -> -phi`: `S` is even (the Z2 symmetry that the broken phase breaks).
    fn flip(&self, phi: &mut [f64]) -> bool {
        phi.iter_mut().for_each(|p| *p = -*p);
        true
    }
}

/// The 2D force with direct row arithmetic (no neighbour tables): the interior of each
/// row is a straight loop over shifted slices, which the compiler vectorizes; same
/// formula as the general path. Needs `ly >= 3` (callers fall back otherwise).
#[inline]
fn force_2d(phi: &[f64], out: &mut [f64], lx: usize, ly: usize, c2: f64, c4: f64) {
    debug_assert!(ly >= 3);
    let site = |p: f64, nb: f64| p * (c2 + c4 * p * p) - 2.0 * nb;
    for x in 0..lx {
        let (xu, xd) = ((x + 1) % lx, (x + lx - 1) % lx);
        let row = &phi[x * ly..(x + 1) * ly];
        let up = &phi[xu * ly..(xu + 1) * ly];
        let dn = &phi[xd * ly..(xd + 1) * ly];
        let o = &mut out[x * ly..(x + 1) * ly];
        o[0] = site(row[0], up[0] + dn[0] + row[1] + row[ly - 1]);
        o[ly - 1] = site(row[ly - 1], up[ly - 1] + dn[ly - 1] + row[0] + row[ly - 2]);
        let inner = o[1..ly - 1].iter_mut().zip(&row[1..ly - 1]).zip(up[1..ly - 1].iter().zip(&dn[1..ly - 1]));
        for (((o, &p), (&u, &d)), (&r, &l)) in inner.zip(row[2..].iter().zip(&row[..ly - 2])) {
            *o = site(p, u + d + r + l);
        }
    }
}

/// The 2D action with direct row arithmetic, `sum_n [(4 + M2) phi^2 + lam phi^4 - 2 phi (phi(n+e0) + phi(n+e1))]`.
#[inline]
fn action_2d(phi: &[f64], lx: usize, ly: usize, c2: f64, lam: f64) -> f64 {
    let mut s = 0.0;
    for x in 0..lx {
        let xu = (x + 1) % lx;
        let row = &phi[x * ly..(x + 1) * ly];
        let up = &phi[xu * ly..(xu + 1) * ly];
        let right = row[1..].iter().chain(&row[..1]);
        s += row
            .iter()
            .zip(up)
            .zip(right)
            .map(|((&p, &u), &r)| {
                let p2 = p * p;
                p2 * (c2 + lam * p2) - 2.0 * p * (u + r)
            })
            .sum::<f64>();
    }
    s
}

/// The phi^4 action on a batch tensor, written with tape ops exactly as the tutorial's
/// `ScalarPhi4Action`: for `phi` of shape `(N, L_0, ..., L_{Nd-1})`,
/// `a = M2 phi^2 + lam phi^4 + sum_mu (2 phi^2 - phi roll(phi, -1, mu+1) - phi roll(phi, 1, mu+1))`,
/// summed over the lattice axes, shape `(N,)`. Its gradient is the analytic force of
/// [`Phi4`] (audited by `gradcheck`).
///
/// ```
/// use latflow_physics::phi4_action_var;
/// use latflow_tensor::{Tensor, Var};
/// let phi = Var::constant(Tensor::from_vec(&[1, 2, 2], vec![0.5f64; 4]));
/// let s = phi4_action_var(&phi, -4.0, 8.0);
/// assert_eq!(s.shape(), &[1]);
/// assert!((s.value().data()[0] - 4.0 * (-4.0 * 0.25 + 8.0 * 0.0625)).abs() < 1e-12);
/// ```
///
/// # Panics
/// If `phi` has rank < 2.
#[track_caller]
pub fn phi4_action_var<T: Float>(phi: &Var<T>, m2: f64, lam: f64) -> Var<T> {
    let rank = phi.shape().len();
    assert!(rank >= 2, "phi4_action_var: need (N, L_0, ...), got {:?}", phi.shape());
    let p2 = phi.square();
    let mut a = p2.mul_scalar(m2).add(&p2.square().mul_scalar(lam));
    for axis in 1..rank {
        let kin = p2.mul_scalar(2.0).sub(&phi.mul(&phi.roll(axis, -1))).sub(&phi.mul(&phi.roll(axis, 1)));
        a = a.add(&kin);
    }
    let axes: Vec<usize> = (1..rank).collect();
    a.sum_axes(&axes)
}
