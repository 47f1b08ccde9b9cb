//! An ultralocal U(1) flow as flow-HMC's latent map, without the tape.
//!
//! A gauge-equivariant coupling whose net has kernel 1 gives every active plaquette the
//! same NCP mixture ([`super::NcpPlaqCoupling::ultralocal_scales_offset`]): layer `l` maps each
//! active plaquette `P` to `g_l(P) + t_l` through the link on its stripe,
//!
//! ```text
//! theta_mu(n) -> theta_mu(n) + sigma_mu d_l(P(n)),   d_l(P) = g_l(P) + t_l - P,
//! sigma_0 = +1, sigma_1 = -1,   log|det J_l| = sum_n log g_l'(P(n)),
//! ```
//!
//! with `P(n) = theta_0(n) + theta_1(n + e0) - theta_0(n + e1) - theta_1(n)` and the
//! mixture `g(x) = (1/m) sum_i h_{s_i}(x)` of the lifted components
//! `h_s(x) = x + 2 atan((e^s - 1) sin(x/2) cos(x/2) / (cos^2(x/2) + e^s sin^2(x/2)))`
//! (the tutorial's `2 atan(e^s tan(x/2))` without its branch; the same map modulo `2 pi`),
//! `h_s'(x) = 1 / (e^{-s} cos^2(x/2) + e^s sin^2(x/2))`.
//!
//! The active plaquettes of one layer share no updated link, so a layer is one pass over
//! them. The force of flow-HMC, `J^T S'(x) - d log|det J| / dz`, is one reverse sweep over
//! the layers with the adjoint `a` of the links: for each active plaquette
//! `c = sigma_mu a_mu(n) (g'(P) - 1) - (log g')'(P)`, added to the four links of `P(n)`
//! with the plaquette's signs. With the tape, the same force runs every op on whole
//! lattices (the nets' kernel-1 convolutions included, whose outputs are constants);
//! here it is a few transcendental functions per active plaquette on `wide`'s vectors, one
//! configuration per lane: 8 lanes of f32 for the force (mixed precision: any force keeps
//! flow-HMC exact), 4 lanes of f64 for `x` and `log|det J|` (the `H` of the Metropolis
//! test), scalar f64 for the f64 force (`--precision f64`, the audits).
//!
//! The f32 force map can take the action's gradient on the same lanes
//! ([`UltralocalU1::with_wilson_lanes`]: `beta sin P` per plaquette for the 2D Wilson action),
//! so that a configuration goes from `z` to its force without leaving the lanes; with no
//! layers ([`UltralocalU1::identity`]) that is plain HMC through the same machinery.
//!
//! Used by `latflow fhmc` for every checkpoint it recognizes (`--tape` turns it off,
//! `--identity` drops the layers);
//! measured in `cargo bench --bench flow_hmc` (6.4x the tape's f32 force at L = 16 with 64
//! chains) and `scripts/freezing.sh`.

use super::coupling::GaugeEquivCoupling;
use super::ncp::mixture_inverse;
use super::plaquette::CircleMixture;
use crate::model::Flow;
use latflow_sampler::flow_hmc::LatentMap;
use latflow_tensor::{Device, Float};
use rayon::prelude::*;
use std::f64::consts::PI;
use wide::{f32x8, f64x4};

const TWO_PI: f64 = 2.0 * PI;

/// One ultralocal coupling: its stripe, its mixture and the link indices of its active
/// plaquettes (within one configuration of `2 L^2` links).
#[derive(Clone, Debug, PartialEq)]
struct Layer {
    mu: usize,
    /// The mixture `G` of the components (scales `s_i`).
    circle: CircleMixture,
    /// The offset `t`.
    t: f64,
    /// Per active plaquette: `[theta_0(n), theta_1(n + e0), theta_0(n + e1), theta_1(n)]`.
    links: Vec<[usize; 4]>,
    /// The mixture's constants on 8 f32 lanes (the force) and 4 f64 lanes (`H`).
    lanes32: LaneMixture,
    lanes64: LaneMixture64,
}

impl Layer {
    /// The coupling `(mu, off)` on an `l x l` lattice with scales `s` and offset `t`.
    fn new(l: usize, mu: usize, off: usize, s: Vec<f64>, t: f64) -> Self {
        let circle = CircleMixture::new(s);
        let lanes32 = LaneMixture::new(circle.exp_scales(), t);
        let lanes64 = LaneMixture64::new(circle.exp_scales(), t);
        Layer { mu, circle, t, links: active_links(l, mu, off), lanes32, lanes64 }
    }

    /// The updated link of active plaquette `k` (`theta_mu(n)`) and its sign `sigma_mu`.
    fn updated(&self, k: usize) -> (usize, f64) {
        let p = &self.links[k];
        if self.mu == 0 {
            (p[0], 1.0)
        } else {
            (p[3], -1.0)
        }
    }

    /// Which of a plaquette's four links the layer updates, and its sign as a vector.
    fn updated_slot(&self) -> (usize, f32x8) {
        if self.mu == 0 {
            (0, f32x8::ONE)
        } else {
            (3, -f32x8::ONE)
        }
    }

    /// `(d(x) = g(x) + t - x, g'(x), (log g')'(x))` in f64 ([`CircleMixture::eval`]).
    fn mixture(&self, x: f64) -> (f64, f64, f64) {
        let (g, gp, gpp) = self.circle.eval(x);
        (g - x + self.t, gp, gpp / gp)
    }
}

/// An ultralocal U(1) flow ([`UltralocalU1::from_flow`]) as a [`LatentMap`]: `x` and
/// `log|det J|` in f64, the force in f64 or, with [`UltralocalU1::f32_force`], in f32
/// on 8-lane vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct UltralocalU1 {
    l: usize,
    layers: Vec<Layer>,
    f32_force: bool,
    /// The Wilson action's gradient on the f32 lanes ([`UltralocalU1::with_wilson_lanes`]).
    wilson: Option<WilsonLanes>,
}

/// The 2D Wilson action's gradient `dS/dtheta` for `S = -beta sum_n cos P(n)` on 8 f32
/// lanes: per plaquette `beta sin P(n)`, added to its four links with their signs (as
/// [`latflow_physics::U1`]'s force, in f32 and with `wide`'s `sin`).
#[derive(Clone, Debug, PartialEq)]
struct WilsonLanes {
    beta: f64,
    /// `[theta_0(n), theta_1(n + e0), theta_0(n + e1), theta_1(n)]` of every plaquette.
    plaquettes: Vec<[usize; 4]>,
}

impl WilsonLanes {
    fn gradient(&self, xs: &[f32x8], gs: &mut [f32x8]) {
        gs.fill(f32x8::ZERO);
        let beta = f32x8::splat(self.beta as f32);
        for p in &self.plaquettes {
            let s = beta * (xs[p[0]] + xs[p[1]] - xs[p[2]] - xs[p[3]]).sin();
            gs[p[0]] += s;
            gs[p[1]] += s;
            gs[p[2]] -= s;
            gs[p[3]] -= s;
        }
    }
}

impl UltralocalU1 {
    /// The flow's couplings as ultralocal layers, when every layer is a gauge-equivariant
    /// coupling whose net has kernel 1 and the flow runs on the CPU; `None` otherwise.
    pub fn from_flow<T: Float>(flow: &Flow<T>) -> Option<Self> {
        if flow.device() != Device::Cpu {
            return None;
        }
        let shape = flow.prior.shape();
        let [2, l, w] = shape[..] else { return None };
        // links on the torus (the Haar prior), every layer built for this lattice
        if l != w || !l.is_multiple_of(4) || flow.prior.period() != Some(TWO_PI) {
            return None;
        }
        let mut layers = Vec::with_capacity(flow.layers().len());
        for layer in flow.layers() {
            let g = layer.as_any().downcast_ref::<GaugeEquivCoupling<T>>()?;
            if g.active_mask().shape() != [2, l, l] {
                return None;
            }
            let (s, t) = g.plaq_coupling.ultralocal_scales_offset()?;
            if s.is_empty() || !s.iter().chain([&t]).all(|v| v.is_finite()) {
                return None;
            }
            layers.push(Layer::new(l, g.mu, g.off, s, t));
        }
        Some(UltralocalU1 { l, layers, f32_force: false, wilson: None })
    }

    /// The identity map on an `l x l` lattice (no layers, `l` a multiple of 4): flow-HMC
    /// with it is plain HMC, through the same batched machinery (`latflow fhmc
    /// --identity`, the baseline at equal implementation).
    pub fn identity(l: usize) -> Self {
        assert!(l > 0 && l.is_multiple_of(4), "UltralocalU1::identity: L = {l} is not a positive multiple of 4");
        UltralocalU1 { l, layers: Vec::new(), f32_force: false, wilson: None }
    }

    /// The f32 force map ([`UltralocalU1::f32_force`]) whose [`LatentMap::pullback`] takes
    /// the action's gradient on the lanes too, as the 2D Wilson action at `beta`: the
    /// configurations stay in the lanes from `z` to the force (no round trip through f64
    /// and the action's per-configuration force). The `cotangent` that `pullback` is given
    /// is then *not called*: the caller vouches that the action is Wilson's at `beta`
    /// (`latflow fhmc` checks it against the action's own force at the start).
    pub fn with_wilson_lanes(self, beta: f64) -> Self {
        let l = self.l;
        let all: Vec<[usize; 4]> = (0..4).flat_map(|off| active_links(l, 0, off)).collect();
        UltralocalU1 { wilson: Some(WilsonLanes { beta, plaquettes: all }), ..self.f32_force() }
    }

    /// The same map whose [`LatentMap::pullback`] runs in f32 on 8-lane vectors (flow-HMC's
    /// force map: any force keeps the chain exact). Its `x` are f32 values, for the force
    /// only, and its `log|det J|` is not computed (NaN): a mixed potential takes `H` from
    /// the exact map.
    pub fn f32_force(mut self) -> Self {
        self.f32_force = true;
        self
    }

    /// Number of layers.
    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// One configuration's pullback in f64: `x`, `log|det J|`, and `grad`.
    fn pullback_one(
        &self,
        z: &[f64],
        x: &mut [f64],
        cotangent: &(dyn Fn(&[f64], &mut [f64]) + Sync),
        grad: &mut [f64],
    ) -> f64 {
        x.copy_from_slice(z);
        let mut logdet = 0.0;
        // per layer and active plaquette: g' - 1 and (log g')'
        let mut tape: Vec<(f64, f64)> = Vec::with_capacity(self.layers.iter().map(|l| l.links.len()).sum());
        for layer in &self.layers {
            for (k, p) in layer.links.iter().enumerate() {
                let plaq = x[p[0]] + x[p[1]] - x[p[2]] - x[p[3]];
                let (d, gp, dlog) = layer.mixture(plaq);
                let (u, sigma) = layer.updated(k);
                x[u] = (x[u] + sigma * d).rem_euclid(TWO_PI);
                logdet += gp.ln();
                tape.push((gp - 1.0, dlog));
            }
        }
        cotangent(x, grad);
        let mut pos = tape.len();
        for layer in self.layers.iter().rev() {
            pos -= layer.links.len();
            for (k, p) in layer.links.iter().enumerate() {
                let (gpm1, dlog) = tape[pos + k];
                let (u, sigma) = layer.updated(k);
                let c = sigma * grad[u] * gpm1 - dlog;
                grad[p[0]] += c;
                grad[p[1]] += c;
                grad[p[2]] -= c;
                grad[p[3]] -= c;
            }
        }
        logdet
    }

    /// A batch's pullback in f32, 8 configurations per vector: the links of a group of
    /// 8 configurations are stored link by link with the configurations in the lanes, so
    /// every plaquette, shift and adjoint update is one vector operation. Group by group:
    /// the forward pass, the action's gradient at its `x` (the `cotangent` on the group's
    /// configurations, or [`WilsonLanes`] on the lanes), the reverse sweep.
    fn pullback_f32(
        &self,
        z: &[f64],
        x: &mut [f64],
        logdet: &mut [f64],
        cotangent: &(dyn Fn(&[f64], &mut [f64]) + Sync),
        grad: &mut [f64],
    ) {
        let n = logdet.len();
        let d = self.dof();
        // the force map's log|det J| is never used (H comes from the exact map): not computed
        logdet.fill(f64::NAN);
        // per layer and active plaquette: g' - 1 and (log g')'
        let mut tape: Vec<[f32x8; 2]> = Vec::with_capacity(self.layers.iter().map(|l| l.links.len()).sum());
        let (mut xs, mut gs) = (vec![f32x8::ZERO; d], vec![f32x8::ZERO; d]);
        for g in 0..n.div_ceil(8) {
            let chains = 8 * g..(8 * g + 8).min(n);
            let range = chains.start * d..chains.end * d;
            load_lanes(z, d, chains.clone(), &mut xs);
            tape.clear();
            for layer in &self.layers {
                let (u_of, sigma) = layer.updated_slot();
                for p in &layer.links {
                    let plaq = xs[p[0]] + xs[p[1]] - xs[p[2]] - xs[p[3]];
                    let (shift, gpm1, dlog) = layer.lanes32.values(plaq);
                    xs[p[u_of]] = wrap8(sigma.mul_add(shift, xs[p[u_of]]));
                    tape.push([gpm1, dlog]);
                }
            }
            store_lanes(&xs, d, chains.clone(), x);
            match &self.wilson {
                Some(w) => w.gradient(&xs, &mut gs),
                None => {
                    cotangent(&x[range.clone()], &mut grad[range]);
                    load_lanes(grad, d, chains.clone(), &mut gs);
                }
            }
            let mut pos = tape.len();
            for layer in self.layers.iter().rev() {
                pos -= layer.links.len();
                let (u_of, sigma) = layer.updated_slot();
                for (p, &[gpm1, dlog]) in layer.links.iter().zip(&tape[pos..pos + layer.links.len()]) {
                    let v = (sigma * gs[p[u_of]]).mul_sub(gpm1, dlog);
                    gs[p[0]] += v;
                    gs[p[1]] += v;
                    gs[p[2]] -= v;
                    gs[p[3]] -= v;
                }
            }
            store_lanes(&gs, d, chains, grad);
        }
    }

    /// [`LatentMap::forward`] of a batch, 4 configurations per `f64x4`.
    fn forward_f64x4(&self, z: &[f64], x: &mut [f64], logdet: &mut [f64]) {
        let (n, d) = (logdet.len(), self.dof());
        let mut xs = vec![f64x4::ZERO; d];
        for g in 0..n.div_ceil(4) {
            let chains = 4 * g..(4 * g + 4).min(n);
            for (i, v) in xs.iter_mut().enumerate() {
                let mut lane = [0.0; 4];
                for c in chains.clone() {
                    lane[c - 4 * g] = z[c * d + i];
                }
                *v = f64x4::from(lane);
            }
            let mut ld = f64x4::ZERO;
            for layer in &self.layers {
                let (u_of, sigma) = if layer.mu == 0 { (0, f64x4::ONE) } else { (3, -f64x4::ONE) };
                for p in &layer.links {
                    let plaq = xs[p[0]] + xs[p[1]] - xs[p[2]] - xs[p[3]];
                    let (shift, lg) = layer.lanes64.shift_log_derivative(plaq);
                    xs[p[u_of]] = wrap4(sigma.mul_add(shift, xs[p[u_of]]));
                    ld += lg;
                }
            }
            for (i, v) in xs.iter().enumerate() {
                let a = v.to_array();
                for c in chains.clone() {
                    x[c * d + i] = a[c - 4 * g];
                }
            }
            let ld = ld.to_array();
            for c in chains {
                logdet[c] = ld[c - 4 * g];
            }
        }
    }

    /// Configurations per rayon task.
    fn chunk(&self, n: usize) -> usize {
        n.div_ceil(rayon::current_num_threads().max(1) * 2).max(1)
    }
}

/// A layer's mixture on 8 f32 lanes (8 configurations), for the force.
#[derive(Clone, Debug, PartialEq)]
struct LaneMixture {
    /// `(e^s, e^-s, e^s - 1, e^s - e^-s)` per component.
    comps: Vec<[f32x8; 4]>,
    inv_m: f32x8,
    t: f32x8,
}

impl LaneMixture {
    fn new(es: &[f64], t: f64) -> Self {
        let comps = es
            .iter()
            .map(|&e| {
                let (e32, ei) = (e as f32, (1.0 / e) as f32);
                [f32x8::splat(e32), f32x8::splat(ei), f32x8::splat(e32 - 1.0), f32x8::splat(e32 - ei)]
            })
            .collect();
        LaneMixture { comps, inv_m: f32x8::splat(1.0 / es.len() as f32), t: f32x8::splat(t as f32) }
    }

    /// For plaquettes `x`: the link shift `d = g(x) + t - x`, `g' - 1` and `(log g')'`
    /// (the f32 twin of [`Layer::mixture`]; `log g'` itself the force does not need).
    #[inline(always)]
    fn values(&self, x: f32x8) -> (f32x8, f32x8, f32x8) {
        let (sn, cs) = (x * f32x8::splat(0.5)).sin_cos();
        let (c2, s2, sc) = (cs * cs, sn * sn, sn * cs);
        let (mut h, mut hp, mut hpp) = (f32x8::ZERO, f32x8::ZERO, f32x8::ZERO);
        for &[e, ei, em1, ediff] in &self.comps {
            h += (em1 * sc / e.mul_add(s2, c2)).atan();
            let d1 = f32x8::ONE / e.mul_add(s2, c2 * ei);
            hp += d1;
            hpp -= d1 * d1 * ediff * sc;
        }
        let gp = hp * self.inv_m;
        ((h + h).mul_add(self.inv_m, self.t), gp - f32x8::ONE, hpp / hp)
    }
}

/// A layer's mixture on 4 f64 lanes, for `H` ([`UltralocalU1`]'s forward pass).
#[derive(Clone, Debug, PartialEq)]
struct LaneMixture64 {
    /// `(e^s, e^-s, e^s - 1)` per component.
    comps: Vec<[f64x4; 3]>,
    inv_m: f64x4,
    t: f64x4,
}

impl LaneMixture64 {
    fn new(es: &[f64], t: f64) -> Self {
        let comps = es.iter().map(|&e| [f64x4::splat(e), f64x4::splat(1.0 / e), f64x4::splat(e - 1.0)]).collect();
        LaneMixture64 { comps, inv_m: f64x4::splat(1.0 / es.len() as f64), t: f64x4::splat(t) }
    }

    /// The link shift `d = g(x) + t - x` and `log g'(x)` ([`Layer::mixture`] on 4 lanes).
    #[inline(always)]
    fn shift_log_derivative(&self, x: f64x4) -> (f64x4, f64x4) {
        let (sn, cs) = (x * f64x4::splat(0.5)).sin_cos();
        let (c2, s2, sc) = (cs * cs, sn * sn, sn * cs);
        let (mut h, mut hp) = (f64x4::ZERO, f64x4::ZERO);
        for &[e, ei, em1] in &self.comps {
            h += (em1 * sc / e.mul_add(s2, c2)).atan();
            hp += f64x4::ONE / e.mul_add(s2, c2 * ei);
        }
        ((h + h).mul_add(self.inv_m, self.t), (hp * self.inv_m).ln())
    }
}

/// [`wrap8`] in f64.
#[inline(always)]
fn wrap4(v: f64x4) -> f64x4 {
    v - f64x4::splat(TWO_PI) * (v * f64x4::splat(1.0 / TWO_PI)).floor()
}

/// `v` wrapped into `[0, 2 pi)` (up to rounding: `2 pi` itself may come out, which the
/// periodic action and the next layer's `sin_cos` do not mind): the force map's cheap
/// `rem_euclid`.
#[inline(always)]
fn wrap8(v: f32x8) -> f32x8 {
    const TWO_PI_F32: f32 = TWO_PI as f32;
    v - f32x8::splat(TWO_PI_F32) * (v * f32x8::splat(1.0 / TWO_PI_F32)).floor()
}

/// `lanes[i]` = link `i` of the configurations `chains` of `src` (row-major, `d` per
/// configuration) in f32, one per lane (unused lanes 0).
pub(super) fn load_lanes(src: &[f64], d: usize, chains: std::ops::Range<usize>, lanes: &mut [f32x8]) {
    for (i, l) in lanes.iter_mut().enumerate() {
        let mut lane = [0.0f32; 8];
        for c in chains.clone() {
            lane[c - chains.start] = src[c * d + i] as f32;
        }
        *l = f32x8::from(lane);
    }
}

/// The inverse of [`load_lanes`]: the configurations `chains` of `dst` from the lanes.
pub(super) fn store_lanes(lanes: &[f32x8], d: usize, chains: std::ops::Range<usize>, dst: &mut [f64]) {
    for (i, l) in lanes.iter().enumerate() {
        let a = l.to_array();
        for c in chains.clone() {
            dst[c * d + i] = a[c - chains.start] as f64;
        }
    }
}

/// The link indices `[theta_0(n), theta_1(n + e0), theta_0(n + e1), theta_1(n)]` of the
/// active plaquettes of the coupling `(mu, off)` on an `l x l` lattice: `n = (x, y)` with
/// `y = off (mod 4)` for `mu = 0`, `x = off (mod 4)` for `mu = 1` (the stripes of
/// [`super::masks::single_stripes`]).
fn active_links(l: usize, mu: usize, off: usize) -> Vec<[usize; 4]> {
    let hw = l * l;
    let mut out = Vec::with_capacity(hw / 4);
    for x in 0..l {
        for y in 0..l {
            let c = if mu == 0 { y } else { x };
            if !((c + l - off % l) % l).is_multiple_of(4) {
                continue;
            }
            let n = x * l + y;
            let n_x = ((x + 1) % l) * l + y;
            let n_y = x * l + (y + 1) % l;
            out.push([n, hw + n_x, n_y, hw + n]);
        }
    }
    out
}

impl LatentMap for UltralocalU1 {
    fn dof(&self) -> usize {
        2 * self.l * self.l
    }

    /// In f64 on 4-lane vectors, 4 configurations at a time (each lane's arithmetic is its
    /// own: a configuration's `x` does not depend on its neighbours in the batch).
    fn forward(&self, z: &[f64], x: &mut [f64], logdet: &mut [f64]) {
        let d = self.dof();
        let chunk = self.chunk(logdet.len()).next_multiple_of(4);
        x.par_chunks_mut(d * chunk)
            .zip(z.par_chunks(d * chunk))
            .zip(logdet.par_chunks_mut(chunk))
            .for_each(|((xs, zs), ls)| self.forward_f64x4(zs, xs, ls));
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
        // whole vectors per task: 8 configurations for the f32 force
        let chunk =
            if self.f32_force { self.chunk(logdet.len()).next_multiple_of(8) } else { self.chunk(logdet.len()) };
        x.par_chunks_mut(d * chunk)
            .zip(z.par_chunks(d * chunk))
            .zip(logdet.par_chunks_mut(chunk))
            .zip(grad.par_chunks_mut(d * chunk))
            .for_each(|(((xs, zs), ls), gs)| {
                if self.f32_force {
                    self.pullback_f32(zs, xs, ls, cotangent, gs);
                } else {
                    for (((xc, zc), l), gc) in
                        xs.chunks_mut(d).zip(zs.chunks(d)).zip(ls.iter_mut()).zip(gs.chunks_mut(d))
                    {
                        *l = self.pullback_one(zc, xc, cotangent, gc);
                    }
                }
            });
    }

    /// Layer by layer from the last: each active plaquette `P'` came from
    /// `P = g^{-1}(P' - t)` ([`mixture_inverse`], Newton to 1e-12), and its link moves back
    /// by `sigma (P' - P)`.
    fn reverse(&self, x: &[f64], z: &mut [f64]) {
        let d = self.dof();
        z.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(|(zc, xc)| {
            zc.copy_from_slice(xc);
            for layer in self.layers.iter().rev() {
                for (k, p) in layer.links.iter().enumerate() {
                    let after = zc[p[0]] + zc[p[1]] - zc[p[2]] - zc[p[3]];
                    let before = mixture_inverse(after - layer.t, layer.circle.scales()).x;
                    // the link moved by sigma (g(P) + t - P) modulo 2 pi: any lift does
                    let moved = (after - before).rem_euclid(TWO_PI);
                    let (u, sigma) = layer.updated(k);
                    zc[u] = (zc[u] - sigma * moved).rem_euclid(TWO_PI);
                }
            }
        });
    }

    fn period(&self) -> Option<f64> {
        Some(TWO_PI)
    }
}
