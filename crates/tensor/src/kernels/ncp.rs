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

/// `(c, r) = (cos h, sin h)` with `h = x/2`, and `(e^s, e^{-s})`, with the slice functions
/// (SIMD for f32).
fn trig_exp<T: Float>(x: &[T], s: &[T]) -> (Vec<T>, Vec<T>, Vec<T>, Vec<T>) {
    let half: Vec<T> = x.iter().map(|&v| T::from_f64(0.5) * v).collect();
    let (mut c, mut r) = (vec![T::ZERO; x.len()], vec![T::ZERO; x.len()]);
    T::cos_slice(&half, &mut c);
    T::sin_slice(&half, &mut r);
    let neg: Vec<T> = s.iter().map(|&v| -v).collect();
    let (mut e, mut ei) = (vec![T::ZERO; s.len()], vec![T::ZERO; s.len()]);
    T::exp_slice(s, &mut e);
    T::exp_slice(&neg, &mut ei);
    (c, r, e, ei)
}

/// Gradients of [`mixture`] from `g (N, S)`: `dx (N, S)` and `ds (N, n, S)` (`dy/dt = 1`).
pub fn mixture_grad<T: Float>(x: &[T], s: &[T], n: usize, batch: usize, g: &[T], dx: &mut [T], ds: &mut [T]) {
    let sites = x.len() / batch.max(1);
    let (two, inv_n) = (T::from_f64(2.0), T::from_f64(1.0 / n as f64));
    let (c, r, e, _) = trig_exp(x, s);
    for b in 0..batch {
        for p in 0..sites {
            let j = b * sites + p;
            let (cj, rj, gv) = (c[j], r[j], g[j] * inv_n);
            let mut d = T::ZERO;
            for i in 0..n {
                let k = (b * n + i) * sites + p;
                let den = cj * cj + e[k] * e[k] * rj * rj;
                d += e[k] / den;
                ds[k] = gv * two * e[k] * rj * cj / den;
            }
            dx[j] = gv * d;
        }
    }
}

/// `q_i = -log(e_i^{-1} c^2 + e_i r^2)` for every component and site (shape of `s`), the
/// per-site `logsumexp_i q_i` (shape of `x`), and the pieces they came from.
struct LogJParts<T> {
    c: Vec<T>,
    r: Vec<T>,
    e: Vec<T>,
    ei: Vec<T>,
    q: Vec<T>,
    lse: Vec<T>,
}

fn log_j_parts<T: Float>(x: &[T], s: &[T], n: usize, batch: usize) -> LogJParts<T> {
    let sites = x.len() / batch.max(1);
    let (c, r, e, ei) = trig_exp(x, s);
    let mut d = vec![T::ZERO; s.len()];
    for b in 0..batch {
        for i in 0..n {
            for p in 0..sites {
                let (k, j) = ((b * n + i) * sites + p, b * sites + p);
                d[k] = ei[k] * c[j] * c[j] + e[k] * r[j] * r[j];
            }
        }
    }
    let mut q = vec![T::ZERO; s.len()];
    T::ln_slice(&d, &mut q);
    for v in q.iter_mut() {
        *v = -*v;
    }
    // logsumexp over the components at each site: max, then exp and ln on slices
    let mut m = vec![T::from_f64(f64::NEG_INFINITY); x.len()];
    for b in 0..batch {
        for i in 0..n {
            for p in 0..sites {
                let j = b * sites + p;
                m[j] = m[j].max(q[(b * n + i) * sites + p]);
            }
        }
    }
    let mut z = vec![T::ZERO; s.len()];
    for b in 0..batch {
        for i in 0..n {
            for p in 0..sites {
                let k = (b * n + i) * sites + p;
                z[k] = q[k] - m[b * sites + p];
            }
        }
    }
    let mut ez = vec![T::ZERO; s.len()];
    T::exp_slice(&z, &mut ez);
    let mut sum = vec![T::ZERO; x.len()];
    for b in 0..batch {
        for i in 0..n {
            for p in 0..sites {
                sum[b * sites + p] += ez[(b * n + i) * sites + p];
            }
        }
    }
    let mut lse = vec![T::ZERO; x.len()];
    T::ln_slice(&sum, &mut lse);
    for (l, &mj) in lse.iter_mut().zip(&m) {
        *l = if mj.is_finite() { mj + *l } else { mj };
    }
    LogJParts { c, r, e, ei, q, lse }
}

/// `log J (N,)` of the mixture: per sample, the sum over sites of
/// `logsumexp_i q_i - ln n`.
pub fn log_jacobian<T: Float>(x: &[T], s: &[T], n: usize, batch: usize, out: &mut [T]) {
    let sites = x.len() / batch.max(1);
    let ln_n = T::from_f64((n as f64).ln());
    let parts = log_j_parts(x, s, n, batch);
    for (b, o) in out.iter_mut().enumerate().take(batch) {
        *o = parts.lse[b * sites..(b + 1) * sites].iter().map(|&l| l - ln_n).sum();
    }
}

/// Gradients of [`log_jacobian`] from `g (N,)`: `dx (N, S)`, `ds (N, n, S)`.
pub fn log_jacobian_grad<T: Float>(x: &[T], s: &[T], n: usize, batch: usize, g: &[T], dx: &mut [T], ds: &mut [T]) {
    let sites = x.len() / batch.max(1);
    let LogJParts { c, r, e, ei, q, lse } = log_j_parts(x, s, n, batch);
    // softmax weights w_i = exp(q_i - lse)
    let mut z = vec![T::ZERO; s.len()];
    for b in 0..batch {
        for i in 0..n {
            for p in 0..sites {
                let k = (b * n + i) * sites + p;
                z[k] = q[k] - lse[b * sites + p];
            }
        }
    }
    let mut w = vec![T::ZERO; s.len()];
    T::exp_slice(&z, &mut w);
    for b in 0..batch {
        for p in 0..sites {
            let j = b * sites + p;
            let (cj, rj) = (c[j], r[j]);
            let mut d = T::ZERO;
            for i in 0..n {
                let k = (b * n + i) * sites + p;
                let den = ei[k] * cj * cj + e[k] * rj * rj;
                d += w[k] * (ei[k] - e[k]) * rj * cj / den;
                ds[k] = g[b] * w[k] * (ei[k] * cj * cj - e[k] * rj * rj) / den;
            }
            dx[j] = g[b] * d;
        }
    }
}
