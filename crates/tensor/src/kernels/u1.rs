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
    for b in 0..n {
        let (t0, t1) = (&links[2 * b * hw..(2 * b + 1) * hw], &links[(2 * b + 1) * hw..(2 * b + 2) * hw]);
        let out = &mut p[b * hw..(b + 1) * hw];
        for x in 0..h {
            let xp = if x + 1 == h { 0 } else { x + 1 };
            let (r0, r1, r1p) = (&t0[x * w..(x + 1) * w], &t1[x * w..(x + 1) * w], &t1[xp * w..(xp + 1) * w]);
            let o = &mut out[x * w..(x + 1) * w];
            // y + 1 < w: contiguous rows (vectorizes); y = w - 1 wraps to column 0
            for (((o, (&a, &c)), &b), &d) in
                o[..w - 1].iter_mut().zip(r0.iter().zip(&r0[1..])).zip(&r1p[..w - 1]).zip(&r1[..w - 1])
            {
                *o = a + b - c - d;
            }
            o[w - 1] = r0[w - 1] + r1p[w - 1] - r0[0] - r1[w - 1];
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
        for x in 0..h {
            let xm = if x == 0 { h - 1 } else { x - 1 };
            let (gr, grm) = (&gb[x * w..(x + 1) * w], &gb[xm * w..(xm + 1) * w]);
            let (o0, o1) = (&mut d0[x * w..(x + 1) * w], &mut d1[x * w..(x + 1) * w]);
            // dt0(x, y) = g(x, y) - g(x, y - 1): y = 0 wraps to column w - 1
            o0[0] = gr[0] - gr[w - 1];
            for ((o, &a), &b) in o0[1..].iter_mut().zip(&gr[1..]).zip(&gr[..w - 1]) {
                *o = a - b;
            }
            for ((o, &a), &b) in o1.iter_mut().zip(grm).zip(gr) {
                *o = a - b;
            }
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
    for b in 0..n {
        for i in 0..sa {
            for j in 0..sb {
                let (x, y) = stripe_site(mu, off, i, j);
                let k = (b * 2 + mu) * h * w + x * w + y;
                let s = b * sa * sb + i * sb + j;
                // the elementwise ops' order: d = ya - xa; dl = d or -d; (dl + la) mod 2 pi
                let d = ya[s] - xa[s];
                let dl = if mu == 0 { d } else { -d };
                out[k] = (dl + links[k]).rem_euclid(tp);
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
