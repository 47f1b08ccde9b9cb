//! Non-compact projection (NCP) mixtures on the circle and the plaquette coupling built
//! from them (Rezende et al. arXiv:2002.02428; arXiv:2101.08176 section V.B, the
//! tutorial's `NCPPlaqCoupling`).
//!
//! One component, for a scale `s`:
//! `h_s(x) = 2 atan(e^s tan(x/2)) mod 2 pi`, a diffeomorphism of the circle fixing 0 and
//! pi, with `h_s'(x) = 1 / (e^{-s} cos^2(x/2) + e^s sin^2(x/2))`.
//! The mixture of `n` components is `g(x) = (1/n) sum_i h_{s_i}(x)`, with
//! `log g'(x) = logsumexp_i(-ln(e^{-s_i} cos^2(x/2) + e^{s_i} sin^2(x/2))) - ln n`.
//!
//! The coupling transforms the active plaquettes `x -> g(x) + t mod 2 pi`, where the
//! scales `s_i` and the offset `t` come from a conv net that sees `(cos, sin)` of the
//! frozen plaquettes; passive and frozen plaquettes pass unchanged.
//!
//! The forward pass runs on the tape with the tutorial's numerics (`tan`, `atan`, then
//! `mod 2 pi`), so its values match PyTorch's. The reverse pass inverts `g` numerically
//! with a safeguarded Newton iteration on a smooth lift of `g` (see [`mixture_inverse`]);
//! it records nothing.

use super::masks::{gather_stripe, scatter_stripe, PlaqMasks};
use crate::net::{Activation, ConvNet, ConvNetConfig};
use crate::ops::LatticeOps;
use latflow_tensor::{Float, Tensor, Var};
use rand::Rng;
use std::f64::consts::PI;

/// Convergence threshold of [`mixture_inverse`] on the Newton step `|dx|` (radians).
/// Newton converges quadratically, so the returned root is far closer than this:
/// in the tests `|g(x) - z|` is at the f64 rounding floor (~1e-15).
pub const NCP_INVERSE_XTOL: f64 = 1e-12;

/// Iteration cap of [`mixture_inverse`]. Bisection alone would reach
/// [`NCP_INVERSE_XTOL`] on an interval of length pi within 42 halvings, and every
/// Newton step that leaves the bracket is replaced by one, so the cap is never hit.
pub const NCP_INVERSE_MAX_ITERS: u32 = 100;

/// One mixture component lifted to a smooth function on the real line:
/// `x + 2 atan2((e^s - 1) sin(x/2) cos(x/2), cos^2(x/2) + e^s sin^2(x/2))`, which equals
/// `h_s(x)` on `[0, 2 pi)` and has no pole at `x = pi` (the difference `h_s(x) - x` is
/// `2 (atan(e^s tan(x/2)) - x/2)`, combined with the atan subtraction formula; the
/// denominator is positive). Returns the value and the derivative
/// `1 / (e^{-s} cos^2(x/2) + e^s sin^2(x/2))`.
#[inline]
fn component_lifted(x: f64, s: f64) -> (f64, f64) {
    let (sn, cs) = (0.5 * x).sin_cos();
    let es = s.exp();
    let (c2, s2) = (cs * cs, sn * sn);
    let den = c2 + es * s2;
    let value = x + 2.0 * ((es - 1.0) * sn * cs).atan2(den);
    let deriv = 1.0 / ((-s).exp() * c2 + es * s2);
    (value, deriv)
}

/// `g(x) = (1/n) sum_i 2 atan(e^{s_i} tan(x/2)) mod 2 pi` with the tutorial's numerics
/// (the value the tape computes in f64).
///
/// ```
/// use latflow_flow::u1::ncp::mixture;
/// assert_eq!(mixture(0.0, &[0.3, -1.0]), 0.0);
/// assert!((mixture(1.0, &[0.0, 0.0]) - 1.0).abs() < 1e-15); // s = 0 is the identity
/// ```
///
/// # Panics
/// If `s` is empty.
pub fn mixture(x: f64, s: &[f64]) -> f64 {
    assert!(!s.is_empty(), "mixture: need at least one component");
    let t = (0.5 * x).tan();
    s.iter().map(|&si| (2.0 * (si.exp() * t).atan()).rem_euclid(2.0 * PI)).sum::<f64>() / s.len() as f64
}

/// `log g'(x) = logsumexp_i(-ln(e^{-s_i} cos^2(x/2) + e^{s_i} sin^2(x/2))) - ln n`.
///
/// # Panics
/// If `s` is empty.
pub fn mixture_log_jacobian(x: f64, s: &[f64]) -> f64 {
    assert!(!s.is_empty(), "mixture_log_jacobian: need at least one component");
    let (sn, cs) = (0.5 * x).sin_cos();
    let (c2, s2) = (cs * cs, sn * sn);
    let terms = s.iter().map(|&si| -((-si).exp() * c2 + si.exp() * s2).ln());
    let m = terms.clone().fold(f64::NEG_INFINITY, f64::max);
    m + terms.map(|v| (v - m).exp()).sum::<f64>().ln() - (s.len() as f64).ln()
}

/// A root of the mixture: `x` in `[0, 2 pi)` with `g(x) = z`, and the iterations used.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MixtureRoot {
    /// The preimage `g^{-1}(z)`.
    pub x: f64,
    /// Newton (or bisection) iterations taken.
    pub iterations: u32,
}

/// `g^{-1}(z)` for `z` in `[0, 2 pi)` (other values are wrapped first).
///
/// Method: safeguarded Newton on the smooth lift of `g` (each component as in
/// `h_s(x) = x + 2 atan2((e^s - 1) sin(x/2) cos(x/2), cos^2(x/2) + e^s sin^2(x/2))`),
/// which is strictly increasing with `g(0) = 0`, `g(pi) = pi`, `g(2 pi) = 2 pi`. The root
/// is bracketed in `[0, pi]` or `[pi, 2 pi]`; the start is the exact inverse of the
/// single component with the mean scale, `h_{-mean s}(z)`; a Newton step that leaves
/// the bracket is replaced by bisection; iteration stops when the step is below
/// [`NCP_INVERSE_XTOL`] (typically 3-5 iterations, against ~20 for the tutorial's
/// bisection to 1e-6). For one component the start is already the root.
///
/// ```
/// use latflow_flow::u1::ncp::{mixture, mixture_inverse};
/// let s = [1.5, -0.7];
/// let r = mixture_inverse(2.0, &s);
/// assert!((mixture(r.x, &s) - 2.0).abs() < 1e-13);
/// ```
///
/// # Panics
/// If `s` is empty or `z` is not finite.
pub fn mixture_inverse(z: f64, s: &[f64]) -> MixtureRoot {
    assert!(!s.is_empty(), "mixture_inverse: need at least one component");
    assert!(z.is_finite(), "mixture_inverse: target {z} is not finite");
    let z = z.rem_euclid(2.0 * PI);
    let n = s.len() as f64;
    let eval = |x: f64| {
        s.iter().fold((0.0, 0.0), |(g, d), &si| {
            let (v, dv) = component_lifted(x, si);
            (g + v / n, d + dv / n)
        })
    };
    let (mut lo, mut hi) = if z < PI { (0.0, PI) } else { (PI, 2.0 * PI) };
    let s_mean = s.iter().sum::<f64>() / n;
    let mut x = component_lifted(z, -s_mean).0.clamp(lo, hi);
    for it in 1..=NCP_INVERSE_MAX_ITERS {
        let (g, dg) = eval(x);
        let r = g - z;
        if r == 0.0 {
            return MixtureRoot { x, iterations: it };
        }
        if r > 0.0 {
            hi = x;
        } else {
            lo = x;
        }
        let newton = x - r / dg;
        if (newton - x).abs() <= NCP_INVERSE_XTOL {
            // Converged: the error after this step is O(step^2).
            return MixtureRoot { x: newton.clamp(lo, hi).rem_euclid(2.0 * PI), iterations: it };
        }
        x = if newton > lo && newton < hi { newton } else { 0.5 * (lo + hi) };
        if hi - lo <= NCP_INVERSE_XTOL {
            return MixtureRoot { x: x.rem_euclid(2.0 * PI), iterations: it };
        }
    }
    MixtureRoot { x, iterations: NCP_INVERSE_MAX_ITERS }
}

/// The NCP plaquette coupling: the conv net and the plaquette masks of one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct NcpPlaqCoupling<T: Float> {
    /// The conv net `(N, 2, H, W) -> (N, n_mix + 1, H, W)`: channels `0..n_mix` are the
    /// scales `s_i`, the last one is the offset `t`.
    pub net: ConvNet<T>,
    /// Number of mixture components.
    pub n_mix: usize,
    /// Direction of the stripes (0 or 1).
    pub mu: usize,
    /// Stripe offset (0..4).
    pub off: usize,
    frozen: Tensor<T>,
    active: Tensor<T>,
    passive: Tensor<T>,
}

impl<T: Float> NcpPlaqCoupling<T> {
    /// A coupling on an `h x w` lattice for direction `mu` and offset `off` (masks of
    /// [`PlaqMasks::new`]), with the tutorial's net: `2 -> hidden -> n_mix + 1` channels,
    /// LeakyReLU, no final tanh, PyTorch init.
    ///
    /// # Panics
    /// If `mu > 1`, `off > 3`, `n_mix == 0`, `h` or `w` is not a multiple of 4, or the
    /// net's sizes are invalid.
    #[track_caller]
    pub fn new<R: Rng + ?Sized>(
        h: usize,
        w: usize,
        mu: usize,
        off: usize,
        n_mix: usize,
        hidden: &[usize],
        kernel: usize,
        rng: &mut R,
    ) -> Self {
        assert!(n_mix > 0, "NcpPlaqCoupling: need at least one mixture component");
        assert!(mu < 2 && off < 4, "NcpPlaqCoupling: mu = {mu} must be 0 or 1 and off = {off} in 0..4");
        assert!(
            h.is_multiple_of(4) && w.is_multiple_of(4),
            "NcpPlaqCoupling: the {h}x{w} lattice must have extents divisible by 4"
        );
        let config = ConvNetConfig {
            in_channels: 2,
            hidden: hidden.to_vec(),
            out_channels: n_mix + 1,
            kernel,
            final_tanh: false,
            activation: Activation::TUTORIAL,
        };
        let net = ConvNet::new(config, rng);
        let m = PlaqMasks::new(h, w, mu, off);
        NcpPlaqCoupling { net, n_mix, mu, off, frozen: m.frozen, active: m.active, passive: m.passive }
    }

    /// The coupling with `activation` between its net's convolutions (the weights
    /// unchanged).
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.net.config.activation = activation;
        self
    }

    /// The masks, mutable (to move them between devices).
    pub(crate) fn masks_mut(&mut self) -> [&mut Tensor<T>; 3] {
        [&mut self.frozen, &mut self.active, &mut self.passive]
    }

    /// For a net of kernel-1 convolutions (an ultralocal coupling): the scales `s_i` and
    /// the offset `t` that every active plaquette gets, whatever the configuration. The
    /// net sees at an active site only that site's frozen-masked input, `(cos 0, sin 0)`
    /// everywhere, so one evaluation on the zero field gives them. `None` for wider
    /// kernels, whose outputs depend on the neighbours.
    pub fn ultralocal_scales_offset(&self) -> Option<(Vec<f64>, f64)> {
        if self.net.config.kernel != 1 {
            return None;
        }
        let (h, w) = (self.active.shape()[0], self.active.shape()[1]);
        let params: Vec<Var<T>> = self.net.params().into_iter().map(|t| Var::constant(t.clone())).collect();
        let out = self.net_out(&Var::constant(Tensor::zeros(&[1, h, w])), &params);
        let out = out.value().to_host_vec();
        let j = self.active.to_host_vec().iter().position(|&m| m == T::ONE)?;
        let hw = h * w;
        let s = (0..self.n_mix).map(|i| out[i * hw + j].to_f64()).collect();
        Some((s, out[self.n_mix * hw + j].to_f64()))
    }

    /// The masks `(frozen, active, passive)`, shape `(H, W)` each.
    pub fn masks(&self) -> (&Tensor<T>, &Tensor<T>, &Tensor<T>) {
        (&self.frozen, &self.active, &self.passive)
    }

    /// The net's output `(N, n_mix + 1, H, W)` on `(cos, sin)` of the frozen plaquettes
    /// (the tutorial feeds `cos`/`sin` of `frozen * x`, i.e. `(1, 0)` on the other sites).
    fn net_out(&self, x: &Var<T>, p: &[Var<T>]) -> Var<T> {
        let xf = x.mul_const(&self.frozen);
        self.net.forward(&xf.cos_sin(), p)
    }

    /// Scales `s (N, n_mix, H, W)` and offset `t (N, H, W)`.
    fn scales_offset(&self, x: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>) {
        let out = self.net_out(x, p);
        (out.narrow(1, 0, self.n_mix), out.select(1, self.n_mix))
    }

    /// The NCP transform on gathered active plaquettes: `x (N, A, B)`, `s (N, n_mix, A, B)`,
    /// `t (N, A, B)` to `((g(x) + t) mod 2 pi, sum log g'(x) (N,))`, with the tutorial's
    /// numerics: `g` is the mean of `mod(2 atan(e^s tan(x/2)), 2 pi)`, `log g'` the
    /// logsumexp of `-log(e^{-s} cos^2(x/2) + e^s sin^2(x/2))` less `ln n_mix`.
    ///
    /// Each is one fused op ([`LatticeOps::ncp_mixture`], [`LatticeOps::ncp_log_jacobian`]): two kernels
    /// forward instead of about 35 elementwise passes; the values are those of the
    /// elementwise formulation that [`NcpPlaqCoupling::forward_masked`] keeps.
    fn transform(&self, x: &Var<T>, s: &Var<T>, t: &Var<T>) -> (Var<T>, Var<T>) {
        (x.ncp_mixture(s, t), x.ncp_log_jacobian(s))
    }

    /// The forward pass on the active plaquettes only: `(x_a, f(x)_a, log|det J|)` with
    /// `x_a`, `f(x)_a` the [`gather_stripe`] sites of `x (N, H, W)` before and after.
    /// The values are bit for bit those of the tutorial's masked formulation
    /// ([`NcpPlaqCoupling::forward_masked`]), at a quarter of the transcendental work.
    ///
    /// # Panics
    /// If `x` is not `(N, H, W)` for this coupling's masks.
    #[track_caller]
    pub fn forward_active(&self, x: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>, Var<T>) {
        let out = gather_stripe(&self.net_out(x, p), self.mu, self.off);
        let (s, t) = (out.narrow(1, 0, self.n_mix), out.select(1, self.n_mix));
        let xa = gather_stripe(x, self.mu, self.off);
        let (ya, logj) = self.transform(&xa, &s, &t);
        (xa, ya, logj)
    }

    /// `x (N, H, W) -> (f(x), log|det J| (N,))`: active plaquettes
    /// `x -> (g(x) + t) mod 2 pi`, the others unchanged; the log-Jacobian sums
    /// `log g'` over the active plaquettes.
    ///
    /// # Panics
    /// If `x` is not `(N, H, W)` for this coupling's masks.
    #[track_caller]
    pub fn forward(&self, x: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>) {
        let (_, ya, logj) = self.forward_active(x, p);
        (scatter_stripe(x, &ya, self.mu, self.off), logj)
    }

    /// The tutorial's `NCPPlaqCoupling.forward` op for op (masks multiply full
    /// lattices): the reference that [`NcpPlaqCoupling::forward`] is tested against.
    #[track_caller]
    pub fn forward_masked(&self, x: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>) {
        let (s, t) = self.scales_offset(x, p);
        let shape = s.shape().to_vec();
        let half = x.mul_const(&self.active).unsqueeze(1).mul_scalar(0.5);
        let es = s.exp();
        let mix = es.mul(&half.tan().broadcast_to(&shape)).atan().mul_scalar(2.0).rem_euclid(2.0 * PI).mean_axes(&[1]);
        let c2 = half.cos().square().broadcast_to(&shape);
        let s2 = half.sin().square().broadcast_to(&shape);
        let lj = s.neg().exp().mul(&c2).add(&es.mul(&s2)).log().neg();
        let logj = lj.logsumexp(1).add_scalar(-(self.n_mix as f64).ln()).mul_const(&self.active).sum_axes(&[1, 2]);
        let fx1 = mix.mul_const(&self.active);
        let y = fx1
            .add(&t)
            .rem_euclid(2.0 * PI)
            .mul_const(&self.active)
            .add(&x.mul_const(&self.passive))
            .add(&x.mul_const(&self.frozen));
        (y, logj)
    }

    /// `y (N, H, W) -> (f^{-1}(y), log|det J_f| at f^{-1}(y) (N,))`, no gradients: the
    /// frozen plaquettes give the same `(s, t)` as in the forward pass; each active
    /// plaquette is solved from `g(x) = (y - t) mod 2 pi` by [`mixture_inverse`] (in f64),
    /// giving `x` in `[0, 2 pi)`. Returns constants.
    ///
    /// # Panics
    /// If `y` is not `(N, H, W)` for this coupling's masks.
    #[track_caller]
    pub fn reverse(&self, y: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>) {
        self.reverse_with_stats(y, p).0
    }

    /// [`NcpPlaqCoupling::reverse`] plus the largest number of root-finding iterations
    /// any plaquette needed.
    #[track_caller]
    pub fn reverse_with_stats(&self, y: &Var<T>, p: &[Var<T>]) -> ((Var<T>, Var<T>), u32) {
        let (s, t) = self.scales_offset(&y.detach(), p);
        let (n, hw) = (y.shape()[0], self.active.len());
        let (sv, tv, yv) = (s.value().data(), t.value().data(), y.value().data());
        let mut x = yv.to_vec();
        let mut logj = vec![T::ZERO; n];
        let mut max_iters = 0;
        let mut si = vec![0.0; self.n_mix];
        for b in 0..n {
            let mut acc = 0.0;
            for j in (0..hw).filter(|&j| self.active.data()[j] != T::ZERO) {
                let k = b * hw + j;
                for (c, v) in si.iter_mut().enumerate() {
                    *v = sv[(b * self.n_mix + c) * hw + j].to_f64();
                }
                let z = (yv[k].to_f64() - tv[k].to_f64()).rem_euclid(2.0 * PI);
                let root = mixture_inverse(z, &si);
                max_iters = max_iters.max(root.iterations);
                x[k] = T::from_f64(root.x);
                acc += mixture_log_jacobian(root.x, &si);
            }
            logj[b] = T::from_f64(acc);
        }
        let x = Var::constant(Tensor::from_vec(y.shape(), x));
        ((x, Var::constant(Tensor::from_vec(&[n], logj))), max_iters)
    }
}
