//! U(1) lattice gauge theory with the Wilson action (arXiv:2101.08176, section IV):
//! link angles `theta_mu(n)`, plaquettes
//! `P_{mu nu}(n) = theta_mu(n) + theta_nu(n + mu) - theta_mu(n + nu) - theta_nu(n)`,
//! `S = -beta sum_n sum_{mu<nu} cos P_{mu nu}(n)`, and in 2D the topological charge
//! `Q = (1/2pi) sum_n arg P_01(n)` with `arg` in `[-pi, pi)`.
//!
//! A configuration is a flat slice laid out `(mu, x_0, ..., x_{Nd-1})`: link
//! `theta_mu(n)` is element `mu * V + n`, the layout of a `(N, Nd, L_0, ...)` tensor.

use crate::ops::GaugeOps;
use crate::{Action, Lattice};
use latflow_tensor::{Float, Var};
use std::f64::consts::PI;

/// `x` wrapped into `[-pi, pi)`: `((x + pi) mod 2pi) - pi`, the tutorial's
/// `torch_mod(x + pi) - pi`.
#[inline]
pub fn wrap_angle(x: f64) -> f64 {
    (x + PI).rem_euclid(2.0 * PI) - PI
}

/// `sin x` without a libm call, so the force loop vectorizes: Cody-Waite reduction
/// `x = k pi/2 + r` with `|r| <= pi/4` (fdlibm's two-part `pi/2`), then fdlibm's
/// `__kernel_sin` / `__kernel_cos` polynomials selected by the quadrant `k mod 4`.
/// Agrees with `f64::sin` to ~1e-16 absolute for `|x| < 1e5` (tested); used for the
/// HMC force only (any deterministic force keeps leapfrog reversible and area
/// preserving; the action, which decides acceptance, uses `f64::cos`).
#[inline(always)]
#[allow(clippy::excessive_precision)] // fdlibm's coefficients, as published
pub fn fast_sin(x: f64) -> f64 {
    const PIO2_HI: f64 = 1.570_796_326_734_125_6e0;
    const PIO2_LO: f64 = 6.077_100_506_506_192e-11;
    let k = (x * std::f64::consts::FRAC_2_PI).round();
    let r = (x - k * PIO2_HI) - k * PIO2_LO;
    let z = r * r;
    let sin_r = r + r
        * z
        * (-1.666_666_666_666_663_2e-1
            + z * (8.333_333_333_322_49e-3
                + z * (-1.984_126_982_985_795e-4
                    + z * (2.755_731_370_707_006_8e-6
                        + z * (-2.505_076_025_340_686_3e-8 + z * 1.589_690_995_211_55e-10)))));
    let cos_r = 1.0 - 0.5 * z
        + z * z
            * (4.166_666_666_666_660_2e-2
                + z * (-1.388_888_888_887_411e-3
                    + z * (2.480_158_728_947_673e-5
                        + z * (-2.755_731_435_139_066_3e-7
                            + z * (2.087_572_321_298_175e-9 + z * -1.135_964_755_778_819_5e-11)))));
    let q = (k as i64) & 3;
    let v = if q & 1 == 0 { sin_r } else { cos_r };
    if q & 2 == 0 {
        v
    } else {
        -v
    }
}

/// The U(1) Wilson gauge action on a periodic lattice (any `Nd >= 2`).
///
/// Force: with `s_{mu nu}(n) = beta sin P_{mu nu}(n)`, each plaquette contributes
/// `dS/dtheta_mu(n) += s`, `dS/dtheta_nu(n + mu) += s`, `dS/dtheta_mu(n + nu) -= s`,
/// `dS/dtheta_nu(n) -= s`.
///
/// ```
/// use latflow_physics::{Action, Lattice, U1};
/// let g = U1::new(Lattice::new(&[4, 4]), 2.0);
/// let cold = vec![0.0; g.dof()]; // all links 1: every plaquette is 1
/// assert_eq!(g.action(&cold), -2.0 * 16.0);
/// assert_eq!(g.topological_charge(&cold), 0.0);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct U1 {
    lattice: Lattice,
    /// Inverse coupling `beta` (the tutorial uses 2).
    pub beta: f64,
}

impl U1 {
    /// The Wilson action on `lattice` at inverse coupling `beta`.
    ///
    /// # Panics
    /// If the lattice has fewer than 2 dimensions.
    #[track_caller]
    pub fn new(lattice: Lattice, beta: f64) -> Self {
        assert!(lattice.nd() >= 2, "U1::new: need Nd >= 2, got lattice {:?}", lattice.shape());
        U1 { lattice, beta }
    }

    /// The lattice.
    pub fn lattice(&self) -> &Lattice {
        &self.lattice
    }

    /// Number of plaquette orientations `Nd (Nd - 1) / 2`.
    pub fn n_planes(&self) -> usize {
        let nd = self.lattice.nd();
        nd * (nd - 1) / 2
    }

    /// The plaquette angle `P_{mu nu}(n)` (not wrapped).
    #[inline]
    pub fn plaquette(&self, theta: &[f64], mu: usize, nu: usize, n: usize) -> f64 {
        let v = self.lattice.volume();
        let l = &self.lattice;
        theta[mu * v + n] + theta[nu * v + l.fwd(n, mu)] - theta[mu * v + l.fwd(n, nu)] - theta[nu * v + n]
    }

    /// All plaquette angles `P_{mu nu}(n)` of one plane into `out` (length `V`).
    ///
    /// # Panics
    /// On length mismatches or `mu`, `nu` out of range.
    #[track_caller]
    pub fn plaquettes(&self, theta: &[f64], mu: usize, nu: usize, out: &mut [f64]) {
        self.check(theta);
        let nd = self.lattice.nd();
        assert!(mu < nd && nu < nd && out.len() == self.lattice.volume(), "U1::plaquettes: bad plane or buffer");
        for (n, o) in out.iter_mut().enumerate() {
            *o = self.plaquette(theta, mu, nu, n);
        }
    }

    /// Average plaquette `(1 / (V Nd(Nd-1)/2)) sum_n sum_{mu<nu} cos P_{mu nu}(n)` (1 for the
    /// cold configuration); equals `-S / (beta V Nd(Nd-1)/2)`.
    #[track_caller]
    pub fn average_plaquette(&self, theta: &[f64]) -> f64 {
        self.check(theta);
        self.plaquette_cos_sum(theta) / (self.lattice.volume() * self.n_planes()) as f64
    }

    fn plaquette_cos_sum(&self, theta: &[f64]) -> f64 {
        let nd = self.lattice.nd();
        let mut s = 0.0;
        for mu in 0..nd {
            for nu in mu + 1..nd {
                for n in 0..self.lattice.volume() {
                    s += self.plaquette(theta, mu, nu, n).cos();
                }
            }
        }
        s
    }

    /// Topological charge `Q = (1/2pi) sum_n wrap(P_01(n))`, `wrap` into `[-pi, pi)`.
    /// An integer up to rounding: `sum_n P_01(n) = 0` on the torus, so the sum of the
    /// wrapped angles is a multiple of `2 pi`. In `Nd > 2` this is the charge of the
    /// (0, 1) planes summed over the other coordinates.
    #[track_caller]
    pub fn topological_charge(&self, theta: &[f64]) -> f64 {
        self.check(theta);
        (0..self.lattice.volume()).map(|n| wrap_angle(self.plaquette(theta, 0, 1, n))).sum::<f64>() / (2.0 * PI)
    }

    /// Gauge transformation `theta_mu(n) -> alpha(n) + theta_mu(n) - alpha(n + mu)`
    /// (`U_mu(n) -> Omega(n) U_mu(n) Omega(n + mu)^*` with `Omega = e^{i alpha}`), in place.
    /// Leaves every plaquette, hence `S` and `Q`, unchanged.
    ///
    /// # Panics
    /// If `alpha.len() != V` or `theta.len() != Nd V`.
    #[track_caller]
    pub fn gauge_transform(&self, theta: &mut [f64], alpha: &[f64]) {
        self.check(theta);
        let v = self.lattice.volume();
        assert_eq!(alpha.len(), v, "U1::gauge_transform: alpha has length {}, volume is {v}", alpha.len());
        for mu in 0..self.lattice.nd() {
            for n in 0..v {
                theta[mu * v + n] += alpha[n] - alpha[self.lattice.fwd(n, mu)];
            }
        }
    }

    /// The tensor form for training: links `(N, Nd, L_0, ...)` to the actions `(N,)`;
    /// see [`u1_action_var`].
    ///
    /// # Panics
    /// If the links' trailing shape is not `(Nd, L_0, ...)`.
    #[track_caller]
    pub fn action_var<T: Float>(&self, links: &Var<T>) -> Var<T> {
        let s = links.shape();
        assert!(
            s.len() == self.lattice.nd() + 2 && s[1] == self.lattice.nd() && s[2..] == *self.lattice.shape(),
            "U1::action_var: shape mismatch, links {s:?} vs lattice {:?}",
            self.lattice.shape()
        );
        u1_action_var(links, self.beta)
    }

    #[inline]
    #[track_caller]
    fn check(&self, theta: &[f64]) {
        assert_eq!(
            theta.len(),
            self.dof(),
            "U1: configuration of length {} on {:?} (need Nd * V = {})",
            theta.len(),
            self.lattice.shape(),
            self.dof()
        );
    }
}

impl Action for U1 {
    fn dof(&self) -> usize {
        self.lattice.nd() * self.lattice.volume()
    }

    #[track_caller]
    fn action(&self, theta: &[f64]) -> f64 {
        self.check(theta);
        -self.beta * self.plaquette_cos_sum(theta)
    }

    #[track_caller]
    fn force(&self, theta: &[f64], out: &mut [f64]) {
        self.check(theta);
        self.check(out);
        out.fill(0.0);
        let (nd, v) = (self.lattice.nd(), self.lattice.volume());
        // Blocks of plaquettes: gather the angles, take beta sin in a straight
        // (vectorizable) loop, scatter the four contributions.
        const BLOCK: usize = 64;
        let mut buf = [0.0f64; BLOCK];
        for mu in 0..nd {
            for nu in mu + 1..nd {
                for start in (0..v).step_by(BLOCK) {
                    let len = BLOCK.min(v - start);
                    for (i, b) in buf[..len].iter_mut().enumerate() {
                        *b = self.plaquette(theta, mu, nu, start + i);
                    }
                    for b in buf[..len].iter_mut() {
                        *b = self.beta * fast_sin(*b);
                    }
                    for (i, &s) in buf[..len].iter().enumerate() {
                        let n = start + i;
                        let (n_mu, n_nu) = (self.lattice.fwd(n, mu), self.lattice.fwd(n, nu));
                        out[mu * v + n] += s;
                        out[nu * v + n_mu] += s;
                        out[mu * v + n_nu] -= s;
                        out[nu * v + n] -= s;
                    }
                }
            }
        }
    }

    fn canonicalize(&self, theta: &mut [f64]) {
        for t in theta {
            *t = t.rem_euclid(2.0 * PI);
        }
    }

    /// Charge conjugation `theta -> -theta` (into `[0, 2 pi)`): `S` is even, `Q -> -Q`.
    fn flip(&self, theta: &mut [f64]) -> bool {
        for t in theta.iter_mut() {
            *t = (-*t).rem_euclid(2.0 * PI);
        }
        true
    }
}

/// Plaquette angles `P_{mu nu}` of a batch of links `(N, Nd, L_0, ...)` as a tape value
/// of shape `(N, L_0, ...)`, the tutorial's `compute_u1_plaq`:
/// `links[:, mu] + roll(links[:, nu], -1, mu + 1) - roll(links[:, mu], -1, nu + 1) - links[:, nu]`.
///
/// # Panics
/// If the rank is < 3 or `mu`, `nu` are out of range.
#[track_caller]
pub fn u1_plaquette_var<T: Float>(links: &Var<T>, mu: usize, nu: usize) -> Var<T> {
    let s = links.shape();
    assert!(s.len() >= 3 && mu < s[1] && nu < s[1], "u1_plaquette_var: links {s:?}, plane ({mu}, {nu})");
    if s.len() == 4 && s[1] == 2 && (mu, nu) == (0, 1) {
        // 2D: one fused op with the same values (Var::u1_plaquette01)
        return links.u1_plaquette01();
    }
    let (lm, ln) = (links.select(1, mu), links.select(1, nu));
    lm.add(&ln.roll(mu + 1, -1)).sub(&lm.roll(nu + 1, -1)).sub(&ln)
}

/// The Wilson action of a batch of links `(N, Nd, L_0, ...)` with tape ops, the
/// tutorial's `U1GaugeAction`: `-beta sum_{mu<nu} sum_n cos P_{mu nu}(n)`, shape `(N,)`.
/// Its gradient is the analytic force of [`U1`] (audited by `gradcheck`).
///
/// ```
/// use latflow_physics::u1_action_var;
/// use latflow_tensor::{Tensor, Var};
/// let links = Var::constant(Tensor::<f64>::zeros(&[3, 2, 4, 4]));
/// let s = u1_action_var(&links, 2.0);
/// assert_eq!(s.value().data(), &[-32.0, -32.0, -32.0]);
/// ```
///
/// # Panics
/// If the rank is < 3 or `links.shape()[1]` is not the number of lattice axes.
#[track_caller]
pub fn u1_action_var<T: Float>(links: &Var<T>, beta: f64) -> Var<T> {
    let s = links.shape();
    assert!(s.len() >= 3 && s[1] == s.len() - 2, "u1_action_var: need (N, Nd, L_0, .., L_{{Nd-1}}), got {s:?}");
    let nd = s[1];
    let mut total: Option<Var<T>> = None;
    for mu in 0..nd {
        for nu in mu + 1..nd {
            let c = u1_plaquette_var(links, mu, nu).cos();
            total = Some(match total {
                None => c,
                Some(t) => t.add(&c),
            });
        }
    }
    let axes: Vec<usize> = (1..=nd).collect();
    total.expect("nd >= 2").sum_axes(&axes).mul_scalar(-beta)
}

/// Exact `<Q^2>` of 2D U(1) with the Wilson action on a periodic lattice of `volume`
/// plaquettes, for the charge of [`U1::topological_charge`].
///
/// On the torus the wrapped plaquette angles `phi_p` are independent and uniform up to
/// the constraint `sum_p phi_p = 2 pi Q`, so with `f(nu) = int_{-pi}^{pi} dphi e^{beta cos phi} cos(nu phi)`,
/// `Z(theta) ~ sum_{n in Z} f(n + theta / 2pi)^V` and `<Q^2> = -d^2 ln Z / d theta^2` at
/// `theta = 0` (character expansion / Poisson resummation; see e.g. Bonati and Rossi,
/// Phys. Rev. D 100 (2019) 054503, arXiv:1908.07476). Integrals by Simpson's rule on
/// 4096 intervals (converged to ~1e-12 for beta <= 10), sum over |n| <= 40.
///
/// ```
/// use latflow_physics::u1::exact_q2_2d;
/// let q2 = exact_q2_2d(2.0, 64);
/// assert!((q2 - 1.23).abs() < 0.02); // the tutorial's HMC value on 8x8 at beta = 2
/// ```
pub fn exact_q2_2d(beta: f64, volume: usize) -> f64 {
    let m = 4096;
    let h = 2.0 * PI / m as f64;
    // f(n), f'(n), f''(n) at integer n (f' = -int phi e^{b cos} sin(n phi), f'' = -int phi^2 e^{b cos} cos(n phi))
    let integrals = |n: f64| {
        let (mut f, mut f1, mut f2) = (0.0, 0.0, 0.0);
        for i in 0..=m {
            let phi = -PI + i as f64 * h;
            let w = if i == 0 || i == m {
                1.0
            } else if i % 2 == 1 {
                4.0
            } else {
                2.0
            };
            let e = w * (beta * (phi.cos() - 1.0)).exp(); // e^{-beta} scaled: cancels in ratios
            f += e * (n * phi).cos();
            f1 -= e * phi * (n * phi).sin();
            f2 -= e * phi * phi * (n * phi).cos();
        }
        (f * h / 3.0, f1 * h / 3.0, f2 * h / 3.0)
    };
    let v = volume as f64;
    let (f0, _, _) = integrals(0.0);
    let (mut g, mut g2) = (0.0, 0.0);
    for n in -40..=40 {
        let (f, f1, f2) = integrals(n as f64);
        let r = f / f0; // f^V / f0^V stays finite
        let rv = r.powi(volume as i32 - 2);
        g += rv * r * r;
        g2 += v * (v - 1.0) * rv * (f1 / f0).powi(2) + v * rv * r * (f2 / f0);
    }
    -g2 / g / (4.0 * PI * PI)
}
