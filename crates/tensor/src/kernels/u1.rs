//! CPU kernels of the fused U(1) ops (arXiv:2101.08176 section V; Kanwar et al.
//! arXiv:2003.06413), on links `theta (N, 2, H, W)`:
//!
//! - the plaquette of the (0, 1) plane, `P(x, y) = t0(x, y) + t1(x+1, y) - t0(x, y+1) - t1(x, y)`
//!   (periodic), computed in the order of the elementwise ops it replaces (bit for bit);
//!   adjoint `dt0(x, y) = g(x, y) - g(x, y-1)`, `dt1(x, y) = g(x-1, y) - g(x, y)`;
//! - the stripe update of the gauge-equivariant coupling: on the links of direction `mu`
//!   at the stripe sites (every 4th column for `mu = 0`, row for `mu = 1`, from `off`),
//!   `theta -> (theta + s (y_a - x_a)) mod 2 pi` with `s = +1` for `mu = 0`, `-1` for
//!   `mu = 1`; every other link unchanged. Adjoint: identity for the links, `+- g` at the
//!   stripe for `y_a` and `x_a`.

use crate::Float;

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

/// The site `(x, y)` of stripe element `(a, b)` for direction `mu`, offset `off`.
#[inline]
pub fn stripe_site(mu: usize, off: usize, a: usize, b: usize) -> (usize, usize) {
    if mu == 0 {
        (a, 4 * b + off)
    } else {
        (4 * a + off, b)
    }
}

/// The stripe's shape `(A, B)` on an `h x w` lattice.
pub fn stripe_shape(mu: usize, h: usize, w: usize) -> (usize, usize) {
    if mu == 0 {
        (h, w / 4)
    } else {
        (h / 4, w)
    }
}

/// New links `(N, 2, H, W)` from `links`, `ya`, `xa` `(N, A, B)`.
#[allow(clippy::too_many_arguments)]
pub fn stripe_update<T: Float>(
    links: &[T],
    ya: &[T],
    xa: &[T],
    n: usize,
    h: usize,
    w: usize,
    mu: usize,
    off: usize,
    out: &mut [T],
) {
    out.copy_from_slice(links);
    let (sa, sb) = stripe_shape(mu, h, w);
    let tp = T::from_f64(2.0 * std::f64::consts::PI);
    let hw = h * w;
    // stripe element (i, j) of sample b sits at `base + i * step_i + j * step_j` of its plane
    let (step_i, step_j, first) = if mu == 0 { (w, 4, off) } else { (4 * w, 1, off * w) };
    for b in 0..n {
        let plane = &mut out[(b * 2 + mu) * hw..(b * 2 + mu + 1) * hw];
        let (yb, xb) = (&ya[b * sa * sb..(b + 1) * sa * sb], &xa[b * sa * sb..(b + 1) * sa * sb]);
        for i in 0..sa {
            for j in 0..sb {
                let k = first + i * step_i + j * step_j;
                let s = i * sb + j;
                // the elementwise ops' order: d = ya - xa; dl = d or -d; (dl + la) mod 2 pi
                let d = yb[s] - xb[s];
                let dl = if mu == 0 { d } else { -d };
                plane[k] = (dl + plane[k]).rem_euclid(tp);
            }
        }
    }
}

/// The stripe update's adjoint for `ya` (`+- g` at the stripe; `dxa = -dya`).
pub fn stripe_update_grad_ya<T: Float>(g: &[T], n: usize, h: usize, w: usize, mu: usize, off: usize, dya: &mut [T]) {
    let (sa, sb) = stripe_shape(mu, h, w);
    for b in 0..n {
        for i in 0..sa {
            for j in 0..sb {
                let (x, y) = stripe_site(mu, off, i, j);
                let v = g[(b * 2 + mu) * h * w + x * w + y];
                dya[b * sa * sb + i * sb + j] = if mu == 0 { v } else { -v };
            }
        }
    }
}
