//! CPU kernels of the fused non-compact-projection (NCP) mixture of the U(1) flows
//! (arXiv:2101.08176 section V.B; Rezende et al. arXiv:2002.02428). Shapes: `x (N, S)`
//! plaquette angles at `S` sites, `s (N, n, S)` the `n` mixture scales, `t (N, S)` the
//! offset. With `h = x/2`, `e_i = e^{s_i}`:
//!
//! `y = ((1/n) sum_i mod(2 atan(e_i tan h), 2 pi) + t) mod 2 pi`,
//! `log J = sum_sites [logsumexp_i(-log(e_i^{-1} cos^2 h + e_i sin^2 h)) - ln n]`.
//!
//! The forward value `y` is computed in the order of the elementwise ops it replaces, with
//! the same slice functions (SIMD for f32), so it is bit for bit theirs. `log J` uses
//! `logsumexp_i(-log D_i) = log sum_i 1/D_i` (each `1/D_i` lies in `[e^{-|s_i|}, e^{|s_i|}]`,
//! no max shift needed): one `ln` per site instead of the elementwise ops' `ln`, `exp`, `ln`
//! per component (equal to rounding). Derivatives, in the
//! forms that stay finite at `h = pi/2` (multiply `1 + tan^2` through by `cos^2`), with
//! `D_i = e_i^{-1} cos^2 h + e_i sin^2 h`, `c = cos h`, `r = sin h`:
//! `dy/dx = (1/n) sum_i e_i / (c^2 + e_i^2 r^2)`, `dy/ds_i = (1/n) 2 e_i r c / (c^2 + e_i^2 r^2)`,
//! `dy/dt = 1`; with `q_i = -log D_i` and `w = softmax(q)`:
//! `dlogJ/dx = sum_i w_i (e_i^{-1} - e_i) r c / D_i`, `dlogJ/ds_i = w_i (e_i^{-1} c^2 - e_i r^2) / D_i`.

use latflow_tensor::Float;

fn two_pi<T: Float>() -> T {
    T::from_f64(2.0 * std::f64::consts::PI)
}

/// `x / 2` into a pooled buffer.
fn halves<T: Float>(x: &[T]) -> Vec<T> {
    let mut h = latflow_tensor::pool::buffer(x.len());
    for (d, &v) in h.iter_mut().zip(x) {
        *d = T::from_f64(0.5) * v;
    }
    h
}

/// Returns temporaries to the buffer pool ([`latflow_tensor::pool`]).
fn give_back<T: Float, const K: usize>(vs: [Vec<T>; K]) {
    for v in vs {
        latflow_tensor::pool::recycle(v);
    }
}

/// `y (N, S)` of the mixture for `batch = N` samples and `n` components.
pub fn mixture<T: Float>(x: &[T], s: &[T], t: &[T], n: usize, batch: usize, y: &mut [T]) {
    let sites = x.len() / batch.max(1);
    // the elementwise ops' order: half = 0.5 x; tan; e = exp(s); a = e * tan; atan; 2 *; mod
    let half = halves(x);
    let mut tn = latflow_tensor::pool::buffer(half.len());
    T::tan_slice(&half, &mut tn);
    let mut e = latflow_tensor::pool::buffer(s.len());
    T::exp_slice(s, &mut e);
    for (eb, tb) in e.chunks_exact_mut(n * sites).zip(tn.chunks_exact(sites)) {
        for ei in eb.chunks_exact_mut(sites) {
            for (a, &tv) in ei.iter_mut().zip(tb) {
                *a *= tv;
            }
        }
    }
    let mut at = latflow_tensor::pool::buffer(s.len());
    T::atan_slice(&e, &mut at);
    let (two, tp, inv_n) = (T::from_f64(2.0), two_pi::<T>(), T::from_f64(1.0 / n as f64));
    let mut acc = vec![T::ZERO; sites];
    for ((ab, yb), tb) in at.chunks_exact(n * sites).zip(y.chunks_exact_mut(sites)).zip(t.chunks_exact(sites)) {
        // 2 atan lies in (-pi, pi): the selects of Float::wrap_near (vectorize); NaN falls back
        acc.fill(T::ZERO);
        let mut ok = true;
        for ai in ab.chunks_exact(sites) {
            for (a, &v) in acc.iter_mut().zip(ai) {
                let (r, in_range) = (two * v).wrap_near(tp);
                *a += r;
                ok &= in_range;
            }
        }
        if !ok {
            acc.fill(T::ZERO);
            for ai in ab.chunks_exact(sites) {
                for (a, &v) in acc.iter_mut().zip(ai) {
                    *a += (two * v).rem_euclid(tp);
                }
            }
        }
        let mut ok = true;
        for ((yv, &a), &tv) in yb.iter_mut().zip(&acc).zip(tb) {
            let (r, in_range) = (inv_n * a + tv).wrap_near(tp);
            *yv = r;
            ok &= in_range;
        }
        if !ok {
            for ((yv, &a), &tv) in yb.iter_mut().zip(&acc).zip(tb) {
                *yv = (inv_n * a + tv).rem_euclid(tp);
            }
        }
    }
    give_back([half, tn, e, at]);
}

/// Per-site `(c, r) = (cos h, sin h)`, `h = x/2`, and per component `e = e^s` and
/// `e^{-s}` as `1 / e` (the log-Jacobian and the gradients, which are not tied to the
/// elementwise ops' values), with the slice functions (SIMD for f32).
struct TrigExp<T> {
    c: Vec<T>,
    r: Vec<T>,
    e: Vec<T>,
    ei: Vec<T>,
}

fn trig_exp<T: Float>(x: &[T], s: &[T]) -> TrigExp<T> {
    let half = halves(x);
    let (mut c, mut r) = (latflow_tensor::pool::buffer(x.len()), latflow_tensor::pool::buffer(x.len()));
    T::sin_cos_slice(&half, &mut r, &mut c);
    let mut e = latflow_tensor::pool::buffer(s.len());
    T::exp_slice(s, &mut e);
    let mut ei = latflow_tensor::pool::buffer(s.len());
    for (d, &v) in ei.iter_mut().zip(&e) {
        *d = T::ONE / v;
    }
    latflow_tensor::pool::recycle(half);
    TrigExp { c, r, e, ei }
}

/// Gradients of [`mixture`] from `g (N, S)`: `dx (N, S)` and `ds (N, n, S)` (`dy/dt = 1`).
pub fn mixture_grad<T: Float>(x: &[T], s: &[T], n: usize, batch: usize, g: &[T], dx: &mut [T], ds: &mut [T]) {
    let sites = x.len() / batch.max(1);
    let (two, inv_n) = (T::from_f64(2.0), T::from_f64(1.0 / n as f64));
    let TrigExp { c, r, e, ei } = trig_exp(x, s);
    latflow_tensor::pool::recycle(ei);
    for b in 0..batch {
        let j0 = b * sites;
        let (cb, rb, gb) = (&c[j0..j0 + sites], &r[j0..j0 + sites], &g[j0..j0 + sites]);
        let dxb = &mut dx[j0..j0 + sites];
        dxb.fill(T::ZERO);
        for i in 0..n {
            let k0 = (b * n + i) * sites;
            let (eb, dsb) = (&e[k0..k0 + sites], &mut ds[k0..k0 + sites]);
            for (((((d, dsv), &cj), &rj), &ek), &g) in
                dxb.iter_mut().zip(dsb.iter_mut()).zip(cb).zip(rb).zip(eb).zip(gb)
            {
                let gv = g * inv_n;
                let den = cj * cj + ek * ek * rj * rj;
                *d += gv * (ek / den);
                *dsv = gv * two * ek * rj * cj / den;
            }
        }
    }
    give_back([c, r, e]);
}

/// `log J (N,)` of the mixture: per sample, the sum over sites of
/// `logsumexp_i q_i - ln n = ln((1/n) sum_i 1/D_i)` (`q_i = -ln D_i`; `1/D_i` lies in
/// `[e^{-|s_i|}, e^{|s_i|}]`, so the sum needs no max shift).
pub fn log_jacobian<T: Float>(x: &[T], s: &[T], n: usize, batch: usize, out: &mut [T]) {
    let sites = x.len() / batch.max(1);
    let inv_n = T::from_f64(1.0 / n as f64);
    let TrigExp { c, r, e, ei } = trig_exp(x, s);
    let mut m = latflow_tensor::pool::buffer(x.len());
    m.fill(T::ZERO);
    for b in 0..batch {
        let j0 = b * sites;
        let (cb, rb, mb) = (&c[j0..j0 + sites], &r[j0..j0 + sites], &mut m[j0..j0 + sites]);
        for i in 0..n {
            let k0 = (b * n + i) * sites;
            let (eb, eib) = (&e[k0..k0 + sites], &ei[k0..k0 + sites]);
            for ((((m, &cj), &rj), &ek), &eik) in mb.iter_mut().zip(cb).zip(rb).zip(eb).zip(eib) {
                *m += T::ONE / (eik * cj * cj + ek * rj * rj);
            }
        }
        for v in mb.iter_mut() {
            *v *= inv_n;
        }
    }
    let mut l = latflow_tensor::pool::buffer(x.len());
    T::ln_slice(&m, &mut l);
    for (o, lb) in out.iter_mut().zip(l.chunks_exact(sites.max(1))).take(batch) {
        *o = lb.iter().copied().sum();
    }
    give_back([c, r, e, ei, m, l]);
}

/// Gradients of [`log_jacobian`] from `g (N,)`: `dx (N, S)`, `ds (N, n, S)`. With
/// `u_i = 1/D_i` and `w_i = u_i / sum_j u_j` (= softmax(q)_i).
pub fn log_jacobian_grad<T: Float>(x: &[T], s: &[T], n: usize, batch: usize, g: &[T], dx: &mut [T], ds: &mut [T]) {
    let sites = x.len() / batch.max(1);
    let TrigExp { c, r, e, ei } = trig_exp(x, s);
    let mut u = latflow_tensor::pool::buffer(s.len());
    let mut sum = vec![T::ZERO; sites];
    for b in 0..batch {
        let j0 = b * sites;
        let (cb, rb) = (&c[j0..j0 + sites], &r[j0..j0 + sites]);
        sum.fill(T::ZERO);
        for i in 0..n {
            let k0 = (b * n + i) * sites;
            let (eb, eib, ub) = (&e[k0..k0 + sites], &ei[k0..k0 + sites], &mut u[k0..k0 + sites]);
            for (((((uv, sv), &cj), &rj), &ek), &eik) in
                ub.iter_mut().zip(sum.iter_mut()).zip(cb).zip(rb).zip(eb).zip(eib)
            {
                *uv = T::ONE / (eik * cj * cj + ek * rj * rj);
                *sv += *uv;
            }
        }
        // g / sum per site: one division per site, not per component
        for v in sum.iter_mut() {
            *v = g[b] / *v;
        }
        let dxb = &mut dx[j0..j0 + sites];
        dxb.fill(T::ZERO);
        for i in 0..n {
            let k0 = (b * n + i) * sites;
            let (eb, eib, ub) = (&e[k0..k0 + sites], &ei[k0..k0 + sites], &u[k0..k0 + sites]);
            let dsb = &mut ds[k0..k0 + sites];
            let terms = dxb.iter_mut().zip(dsb.iter_mut()).zip(cb).zip(rb).zip(eb).zip(eib).zip(ub).zip(&sum);
            for (((((((d, dsv), &cj), &rj), &ek), &eik), &uk), &gs) in terms {
                // g w_i / D_i = g u_i^2 / sum
                let wd = gs * uk * uk;
                *d += wd * (eik - ek) * rj * cj;
                *dsv = wd * (eik * cj * cj - ek * rj * rj);
            }
        }
    }
    give_back([c, r, e, ei, u]);
}
