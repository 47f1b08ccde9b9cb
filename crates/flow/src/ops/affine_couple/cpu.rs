//! CPU kernels of the fused affine coupling (arXiv:2101.08176 section IV.B, after Dinh et
//! al. arXiv:1605.08803). Shapes: `x (N, S)`, the net's output `st (N, 2, S)` (channel 0
//! the scale `s`, channel 1 the shift `t`), the mask `m (S)` (1 = frozen), `S` the sites.
//!
//! Forward: `y = m x + (1 - m)(x e^s + t)`; reverse: `y = m x + (1 - m)(x - t) e^{-s}`.
//! Their log-Jacobians are `+- sum_sites (1 - m) s`, [`masked_channel_sum`].

use latflow_tensor::Float;

/// `e^s` (forward) or `e^{-s}` (reverse) of one sample's scale row, with the SIMD exp.
fn exp_row<T: Float>(s: &[T], reverse: bool, e: &mut [T]) {
    if reverse {
        for (d, &v) in e.iter_mut().zip(s) {
            *d = -v;
        }
        let neg = e.to_vec();
        T::exp_slice(&neg, e);
    } else {
        T::exp_slice(s, e);
    }
}

/// `y` of the coupling (forward or reverse) for every sample.
pub fn couple<T: Float>(x: &[T], st: &[T], m: &[T], reverse: bool, y: &mut [T]) {
    let sites = m.len();
    let mut e = vec![T::ZERO; sites];
    for (n, (xs, ys)) in x.chunks(sites).zip(y.chunks_mut(sites)).enumerate() {
        let (s, t) = st[2 * n * sites..2 * (n + 1) * sites].split_at(sites);
        exp_row(s, reverse, &mut e);
        for p in 0..sites {
            let (mk, xv) = (m[p], xs[p]);
            let active = if reverse { (xv - t[p]) * e[p] } else { xv * e[p] + t[p] };
            ys[p] = mk * xv + (T::ONE - mk) * active;
        }
    }
}

/// Gradients of the coupling from `gy`: `dx` and `dst` (both channels), overwritten.
///
/// Forward: `dx = gy (m + (1-m) e^s)`, `ds = gy (1-m) x e^s`, `dt = gy (1-m)`.
/// Reverse: `dx = gy (m + (1-m) e^{-s})`, `ds = -gy (1-m)(x - t) e^{-s}`,
/// `dt = -gy (1-m) e^{-s}`.
pub fn couple_grad<T: Float>(x: &[T], st: &[T], m: &[T], reverse: bool, gy: &[T], dx: &mut [T], dst: &mut [T]) {
    let sites = m.len();
    let mut e = vec![T::ZERO; sites];
    for n in 0..x.len() / sites.max(1) {
        let r = n * sites..(n + 1) * sites;
        let (s, t) = st[2 * n * sites..2 * (n + 1) * sites].split_at(sites);
        let (ds, dt) = dst[2 * n * sites..2 * (n + 1) * sites].split_at_mut(sites);
        let (xs, gs, dxs) = (&x[r.clone()], &gy[r.clone()], &mut dx[r]);
        exp_row(s, reverse, &mut e);
        for p in 0..sites {
            let (mk, g, ep) = (m[p], gs[p], e[p]);
            let a = T::ONE - mk;
            dxs[p] = g * (mk + a * ep);
            if reverse {
                ds[p] = -(g * a * (xs[p] - t[p]) * ep);
                dt[p] = -(g * a * ep);
            } else {
                ds[p] = g * a * xs[p] * ep;
                dt[p] = g * a;
            }
        }
    }
}

/// `out[n] = sum_p m[p] st[n, channel, p]` for `st (N, C, S)`.
pub fn masked_channel_sum<T: Float>(st: &[T], m: &[T], channels: usize, channel: usize, out: &mut [T]) {
    let sites = m.len();
    for (n, o) in out.iter_mut().enumerate() {
        let row = &st[(n * channels + channel) * sites..(n * channels + channel + 1) * sites];
        *o = row.iter().zip(m).map(|(&v, &mk)| v * mk).sum();
    }
}

/// Its adjoint: `dst[n, c, p] = g[n] m[p]` for `c = channel`, 0 for the other channels.
pub fn masked_channel_sum_grad<T: Float>(g: &[T], m: &[T], channels: usize, channel: usize, dst: &mut [T]) {
    let sites = m.len();
    for (n, &gn) in g.iter().enumerate() {
        for c in 0..channels {
            let row = &mut dst[(n * channels + c) * sites..(n * channels + c + 1) * sites];
            if c == channel {
                for (d, &mk) in row.iter_mut().zip(m) {
                    *d = gn * mk;
                }
            } else {
                row.fill(T::ZERO);
            }
        }
    }
}
