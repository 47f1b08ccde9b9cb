//! CPU kernels of the fused non-compact-projection (NCP) mixture of the U(1) flows
//! (arXiv:2101.08176 section V.B; Rezende et al. arXiv:2002.02428). Shapes: `x (N, S)`
//! plaquette angles at `S` sites, `s (N, n, S)` the `n` mixture scales, `t (N, S)` the
//! offset. With `h = x/2`, `e_i = e^{s_i}`:
//!
//! `y = ((1/n) sum_i mod(2 atan(e_i tan h), 2 pi) + t) mod 2 pi`,
//! `log J = sum_sites [logsumexp_i(-log(e_i^{-1} cos^2 h + e_i sin^2 h)) - ln n]`.
//!
//! The forward value is computed in the order of the elementwise ops it replaces, with the
//! same slice functions (SIMD for f32), so it is bit for bit theirs. Derivatives, in the
//! forms that stay finite at `h = pi/2` (multiply `1 + tan^2` through by `cos^2`), with
//! `D_i = e_i^{-1} cos^2 h + e_i sin^2 h`, `c = cos h`, `r = sin h`:
//! `dy/dx = (1/n) sum_i e_i / (c^2 + e_i^2 r^2)`, `dy/ds_i = (1/n) 2 e_i r c / (c^2 + e_i^2 r^2)`,
//! `dy/dt = 1`; with `q_i = -log D_i` and `w = softmax(q)`:
//! `dlogJ/dx = sum_i w_i (e_i^{-1} - e_i) r c / D_i`, `dlogJ/ds_i = w_i (e_i^{-1} c^2 - e_i r^2) / D_i`.

use crate::Float;

fn two_pi<T: Float>() -> T {
    T::from_f64(2.0 * std::f64::consts::PI)
}

/// `y (N, S)` of the mixture for `batch = N` samples and `n` components.
pub fn mixture<T: Float>(x: &[T], s: &[T], t: &[T], n: usize, batch: usize, y: &mut [T]) {
    let sites = x.len() / batch.max(1);
    // the elementwise ops' order: half = 0.5 x; tan; e = exp(s); a = e * tan; atan; 2 *; mod
    let half: Vec<T> = x.iter().map(|&v| T::from_f64(0.5) * v).collect();
    let mut tn = vec![T::ZERO; half.len()];
    T::tan_slice(&half, &mut tn);
    let mut e = vec![T::ZERO; s.len()];
    T::exp_slice(s, &mut e);
    for b in 0..batch {
        for i in 0..n {
            let r = (b * n + i) * sites;
            for p in 0..sites {
                e[r + p] *= tn[b * sites + p];
            }
        }
    }
    let mut at = vec![T::ZERO; s.len()];
    T::atan_slice(&e, &mut at);
    let (two, tp, inv_n) = (T::from_f64(2.0), two_pi::<T>(), T::from_f64(1.0 / n as f64));
    for b in 0..batch {
        for p in 0..sites {
            let mut acc = T::ZERO;
            for i in 0..n {
                acc += (two * at[(b * n + i) * sites + p]).rem_euclid(tp);
            }
            y[b * sites + p] = (inv_n * acc + t[b * sites + p]).rem_euclid(tp);
        }
    }
}

/// Gradients of [`mixture`] from `g (N, S)`: `dx (N, S)` and `ds (N, n, S)` (`dy/dt = 1`).
pub fn mixture_grad<T: Float>(x: &[T], s: &[T], n: usize, batch: usize, g: &[T], dx: &mut [T], ds: &mut [T]) {
    let sites = x.len() / batch.max(1);
    let (two, inv_n) = (T::from_f64(2.0), T::from_f64(1.0 / n as f64));
    for b in 0..batch {
        for p in 0..sites {
            let h = T::from_f64(0.5) * x[b * sites + p];
            let (c, r) = (h.cos(), h.sin());
            let gv = g[b * sites + p];
            let mut d = T::ZERO;
            for i in 0..n {
                let k = (b * n + i) * sites + p;
                let e = s[k].exp();
                let den = c * c + e * e * r * r;
                d += e / den;
                ds[k] = gv * inv_n * two * e * r * c / den;
            }
            dx[b * sites + p] = gv * inv_n * d;
        }
    }
}

/// `q_i = -log(e_i^{-1} c^2 + e_i r^2)` of the `n` components at one site into `q`, and
/// `(c, r)`; `s_at(i)` is `s_i` there.
fn components<T: Float>(xv: T, s_at: impl Fn(usize) -> T, q: &mut [T]) -> (T, T) {
    let h = T::from_f64(0.5) * xv;
    let (c, r) = (h.cos(), h.sin());
    for (i, qi) in q.iter_mut().enumerate() {
        let s = s_at(i);
        *qi = -((-s).exp() * c * c + s.exp() * r * r).ln();
    }
    (c, r)
}

/// `max + ln sum exp(q - max)`.
fn logsumexp<T: Float>(q: &[T]) -> T {
    let m = q.iter().copied().fold(T::from_f64(f64::NEG_INFINITY), T::max);
    if !m.is_finite() {
        return m;
    }
    m + q.iter().map(|&v| (v - m).exp()).sum::<T>().ln()
}

/// `log J (N,)` of the mixture: per sample, the sum over sites of
/// `logsumexp_i q_i - ln n`.
pub fn log_jacobian<T: Float>(x: &[T], s: &[T], n: usize, batch: usize, out: &mut [T]) {
    let sites = x.len() / batch.max(1);
    let ln_n = T::from_f64((n as f64).ln());
    let mut q = vec![T::ZERO; n];
    for (b, o) in out.iter_mut().enumerate().take(batch) {
        let mut acc = T::ZERO;
        for p in 0..sites {
            components(x[b * sites + p], |i| s[(b * n + i) * sites + p], &mut q);
            acc += logsumexp(&q) - ln_n;
        }
        *o = acc;
    }
}

/// Gradients of [`log_jacobian`] from `g (N,)`: `dx (N, S)`, `ds (N, n, S)`.
pub fn log_jacobian_grad<T: Float>(x: &[T], s: &[T], n: usize, batch: usize, g: &[T], dx: &mut [T], ds: &mut [T]) {
    let sites = x.len() / batch.max(1);
    let mut q = vec![T::ZERO; n];
    for b in 0..batch {
        for p in 0..sites {
            let (c, r) = components(x[b * sites + p], |i| s[(b * n + i) * sites + p], &mut q);
            let l = logsumexp(&q);
            let mut d = T::ZERO;
            for i in 0..n {
                let k = (b * n + i) * sites + p;
                let (e, ei) = (s[k].exp(), (-s[k]).exp());
                let den = ei * c * c + e * r * r;
                let w = (q[i] - l).exp();
                d += w * (ei - e) * r * c / den;
                ds[k] = g[b] * w * (ei * c * c - e * r * r) / den;
            }
            dx[b * sites + p] = g[b] * d;
        }
    }
}
