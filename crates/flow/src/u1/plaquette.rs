//! A plaquette map for 2D U(1): every plaquette through one circle map, the global
//! constraint kept by one shift, the links rebuilt from the plaquettes. Flow-HMC's latent
//! map when the link couplings' passive plaquettes are what stops the flow
//! (`latflow fhmc --plaquette-map`).
//!
//! In two dimensions the plaquettes of the Wilson action are independent up to one
//! constraint: on the torus `sum_n P(n) = 0` for the unwrapped angles, i.e. the wrapped
//! ones sum to `2 pi Q`. A map that sends every plaquette through a circle diffeomorphism
//! `G` of degree 1 must then shift them to keep the sum; here one global shift `eps`
//! *before* `G`:
//!
//! ```text
//! p(n) = P(n) of z wrapped to [-pi, pi),   sum_n G(p(n) + eps) = sum_n p(n)  (eps unique),
//! delta(n) = G(p(n) + eps) - p(n)  (sum 0),   x = z + L delta,
//! ```
//!
//! with `L` a fixed right inverse of the plaquette map on zero-sum plaquette changes (a
//! maximal tree: cumulative sums along `x` for the `mu = 1` links, the row sums carried
//! along `y` on the `mu = 0` links of the last row), so `P(n)` of `x` is
//! `G(p(n) + eps)` modulo `2 pi`. The map is gauge-equivariant (it adds a function of the
//! plaquettes to the links) and leaves the holonomies' gauge-invariant part alone except
//! for the tree's fixed choice. With `g(n) = G'(p(n) + eps)` and `S_1 = sum_n g(n)`,
//! `d eps / d p(m) = (1 - g(m)) / S_1` and
//!
//! ```text
//! log|det J| = sum_n log g(n) + log V - log S_1
//! ```
//!
//! (the matrix determinant lemma on the plaquettes; the tree's part of the Jacobian has
//! determinant 1 by Sylvester's identity). The inverse is closed-form up to `G^{-1}`:
//! `r(n) = G^{-1}(P(n) of x)`, `eps = mean(r - G(r))`, `delta = G(r) - r + eps`,
//! `z = x - L delta`.
//!
//! When `G` pushes the uniform measure to `e^{beta cos x}` (the single-plaquette
//! distribution, [`CircleMixture::fit`]), `S(f(z)) - log|det J| = log S_1 + const`: the
//! latent field is free but for the constraint, and a latent plaquette passing `pi` (where
//! the topological charge changes) meets a barrier only as wide as `G` is steep there
//! (Lüscher's trivializing map, arXiv:0907.5491, solved in closed form for 2D U(1); the
//! independence of 2D plaquettes is what [`latflow_physics::u1::exact_q2_2d`] uses).

use super::ncp::mixture_inverse;
use super::ultralocal::{load_lanes, store_lanes};
use latflow_sampler::flow_hmc::LatentMap;
use rayon::prelude::*;
use std::f64::consts::PI;
use wide::f32x8;

const TWO_PI: f64 = 2.0 * PI;

/// The circle map `G(x) = (1/m) sum_i 2 atan(e^{s_i} tan(x/2))` (an NCP mixture, lifted:
/// `G(x + 2 pi) = G(x) + 2 pi`, odd, fixing 0 and pi).
#[derive(Clone, Debug, PartialEq)]
pub struct CircleMixture {
    s: Vec<f64>,
    es: Vec<f64>,
}

impl CircleMixture {
    /// The mixture of the components with scales `s`.
    ///
    /// # Panics
    /// If `s` is empty or not finite.
    pub fn new(s: Vec<f64>) -> Self {
        assert!(!s.is_empty() && s.iter().all(|v| v.is_finite()), "CircleMixture: scales {s:?}");
        let es = s.iter().map(|v| v.exp()).collect();
        CircleMixture { s, es }
    }

    /// The components' scales `s_i`.
    pub fn scales(&self) -> &[f64] {
        &self.s
    }

    /// `(G(x), G'(x), G''(x))` for any real `x`.
    #[inline]
    pub fn eval(&self, x: f64) -> (f64, f64, f64) {
        let (sn, cs) = (0.5 * x).sin_cos();
        let (c2, s2, sc) = (cs * cs, sn * sn, sn * cs);
        let (mut h, mut hp, mut hpp) = (0.0, 0.0, 0.0);
        for &e in &self.es {
            h += 2.0 * ((e - 1.0) * sc).atan2(c2 + e * s2);
            let d1 = 1.0 / (c2 / e + e * s2);
            hp += d1;
            hpp -= d1 * d1 * (e - 1.0 / e) * sc;
        }
        let m = self.es.len() as f64;
        (x + h / m, hp / m, hpp / m)
    }

    /// `(G(x), G'(x))` (inlined [`Self::eval`]: `G''` is dropped unused).
    #[inline]
    fn value_slope(&self, x: f64) -> (f64, f64) {
        let (g, gp, _) = self.eval(x);
        (g, gp)
    }

    /// `e^{s_i}`, the components' constants (the ultralocal map's lanes).
    pub(super) fn exp_scales(&self) -> &[f64] {
        &self.es
    }

    /// `G^{-1}(y)` in `[-pi, pi)` for `y` in `[-pi, pi)` (Newton to 1e-12, [`mixture_inverse`]).
    pub fn inverse(&self, y: f64) -> f64 {
        wrap_pm(mixture_inverse(y, &self.s).x)
    }

    /// The reverse Kullback-Leibler divergence (nats) from `G`'s push-forward of the
    /// uniform measure to `e^{beta cos x} / Z`: `E_u[-log G'(u) - beta cos G(u)] + log Z
    /// - log 2 pi`, by the midpoint rule on `n` points (exact to rounding for these
    /// analytic periodic integrands once `n` resolves `G`).
    pub fn kl(&self, beta: f64, n: usize) -> f64 {
        let mut sum = 0.0;
        for k in 0..n {
            let u = -PI + (k as f64 + 0.5) * TWO_PI / n as f64;
            let (g, gp) = self.value_slope(u);
            sum += -gp.ln() - beta * g.cos();
        }
        // log Z = log(2 pi I_0(beta)) - log 2 pi, by the same rule on the density
        let mut z = 0.0;
        for k in 0..n {
            let u = -PI + (k as f64 + 0.5) * TWO_PI / n as f64;
            z += (beta * (u.cos() - 1.0)).exp();
        }
        sum / n as f64 + (z / n as f64).ln() + beta
    }

    /// The `m`-component mixture closest to `e^{beta cos x}` in reverse KL ([`Self::kl`]
    /// on `KL_POINTS` points), by Adam on central differences from scales spread around
    /// `-log(1 + beta)`: a fit of `m` numbers, milliseconds.
    pub fn fit(beta: f64, m: usize) -> Self {
        assert!(m >= 1 && beta.is_finite() && beta >= 0.0, "CircleMixture::fit: beta {beta}, {m} components");
        let base = -(1.0 + beta).ln();
        let mut s: Vec<f64> = (0..m).map(|i| base * (0.5 + i as f64 / m.max(1) as f64)).collect();
        let loss = |s: &[f64]| CircleMixture::new(s.to_vec()).kl(beta, KL_POINTS);
        let (mut mom, mut var) = (vec![0.0; m], vec![0.0; m]);
        let (lr, b1, b2, h) = (0.05, 0.9, 0.999, 1e-5);
        for step in 1..=FIT_STEPS {
            for i in 0..m {
                let mut sp = s.clone();
                sp[i] += h;
                let mut sm = s.clone();
                sm[i] -= h;
                let g = (loss(&sp) - loss(&sm)) / (2.0 * h);
                mom[i] = b1 * mom[i] + (1.0 - b1) * g;
                var[i] = b2 * var[i] + (1.0 - b2) * g * g;
                let mh = mom[i] / (1.0 - b1.powi(step));
                let vh = var[i] / (1.0 - b2.powi(step));
                s[i] -= lr * mh / (vh.sqrt() + 1e-12);
            }
        }
        CircleMixture::new(s)
    }
}

/// Quadrature points of [`CircleMixture::fit`]'s loss.
const KL_POINTS: usize = 2048;
/// Adam steps of [`CircleMixture::fit`].
const FIT_STEPS: i32 = 600;

/// `v` wrapped into `[-pi, pi)`.
#[inline]
fn wrap_pm(v: f64) -> f64 {
    (v + PI).rem_euclid(TWO_PI) - PI
}

/// The plaquette map on an `l x l` lattice with circle map `G` (see the module).
#[derive(Clone, Debug, PartialEq)]
pub struct PlaquetteU1 {
    l: usize,
    g: CircleMixture,
    /// `[theta_0(n), theta_1(n + e0), theta_0(n + e1), theta_1(n)]` of every plaquette `n`.
    plaquettes: Vec<[usize; 4]>,
    /// The force map on f32 lanes for the Wilson action at this beta
    /// ([`PlaquetteU1::with_wilson_lanes`]).
    wilson: Option<f64>,
    /// Newton steps of the force map's shift.
    newton_steps: usize,
    /// `G` on 8 f32 lanes (the force map's).
    lanes: LaneCircle,
}

/// Newton steps of the force map's shift `eps` from 0 (a fixed count of plain steps: the
/// force stays a smooth function of `z`; the exact map's `eps`, for `H`, is solved to
/// rounding). On flow-HMC's latent fields three steps give the acceptance of five (0.887 and
/// 0.886 at L = 16, beta = 6, 50 steps, 64 x 420 trajectories, 2026-12-03) at 0.89x the time;
/// on hot random fields plain Newton need not converge at all (the review found `eps` off by
/// more than 1e-2 after 3 steps on 15 of 200 random 8x8 fields, by pi on some): the force is
/// then wrong and only the acceptance pays, never the exactness.
pub const LANES_NEWTON_STEPS: usize = 3;

/// The largest circle-map scale `|s|` the f32 force map takes.
pub const LANES_MAX_SCALE: f64 = 20.0;

/// [`CircleMixture`] on 8 f32 lanes.
#[derive(Clone, Debug, PartialEq)]
struct LaneCircle {
    /// Per component `(e^s, e^-s, e^s - 1, e^s - e^-s)`.
    comps: Vec<[f32x8; 4]>,
    inv_m: f32x8,
}

impl LaneCircle {
    fn new(g: &CircleMixture) -> Self {
        let comps =
            g.es.iter()
                .map(|&e| {
                    let (e32, ei) = (e as f32, (1.0 / e) as f32);
                    [f32x8::splat(e32), f32x8::splat(ei), f32x8::splat(e32 - 1.0), f32x8::splat(e32 - ei)]
                })
                .collect();
        LaneCircle { comps, inv_m: f32x8::splat(1.0 / g.es.len() as f32) }
    }

    /// `(G(x), G'(x))` (inlined [`Self::eval`]: `G''` is dropped unused).
    #[inline(always)]
    fn value_slope(&self, x: f32x8) -> (f32x8, f32x8) {
        let (g, gp, _) = self.eval(x);
        (g, gp)
    }

    /// `(G(x), G'(x), G''(x))`.
    #[inline(always)]
    fn eval(&self, x: f32x8) -> (f32x8, f32x8, f32x8) {
        let (sn, cs) = (x * f32x8::splat(0.5)).sin_cos();
        let (c2, s2, sc) = (cs * cs, sn * sn, sn * cs);
        let (mut h, mut hp, mut hpp) = (f32x8::ZERO, f32x8::ZERO, f32x8::ZERO);
        for &[e, ei, em1, ediff] in &self.comps {
            h += (em1 * sc).atan2(e.mul_add(s2, c2));
            let d1 = f32x8::ONE / e.mul_add(s2, c2 * ei);
            hp += d1;
            hpp -= d1 * d1 * ediff * sc;
        }
        ((h + h).mul_add(self.inv_m, x), hp * self.inv_m, hpp * self.inv_m)
    }
}

/// Newton iterations of the shift `eps` at most (bisection steps replace the ones that
/// leave the bracket; 60 halvings of `[-pi, pi]` are below the f64 spacing).
const EPS_MAX_ITERS: usize = 200;

impl PlaquetteU1 {
    /// The map on an `l x l` lattice (`l >= 2`).
    pub fn new(l: usize, g: CircleMixture) -> Self {
        assert!(l >= 2, "PlaquetteU1: L = {l}");
        let v = l * l;
        let mut plaquettes = Vec::with_capacity(v);
        for x in 0..l {
            for y in 0..l {
                let n = x * l + y;
                plaquettes.push([n, v + ((x + 1) % l) * l + y, x * l + (y + 1) % l, v + n]);
            }
        }
        let lanes = LaneCircle::new(&g);
        PlaquetteU1 { l, g, plaquettes, wilson: None, newton_steps: LANES_NEWTON_STEPS, lanes }
    }

    /// The same map as flow-HMC's *force map* for the 2D Wilson action at `beta`: its
    /// [`LatentMap::pullback`] runs on 8 f32 lanes (8 configurations per vector) in plaquette
    /// space, `grad = C^T (J^T u - grad_p log|det J|)` with `u = beta sin G(p + eps)` (the
    /// action's gradient never needs the links of `x`: `S` is a function of the
    /// plaquettes), `eps` from [`LANES_NEWTON_STEPS`] Newton steps. The `cotangent` it is
    /// given is *not called* (the caller vouches that the action is Wilson's at `beta`), and
    /// its `x` and `log|det J|` are not computed (NaN): a mixed potential takes them, and
    /// `H`, from the exact map.
    ///
    /// # Panics
    /// If a scale of the circle map exceeds [`LANES_MAX_SCALE`] in magnitude (`G''` grows as
    /// `e^{3|s|}` and overflows f32 near 30; fits up to beta 20 stay below 10).
    pub fn with_wilson_lanes(self, beta: f64) -> Self {
        assert!(
            self.g.s.iter().all(|s| s.abs() <= LANES_MAX_SCALE),
            "PlaquetteU1::with_wilson_lanes: scales {:?} beyond +-{LANES_MAX_SCALE} overflow f32",
            self.g.s
        );
        PlaquetteU1 { wilson: Some(beta), ..self }
    }

    /// The force map's Newton steps for the shift (default [`LANES_NEWTON_STEPS`]).
    pub fn with_newton_steps(self, steps: usize) -> Self {
        PlaquetteU1 { newton_steps: steps, ..self }
    }

    /// The circle map.
    pub fn circle_map(&self) -> &CircleMixture {
        &self.g
    }

    /// The lattice size.
    pub fn l(&self) -> usize {
        self.l
    }

    /// The wrapped plaquettes of `z` into `p`.
    fn plaquettes_of(&self, z: &[f64], p: &mut [f64]) {
        for (pn, q) in p.iter_mut().zip(&self.plaquettes) {
            *pn = wrap_pm(z[q[0]] + z[q[1]] - z[q[2]] - z[q[3]]);
        }
    }

    /// The shift `eps` with `sum_n G(p(n) + eps) = sum_n p(n)`: the root of an increasing
    /// function in `(-pi, pi)` (`|G(y) - y| < pi`), Newton safeguarded by bisection.
    fn shift(&self, p: &[f64]) -> f64 {
        let target: f64 = p.iter().sum();
        let (mut lo, mut hi, mut eps) = (-PI, PI, 0.0);
        for _ in 0..EPS_MAX_ITERS {
            let (mut phi, mut dphi) = (-target, 0.0);
            for &pn in p {
                let (g, gp) = self.g.value_slope(pn + eps);
                phi += g;
                dphi += gp;
            }
            if phi > 0.0 {
                hi = eps;
            } else if phi < 0.0 {
                lo = eps;
            } else {
                return eps;
            }
            let newton = eps - phi / dphi;
            let next = if newton > lo && newton < hi { newton } else { 0.5 * (lo + hi) };
            if (next - eps).abs() <= 4.0 * f64::EPSILON * (1.0 + eps.abs()) {
                return next;
            }
            eps = next;
        }
        eps
    }

    /// `out += L delta`: the link changes whose plaquette changes are `delta` (sum 0).
    fn add_lift(&self, delta: &[f64], out: &mut [f64]) {
        let (l, v) = (self.l, self.l * self.l);
        // mu = 1 links: a1(x, y) = sum_{x' < x} delta(x', y)
        let mut col = vec![0.0; l];
        for x in 0..l {
            for y in 0..l {
                out[v + x * l + y] += col[y];
                col[y] += delta[x * l + y];
            }
        }
        // mu = 0 links of the last row: a0(L-1, y) = -sum_{y' < y} R(y'), R(y) = col[y]
        let mut carried = 0.0;
        for (y, r) in col.iter().enumerate() {
            out[(l - 1) * l + y] -= carried;
            carried += r;
        }
    }

    /// `b = L^T c` for link cotangents `c`.
    fn lift_transpose(&self, c: &[f64], b: &mut [f64]) {
        let (l, v) = (self.l, self.l * self.l);
        // b(x', y') = sum_{x > x'} c1(x, y') - sum_{y > y'} c0(L-1, y)
        let mut tail0 = vec![0.0; l];
        let mut acc = 0.0;
        for y in (0..l).rev() {
            tail0[y] = acc;
            acc += c[(l - 1) * l + y];
        }
        for y in 0..l {
            let mut acc1 = 0.0;
            for x in (0..l).rev() {
                b[x * l + y] = acc1 - tail0[y];
                acc1 += c[v + x * l + y];
            }
        }
    }

    /// `x = f(z)` of one configuration and `log|det J|`; with `slopes`, also `G'` and
    /// `G''` at every shifted plaquette and `S_1`, for the pullback.
    fn forward_one(&self, z: &[f64], x: &mut [f64], slopes: Option<(&mut [f64], &mut [f64])>) -> (f64, f64) {
        let v = self.l * self.l;
        let mut p = vec![0.0; v];
        self.plaquettes_of(z, &mut p);
        let eps = self.shift(&p);
        let mut delta = vec![0.0; v];
        let (mut logdet, mut s1) = (0.0, 0.0);
        match slopes {
            Some((g1, g2)) => {
                for n in 0..v {
                    let (g, gp, gpp) = self.g.eval(p[n] + eps);
                    delta[n] = g - p[n];
                    logdet += gp.ln();
                    s1 += gp;
                    g1[n] = gp;
                    g2[n] = gpp;
                }
            }
            None => {
                for n in 0..v {
                    let (g, gp) = self.g.value_slope(p[n] + eps);
                    delta[n] = g - p[n];
                    logdet += gp.ln();
                    s1 += gp;
                }
            }
        }
        x.copy_from_slice(z);
        self.add_lift(&delta, x);
        for t in x.iter_mut() {
            *t = t.rem_euclid(TWO_PI);
        }
        (logdet + (v as f64).ln() - s1.ln(), s1)
    }

    /// One configuration's pullback: `x`, `log|det J|` and
    /// `grad = d/dz [S(f(z)) - log|det J|]` with `S'(x)` from `cotangent`.
    fn pullback_one(
        &self,
        z: &[f64],
        x: &mut [f64],
        cotangent: &(dyn Fn(&[f64], &mut [f64]) + Sync),
        grad: &mut [f64],
    ) -> f64 {
        let v = self.l * self.l;
        let (mut g1, mut g2) = (vec![0.0; v], vec![0.0; v]);
        let (logdet, s1) = self.forward_one(z, x, Some((&mut g1, &mut g2)));
        cotangent(x, grad);
        let mut b = vec![0.0; v];
        self.lift_transpose(grad, &mut b);
        // (J - I)^T b - grad_p log|det J|, with J = diag(g) (I + 1 e^T), e = (1 - g) / S_1,
        // grad_p log|det J| = A + e sum(A), A = G'' (1/G' - 1/S_1)
        let gb: f64 = g1.iter().zip(&b).map(|(g, b)| g * b).sum();
        let a_sum: f64 = g1.iter().zip(&g2).map(|(g, h)| h * (1.0 / g - 1.0 / s1)).sum();
        for (n, q) in self.plaquettes.iter().enumerate() {
            let e = (1.0 - g1[n]) / s1;
            let a = g2[n] * (1.0 / g1[n] - 1.0 / s1);
            let w = g1[n] * b[n] + e * gb - b[n] - (a + e * a_sum);
            grad[q[0]] += w;
            grad[q[1]] += w;
            grad[q[2]] -= w;
            grad[q[3]] -= w;
        }
        logdet
    }
}

impl PlaquetteU1 {
    /// [`PlaquetteU1::with_wilson_lanes`]'s pullback of up to 8 configurations per group.
    fn pullback_wilson_f32(&self, beta: f64, z: &[f64], grad: &mut [f64]) {
        let (d, v) = (self.dof(), self.l * self.l);
        let n = z.len() / d;
        let lanes = &self.lanes;
        let (two_pi, inv_two_pi) = (f32x8::splat(TWO_PI as f32), f32x8::splat((1.0 / TWO_PI) as f32));
        let beta = f32x8::splat(beta as f32);
        let mut zs = vec![f32x8::ZERO; d];
        let (mut p, mut g1, mut w) = (vec![f32x8::ZERO; v], vec![f32x8::ZERO; v], vec![f32x8::ZERO; v]);
        let (mut g2, mut gs) = (vec![f32x8::ZERO; v], vec![f32x8::ZERO; d]);
        for g in 0..n.div_ceil(8) {
            let chains = 8 * g..(8 * g + 8).min(n);
            load_lanes(z, d, chains.clone(), &mut zs);
            let mut target = f32x8::ZERO;
            for (pn, q) in p.iter_mut().zip(&self.plaquettes) {
                let raw = zs[q[0]] + zs[q[1]] - zs[q[2]] - zs[q[3]];
                *pn = raw - two_pi * (raw * inv_two_pi).round();
                target += *pn;
            }
            // plain Newton steps from 0 per lane, clamped to [-pi, pi]: a smooth function of
            // z where it does not clamp (a bracketed solver's switches between Newton and
            // bisection make the force jump: acceptance 0.71 against 0.97 at L = 16, beta 6,
            // 100 steps); on flow-HMC's latent fields three steps converge, on hot random
            // fields they need not (the force is then off and only the acceptance pays)
            let mut eps = f32x8::ZERO;
            for _ in 0..self.newton_steps {
                let (mut phi, mut dphi) = (-target, f32x8::ZERO);
                for &pn in &p {
                    let (gv, gp) = lanes.value_slope(pn + eps);
                    phi += gv;
                    dphi += gp;
                }
                eps = (eps - phi / dphi).max(f32x8::splat(-PI as f32)).min(f32x8::splat(PI as f32));
            }
            // u = beta sin G, S_1 = sum G', sum G' u
            let (mut s1, mut gu) = (f32x8::ZERO, f32x8::ZERO);
            for n in 0..v {
                let (gv, gp, gpp) = lanes.eval(p[n] + eps);
                let u = beta * gv.sin();
                g1[n] = gp;
                g2[n] = gpp;
                w[n] = u;
                s1 += gp;
                gu = gp.mul_add(u, gu);
            }
            let inv_s1 = f32x8::ONE / s1;
            // A = G'' (1/G' - 1/S_1), its sum
            let mut a_sum = f32x8::ZERO;
            for n in 0..v {
                let a = g2[n] * (f32x8::ONE / g1[n] - inv_s1);
                g2[n] = a;
                a_sum += a;
            }
            // w = J^T u - (A + e sum A), e = (1 - G') / S_1, scattered by C^T
            gs.fill(f32x8::ZERO);
            for (n, q) in self.plaquettes.iter().enumerate() {
                let e = (f32x8::ONE - g1[n]) * inv_s1;
                let wn = g1[n].mul_add(w[n], e * (gu - a_sum)) - g2[n];
                gs[q[0]] += wn;
                gs[q[1]] += wn;
                gs[q[2]] -= wn;
                gs[q[3]] -= wn;
            }
            store_lanes(&gs, d, chains, grad);
        }
    }
}

impl LatentMap for PlaquetteU1 {
    fn dof(&self) -> usize {
        2 * self.l * self.l
    }

    fn forward(&self, z: &[f64], x: &mut [f64], logdet: &mut [f64]) {
        let d = self.dof();
        x.par_chunks_mut(d).zip(z.par_chunks(d)).zip(logdet.par_iter_mut()).for_each(|((xc, zc), ld)| {
            *ld = self.forward_one(zc, xc, None).0;
        });
    }

    fn pullback(
        &self,
        z: &[f64],
        x: &mut [f64],
        logdet: &mut [f64],
        cotangent: &(dyn Fn(&[f64], &mut [f64]) + Sync),
        grad: &mut [f64],
    ) {
        let d = self.dof();
        if let Some(beta) = self.wilson {
            x.fill(f64::NAN);
            logdet.fill(f64::NAN);
            // whole vectors of 8 configurations per task
            let n = logdet.len();
            let chunk = n.div_ceil(rayon::current_num_threads().max(1) * 2).max(1).next_multiple_of(8);
            z.par_chunks(d * chunk).zip(grad.par_chunks_mut(d * chunk)).for_each(|(zc, gc)| {
                self.pullback_wilson_f32(beta, zc, gc);
            });
            return;
        }
        x.par_chunks_mut(d)
            .zip(z.par_chunks(d))
            .zip(logdet.par_iter_mut())
            .zip(grad.par_chunks_mut(d))
            .for_each(|(((xc, zc), ld), gc)| *ld = self.pullback_one(zc, xc, cotangent, gc));
    }

    /// `r = G^{-1}(P of x)`, `eps = mean(r - G(r))`, `z = x - L (G(r) - r + eps)`.
    fn reverse(&self, x: &[f64], z: &mut [f64]) {
        let (d, v) = (self.dof(), self.l * self.l);
        z.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(|(zc, xc)| {
            let mut q = vec![0.0; v];
            self.plaquettes_of(xc, &mut q);
            let mut delta = vec![0.0; v];
            let mut eps = 0.0;
            for (dn, &qn) in delta.iter_mut().zip(&q) {
                let r = self.g.inverse(qn);
                let gr = self.g.value_slope(r).0;
                *dn = gr - r;
                eps -= gr - r;
            }
            eps /= v as f64;
            for dn in delta.iter_mut() {
                *dn = -(*dn + eps);
            }
            zc.copy_from_slice(xc);
            self.add_lift(&delta, zc);
            for t in zc.iter_mut() {
                *t = t.rem_euclid(TWO_PI);
            }
        });
    }

    fn period(&self) -> Option<f64> {
        Some(TWO_PI)
    }
}
