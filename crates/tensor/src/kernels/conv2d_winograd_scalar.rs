//! Winograd F(2x2, 3x3) circular conv2d in plain scalar loops, for any [`Float`] and any
//! lattice with even extents: the algorithm the AVX-512 kernels of
//! [`super::conv2d_winograd`] implement, written out once without SIMD, so that it can be
//! checked where the fast kernels cannot be: in `f64`, to rounding, against
//! [`super::conv2d::reference`], and its two gradients as the exact adjoints of its
//! forward pass (`crates/tensor/tests/integration/conv2d_kernels.rs`). It is not used for speed.
//!
//! Lavin & Gray, arXiv:1509.09308, on a torus (no padding): output tile `(ti, tj)` (sites
//! `2ti, 2ti + 1` by `2tj, 2tj + 1`) reads the 4x4 patch `d` of rows `2ti - 1 ..= 2ti + 2`
//! and columns `2tj - 1 ..= 2tj + 2`, wrapped, and for a 3x3 kernel `g`
//!
//! ```text
//! y_tile = A^T [ sum_c (G g[o,c] G^T) (.) (B^T d[c] B) ] A + b[o]
//!
//! B^T = [1  0 -1  0]    G = [ 1    0    0 ]    A^T = [1  1  1  0]
//!       [0  1  1  0]        [1/2  1/2  1/2]          [0  1 -1 -1]
//!       [0 -1  1  0]        [1/2 -1/2  1/2]
//!       [0  1  0 -1]        [ 0    0    1 ]
//! ```
//!
//! - input gradient: the forward pass of `dy` with the kernel flipped and the channels
//!   swapped (`conv2d_shape::flipped_weights`), no bias;
//! - weight gradient: `y` is bilinear in `(g, d)`, so
//!   `dg[o,c] = G^T [ sum_{n, tiles} (A dy_tile A^T) (.) (B^T d[c] B) ] G`, and
//!   `db[o] = sum dy[o]`.
//!
//! Rounding: the error bound of [`super::conv2d_winograd`]'s docs holds for any precision,
//! `|y_wino - y| <= gamma_{cin + 8} 4 sum_c ||g[o,c]||_1 ||x[c, 3x3 window]||_1` with
//! `gamma_k = k u / (1 - k u)`; in `f64` (`u = 2^-53`) the tests allow
//! [`F64_WINOGRAD_TOL_PER_DEPTH`] per unit of depth.

use super::conv2d_shape::{flipped_weights, Conv2dShape};
use crate::Float;

/// Allowed error per unit of rounding depth in `f64`, relative to the Winograd magnitude
/// above: `2 u` with `u = 2^-53` (`gamma_k <= 2 k u` while `k u <= 1/2`).
pub const F64_WINOGRAD_TOL_PER_DEPTH: f64 = 2.0 / (1u64 << 53) as f64;

const BT: [[f64; 4]; 4] = [[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, -1.0, 1.0, 0.0], [0.0, 1.0, 0.0, -1.0]];
const G: [[f64; 3]; 4] = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];
const AT: [[f64; 4]; 2] = [[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]];

/// Whether the scalar Winograd algorithm runs shape `s`: a 3x3 kernel and even extents.
pub fn fits(s: &Conv2dShape) -> bool {
    s.k == 3 && s.h.is_multiple_of(2) && s.w.is_multiple_of(2) && s.h >= 4 && s.w >= 4
}

#[track_caller]
fn check(s: &Conv2dShape, x: usize, w: usize, y: usize) {
    assert!(fits(s), "conv2d_winograd_scalar: needs a 3x3 kernel and even extents >= 4, got {s:?}");
    s.check(x, w, y);
}

fn c<T: Float>(v: f64) -> T {
    T::from_f64(v)
}

/// `G g G^T` for every `(o, c)`: 16 values per channel pair.
fn transformed_weights<T: Float>(w: &[T], pairs: usize) -> Vec<[T; 16]> {
    (0..pairs)
        .map(|p| {
            let g = &w[p * 9..][..9];
            let mut gg = [[T::ZERO; 3]; 4]; // G g
            for (r, row) in gg.iter_mut().enumerate() {
                for (col, v) in row.iter_mut().enumerate() {
                    *v = (0..3).map(|k| c::<T>(G[r][k]) * g[k * 3 + col]).sum();
                }
            }
            let mut u = [T::ZERO; 16];
            for r in 0..4 {
                for col in 0..4 {
                    u[r * 4 + col] = (0..3).map(|k| gg[r][k] * c::<T>(G[col][k])).sum();
                }
            }
            u
        })
        .collect()
}

/// `B^T d B` of the patch of tile `(ti, tj)` of plane `x` (`h x w`, wrapped).
fn input_tile<T: Float>(x: &[T], h: usize, w: usize, ti: usize, tj: usize) -> [T; 16] {
    let mut d = [[T::ZERO; 4]; 4];
    for (a, row) in d.iter_mut().enumerate() {
        let i = (2 * ti + h + a - 1) % h;
        for (e, v) in row.iter_mut().enumerate() {
            *v = x[i * w + (2 * tj + w + e - 1) % w];
        }
    }
    let mut bd = [[T::ZERO; 4]; 4]; // B^T d
    for (r, row) in bd.iter_mut().enumerate() {
        for (col, v) in row.iter_mut().enumerate() {
            *v = (0..4).map(|k| c::<T>(BT[r][k]) * d[k][col]).sum();
        }
    }
    let mut v = [T::ZERO; 16];
    for r in 0..4 {
        for col in 0..4 {
            v[r * 4 + col] = (0..4).map(|k| bd[r][k] * c::<T>(BT[col][k])).sum();
        }
    }
    v
}

/// Forward pass, the same contract as [`super::conv2d::reference::forward`].
pub fn forward<T: Float>(x: &[T], w: &[T], b: Option<&[T]>, s: Conv2dShape, y: &mut [T]) {
    check(&s, x.len(), w.len(), y.len());
    let hw = s.h * s.w;
    let u = transformed_weights(w, s.cout * s.cin);
    for n in 0..s.n {
        for ti in 0..s.h / 2 {
            for tj in 0..s.w / 2 {
                let v: Vec<[T; 16]> =
                    (0..s.cin).map(|ci| input_tile(&x[(n * s.cin + ci) * hw..][..hw], s.h, s.w, ti, tj)).collect();
                for o in 0..s.cout {
                    let mut m = [T::ZERO; 16];
                    for (ci, vc) in v.iter().enumerate() {
                        let uo = &u[o * s.cin + ci];
                        for k in 0..16 {
                            m[k] += uo[k] * vc[k];
                        }
                    }
                    let bias = b.map_or(T::ZERO, |b| b[o]);
                    let yt = output_tile(&m);
                    let yo = &mut y[(n * s.cout + o) * hw..][..hw];
                    for (r, row) in yt.iter().enumerate() {
                        for (col, v) in row.iter().enumerate() {
                            yo[(2 * ti + r) * s.w + 2 * tj + col] = *v + bias;
                        }
                    }
                }
            }
        }
    }
}

/// `A^T M A` (2x2) of a transformed tile, rows first then columns (each a sum of at most
/// three nonzero terms, as in the AVX-512 kernels).
fn output_tile<T: Float>(m: &[T; 16]) -> [[T; 2]; 2] {
    let mut am = [[T::ZERO; 4]; 2]; // A^T M
    for (r, row) in am.iter_mut().enumerate() {
        for (col, v) in row.iter_mut().enumerate() {
            *v = (0..4).map(|k| c::<T>(AT[r][k]) * m[k * 4 + col]).sum();
        }
    }
    let mut y = [[T::ZERO; 2]; 2];
    for (r, row) in y.iter_mut().enumerate() {
        for (col, v) in row.iter_mut().enumerate() {
            *v = (0..4).map(|l| am[r][l] * c::<T>(AT[col][l])).sum();
        }
    }
    y
}

/// Input gradient, the same contract as [`super::conv2d::reference::backward_input`]: the
/// forward pass of `dy` with the flipped kernel.
pub fn backward_input<T: Float>(dy: &[T], w: &[T], s: Conv2dShape, dx: &mut [T]) {
    check(&s, dx.len(), w.len(), dy.len());
    let wt = flipped_weights(w, &s);
    forward(dy, &wt, None, Conv2dShape { cin: s.cout, cout: s.cin, ..s }, dx);
}

/// Weight and bias gradients, the same contract as
/// [`super::conv2d::reference::backward_weight`].
pub fn backward_weight<T: Float>(dy: &[T], x: &[T], s: Conv2dShape, dw: &mut [T], db: Option<&mut [T]>) {
    check(&s, x.len(), dw.len(), dy.len());
    let hw = s.h * s.w;
    // S[o, c] = sum_{n, tiles} (A dy A^T) (.) (B^T d B)
    let mut acc = vec![[T::ZERO; 16]; s.cout * s.cin];
    for n in 0..s.n {
        for ti in 0..s.h / 2 {
            for tj in 0..s.w / 2 {
                let v: Vec<[T; 16]> =
                    (0..s.cin).map(|ci| input_tile(&x[(n * s.cin + ci) * hw..][..hw], s.h, s.w, ti, tj)).collect();
                for o in 0..s.cout {
                    let g = &dy[(n * s.cout + o) * hw..][..hw];
                    let t = [
                        [g[2 * ti * s.w + 2 * tj], g[2 * ti * s.w + 2 * tj + 1]],
                        [g[(2 * ti + 1) * s.w + 2 * tj], g[(2 * ti + 1) * s.w + 2 * tj + 1]],
                    ];
                    // P = A t A^T, rows first: (A t)[k, q] = sum_r A^T[r, k] t[r, q]
                    let mut at = [[T::ZERO; 2]; 4];
                    for (k, row) in at.iter_mut().enumerate() {
                        for (q, v) in row.iter_mut().enumerate() {
                            *v = c::<T>(AT[0][k]) * t[0][q] + c::<T>(AT[1][k]) * t[1][q];
                        }
                    }
                    let mut p = [T::ZERO; 16];
                    for k in 0..4 {
                        for l in 0..4 {
                            p[k * 4 + l] = at[k][0] * c::<T>(AT[0][l]) + at[k][1] * c::<T>(AT[1][l]);
                        }
                    }
                    for (ci, vc) in v.iter().enumerate() {
                        let s_oc = &mut acc[o * s.cin + ci];
                        for k in 0..16 {
                            s_oc[k] += p[k] * vc[k];
                        }
                    }
                }
            }
        }
    }
    // dg = G^T S G, rows first: (G^T S)[a, l] = sum_k G[k, a] S[k, l]
    for (pair, s_oc) in acc.iter().enumerate() {
        let mut gs = [[T::ZERO; 4]; 3];
        for (a, row) in gs.iter_mut().enumerate() {
            for (l, v) in row.iter_mut().enumerate() {
                *v = (0..4).map(|k| c::<T>(G[k][a]) * s_oc[k * 4 + l]).sum();
            }
        }
        for (a, row) in gs.iter().enumerate() {
            for e in 0..3 {
                dw[pair * 9 + a * 3 + e] = (0..4).map(|l| row[l] * c::<T>(G[l][e])).sum();
            }
        }
    }
    if let Some(db) = db {
        assert_eq!(db.len(), s.cout, "conv2d: bias-gradient length for {s:?}");
        for (o, d) in db.iter_mut().enumerate() {
            *d = (0..s.n).map(|n| dy[(n * s.cout + o) * hw..][..hw].iter().copied().sum::<T>()).sum();
        }
    }
}
