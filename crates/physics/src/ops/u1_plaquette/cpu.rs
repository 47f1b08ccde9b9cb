//! CPU kernels of the fused U(1) plaquette of the (0, 1) plane (arXiv:2101.08176
//! section V; Kanwar et al. arXiv:2003.06413), on links `theta (N, 2, H, W)`:
//! `P(x, y) = t0(x, y) + t1(x+1, y) - t0(x, y+1) - t1(x, y)` (periodic), computed in the
//! order of the elementwise ops it replaces (bit for bit); adjoint
//! `dt0(x, y) = g(x, y) - g(x, y-1)`, `dt1(x, y) = g(x-1, y) - g(x, y)`.

use latflow_tensor::Float;

/// `P (N, H, W)` of links `(N, 2, H, W)`.
pub fn plaquette01<T: Float>(links: &[T], n: usize, h: usize, w: usize, p: &mut [T]) {
    let hw = h * w;
    if hw == 0 {
        return;
    }
    // t0 shifted by one column (y + 1, wrapping in each row), per sample
    let mut t0s = vec![T::ZERO; hw];
    for b in 0..n {
        let (t0, t1) = (&links[2 * b * hw..(2 * b + 1) * hw], &links[(2 * b + 1) * hw..(2 * b + 2) * hw]);
        for (d, r) in t0s.chunks_exact_mut(w).zip(t0.chunks_exact(w)) {
            d[..w - 1].copy_from_slice(&r[1..]);
            d[w - 1] = r[0];
        }
        let out = &mut p[b * hw..(b + 1) * hw];
        // t1 shifted by one row (x + 1) is t1[w..] followed by t1[..w]; flat loops vectorize
        let split = hw - w;
        let parts = [(0..split, w), (split..hw, 0)];
        for (range, from) in parts {
            let (o, a, c, d) = (&mut out[range.clone()], &t0[range.clone()], &t0s[range.clone()], &t1[range.clone()]);
            for (i, o) in o.iter_mut().enumerate() {
                *o = a[i] + t1[from + i] - c[i] - d[i];
            }
        }
    }
}

/// Its adjoint: `dlinks (N, 2, H, W)` from `g (N, H, W)`.
pub fn plaquette01_grad<T: Float>(g: &[T], n: usize, h: usize, w: usize, dlinks: &mut [T]) {
    let hw = h * w;
    if hw == 0 {
        return;
    }
    for b in 0..n {
        let gb = &g[b * hw..(b + 1) * hw];
        let (d0, d1) = dlinks[2 * b * hw..(2 * b + 2) * hw].split_at_mut(hw);
        // dt0(x, y) = g(x, y) - g(x, y - 1): rows apart (the column wraps)
        for (o, gr) in d0.chunks_exact_mut(w).zip(gb.chunks_exact(w)) {
            o[0] = gr[0] - gr[w - 1];
            for ((o, &a), &c) in o[1..].iter_mut().zip(&gr[1..]).zip(&gr[..w - 1]) {
                *o = a - c;
            }
        }
        // dt1(x, y) = g(x - 1, y) - g(x, y): g shifted by one row is g[hw - w..] then g[..hw - w]
        let split = w;
        for ((o, &a), &c) in d1[..split].iter_mut().zip(&gb[hw - w..]).zip(&gb[..split]) {
            *o = a - c;
        }
        for ((o, &a), &c) in d1[split..].iter_mut().zip(&gb[..hw - w]).zip(&gb[split..]) {
            *o = a - c;
        }
    }
}
