//! CPU kernels of the gauge-equivariant coupling's stripe update (arXiv:2101.08176
//! section V.A), on links `theta (N, 2, H, W)`: on the links of direction `mu` at the
//! stripe sites (every 4th column for `mu = 0`, row for `mu = 1`, from `off`),
//! `theta -> (theta + s (y_a - x_a)) mod 2 pi` with `s = +1` for `mu = 0`, `-1` for
//! `mu = 1`; every other link unchanged. Adjoint: identity for the links, `+- g` at the
//! stripe for `y_a` and `x_a`.

use latflow_tensor::Float;

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
