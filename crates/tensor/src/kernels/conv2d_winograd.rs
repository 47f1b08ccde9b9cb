//! Winograd F(2x2, 3x3) circular conv2d for `f32` on lattices 8 sites wide with a height
//! that is a multiple of 8, 3x3 kernels, AVX-512F (chosen at run time, like
//! [`super::conv2d_avx512`]; `LATFLOW_NO_WINOGRAD=1` or `LATFLOW_NO_AVX512=1` turn it off).
//! Same functions as [`super::conv2d::reference`]; the tests compare against it with the
//! tolerance [`F32_WINOGRAD_TOL_PER_DEPTH`] derived below.
//!
//! # The transforms (Lavin & Gray, arXiv:1509.09308)
//!
//! One output tile of 2x2 sites reads a 4x4 input patch `d` (rows `2ti-1 .. 2ti+2`, columns
//! `2tj-1 .. 2tj+2`, wrapped around the torus: no padding). For a 3x3 kernel `g`,
//!
//! `y = A^T [ (G g G^T) (.) (B^T d B) ] A`,  `(.)` elementwise over the 16 transform elements,
//!
//! ```text
//! B^T = [1  0 -1  0]    G = [ 1    0    0 ]    A^T = [1  1  1  0]
//!       [0  1  1  0]        [1/2  1/2  1/2]          [0  1 -1 -1]
//!       [0 -1  1  0]        [1/2 -1/2  1/2]
//!       [0  1  0 -1]        [ 0    0    1 ]
//! ```
//!
//! With channels, `M[o, xi] = sum_c U[o, c, xi] V[c, xi]` (`U = G g G^T`, `V = B^T d B`): per
//! tile and channel pair 16 multiplications instead of the direct 36 (2.25x fewer). The
//! transforms are additions only (the 1/2 of `G` is applied once per call to the weights).
//!
//! - Input gradient: the forward pass on `dy` with the kernel flipped and its channels
//!   swapped (`flipped_weights`), as in the direct kernels.
//! - Weight gradient: `y` is bilinear in `(g, d)`, so differentiating the formula above
//!   gives `dW = G^T [ sum_{n, tiles} (A dy A^T) (.) (B^T d B) ] G` (exact algebra, as
//!   the forward identity): the same input transform, a 2x2 -> 4x4 transform of each
//!   output-gradient tile, an elementwise product summed over samples and tiles, and one
//!   4x4 -> 3x3 transform per channel pair at the end.
//!
//! # Layout: tiles as lanes
//!
//! An `h x 8` plane has `h / 2 x 4` tiles; 16 of them (4 tile rows x 4 tile columns) fill one
//! `__m512`, so for each of the 16 transform elements a plane is `h / 8` vectors (one on the
//! tutorial's 8x8 lattice). The plane's natural layout is `h / 2` vectors of two lattice rows
//! each (as in [`super::conv2d_avx512`]), and no global layout changes:
//!
//! - input transform: `B^T` along rows first, on whole rows: the even rows, odd rows, the odd
//!   rows one tile up and the even rows one tile down are 128-bit-lane shuffles
//!   (`vshuff32x4`) of the plane's vectors, and `R_r = B^T_r d` is 8 adds per 4 tile rows;
//!   then `B` along columns: the 4 columns of each patch are one two-source permutation
//!   (`vpermt2ps`) of the 32 values of `R_r` each, and 4 adds. Per 16 tiles and channel: 8
//!   shuffles + 16 permutations + 24 adds (1.5 adds per tile, against 32 for a patch taken
//!   alone: neighbouring patches share the row sums);
//! - output transform: 24 adds (the bias added once, to `M[1,1]`, which `A^T . A` adds to
//!   all four outputs of the tile), then 4 permutations and 4 shuffles back to rows;
//! - elementwise products: per transform element a `cout x cin` by `cin x 16 tiles` product,
//!   register tiles of up to 8 output channels x 2 elements (or 4 x 4, 2 x 8, 1 x 16) with
//!   broadcast weights;
//! - weight gradient: `sum_n P[n, o, xi] V[n, c, xi]` with per-lane sums in registers, tiles
//!   of up to 8 x 2 (4 x 4, 2 x 8) channel pairs per element over a block of samples kept
//!   in L2; per-chunk partial sums added in chunk order (fixed chunks, as the direct
//!   kernels: the result does not depend on the thread count), then the 16 lanes, then
//!   `G^T S G` in f64.
//!
//! # Rounding error (the tolerance the tests use)
//!
//! Write `u = 2^-24` (f32 unit roundoff) and `gamma_k = k u / (1 - k u)`. The direct sum has
//! `|err| <= gamma_{9 cin + 1} sum |w| |x|`. Winograd rounds differently: each transform is
//! a short sum (depth: `V` 2 additions, `U` rounded once from f64, the channel sum `cin`,
//! the output transform 4, the bias 1), so the forward error is at most
//! `gamma_{cin + 8}` times the sum of the absolute values of every term the transformed
//! formula adds up, `|A^T| [ (|G| |g| |G^T|) (.) (|B^T| |d| |B|) ] |A|`. That magnitude is
//! not `sum |w| |x|`: the transforms also multiply each weight with patch values it is not
//! paired with in the direct sum (they cancel exactly, but their rounding does not). In one
//! dimension the coefficient of `|g_a| |d_b|` is `K(a, b) = sum_r |A_ru| |G_ra| |B_br|`; for
//! F(2, 3) it is at most 2, and nonzero only for `b` in the 3-window of the output. The 2-D
//! coefficients are products of two such, so per output
//!
//! `|y_wino - y| <= gamma_{cin + 8} * 4 * sum_c ||w[o, c]||_1 ||x[c, 3x3 window]||_1`,
//!
//! against `9 cin` terms of `|w| |x|` for the direct sum: on random data the bound is ~40x
//! wider than the direct one, and the error measured is ~10x the direct error (F(4x4, 3x3)
//! has entries up to 8 in `A` and `1/6` in `G`, with a growth factor ~100x larger again,
//! which is why this module uses F(2x2, 3x3)). For the weight gradient the same argument
//! with the transposed coefficients gives `gamma_{N + 24} * 4 * sum_{n,i,j} |dy[n,o,i,j]|
//! ||x[n, c, 3x3 window of (i,j)]||_1` (`N` samples summed in sequence per lane, then up to
//! 8 chunks, 4 levels of lane reduction, and the 4x4 -> 3x3 transform). The tests take
//! `gamma_k ~ k u` with a factor 2 of margin: [`F32_WINOGRAD_TOL_PER_DEPTH`] `* depth`.

#![allow(unsafe_code)]

use std::arch::x86_64::*;
use std::sync::OnceLock;

use rayon::prelude::*;

pub(super) use super::conv2d_avx512::zeroed;
pub use super::conv2d_shape::Pass;
use super::conv2d_shape::{flipped_weights, Conv2dShape};
use super::conv2d_simd::chunk_len;

/// Lanes of one `__m512` of `f32`: 16 tiles (4 tile rows x 4 tile columns).
const L: usize = 16;
/// Transform elements of F(2x2, 3x3): the 4x4 patch.
const XI: usize = 16;

/// Relative error per unit of rounding depth the tests allow, against the Winograd
/// magnitude of the module docs (`4 sum_c ||w||_1 ||x window||_1`, or its weight-gradient
/// counterpart): `2 u` with `u = 2^-24`, i.e. `gamma_k <= 2 k u` for the depths here.
/// A forward output with `cin` input channels is allowed `(cin + 8)` times this, a weight
/// gradient over `N` samples `(N + 24)` times.
pub const F32_WINOGRAD_TOL_PER_DEPTH: f64 = 2.0 / (1u64 << 24) as f64;

/// Whether the CPU has AVX-512F (and `LATFLOW_NO_AVX512` is unset) and
/// `LATFLOW_NO_WINOGRAD` is unset (checked once).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE
        .get_or_init(|| super::cpu_features::avx512_available() && std::env::var_os("LATFLOW_NO_WINOGRAD").is_none())
}

/// Whether this path computes shape `s`: width 8, height a multiple of 8, 3x3 kernel, at
/// least one channel in and out.
pub fn fits(s: &Conv2dShape) -> bool {
    s.w == 8 && s.h >= 8 && s.h.is_multiple_of(8) && s.k == 3 && s.cin > 0 && s.cout > 0
}

/// Floating-point operations one call of `pass` really executes (multiplications,
/// fused multiply-adds counted as 2, transform additions), for the benchmark's "true"
/// GFLOP/s: per 16 tiles, the products `2 * 16 cin cout`, the input transform `24 cin`,
/// the output transform `25 cout` (forward, input gradient with channels swapped) or the
/// output-gradient transform `12 cout` (weight gradient, plus `cout` bias-gradient adds per
/// vector of `dy`).
pub fn flops(s: &Conv2dShape, pass: Pass) -> f64 {
    let groups = (s.n * s.h / 8) as f64; // vectors of 16 tiles per channel
    let lanes = L as f64;
    let (ci, co) = (s.cin as f64, s.cout as f64);
    let per = match pass {
        Pass::Forward => 2.0 * 16.0 * ci * co + 24.0 * ci + 25.0 * co,
        Pass::BackwardInput => 2.0 * 16.0 * ci * co + 24.0 * co + 25.0 * ci,
        Pass::BackwardWeight => 2.0 * 16.0 * ci * co + 24.0 * ci + 12.0 * co + 4.0 * co,
    };
    groups * lanes * per
}

// ---------------------------------------------------------------------------------
// permutation tables

/// `D_q[tl * 4 + tj] = R[tl * 8 + (2 tj - 1 + q) mod 8]`: column `q` of each 4x4 patch
/// from the row sums `R` of 4 tile rows (32 values, two vectors).
const fn patch_cols() -> [[i32; L]; 4] {
    let mut t = [[0i32; L]; 4];
    let mut q = 0;
    while q < 4 {
        let mut l = 0;
        while l < L {
            let (tl, tj) = (l / 4, l % 4);
            t[q][l] = (tl * 8 + (2 * tj + 7 + q) % 8) as i32;
            l += 1;
        }
        q += 1;
    }
    t
}
const PATCH_COLS: [[i32; L]; 4] = patch_cols();

/// Tile lanes back to rows: `W[tl' * 8 + 2 tj + b] = Z_b[(tl' + 2 half) * 4 + tj]`
/// (`Z_0` the first source, `Z_1` the second), for tile rows `0, 1` (`half = 0`) or `2, 3`.
const fn tiles_to_rows() -> [[i32; L]; 2] {
    let mut t = [[0i32; L]; 2];
    let mut half = 0;
    while half < 2 {
        let mut l = 0;
        while l < L {
            let (tlp, j) = (l / 8, l % 8);
            let (tj, b) = (j / 2, j % 2);
            t[half][l] = (b * L + (tlp + 2 * half) * 4 + tj) as i32;
            l += 1;
        }
        half += 1;
    }
    t
}
const TILES_TO_ROWS: [[i32; L]; 2] = tiles_to_rows();

/// Rows to tile lanes: `Z_b[tl * 4 + tj] = W[tl * 8 + 2 tj + b]` (`W` the 32 values of
/// one row parity of 4 tile rows).
const fn rows_to_tiles() -> [[i32; L]; 2] {
    let mut t = [[0i32; L]; 2];
    let mut b = 0;
    while b < 2 {
        let mut l = 0;
        while l < L {
            let (tl, tj) = (l / 4, l % 4);
            t[b][l] = (tl * 8 + 2 * tj + b) as i32;
            l += 1;
        }
        b += 1;
    }
    t
}
const ROWS_TO_TILES: [[i32; L]; 2] = rows_to_tiles();

#[inline]
#[target_feature(enable = "avx512f")]
fn idx(t: &[i32; L]) -> __m512i {
    // SAFETY: 16 i32 = 64 readable bytes.
    unsafe { _mm512_loadu_si512(t.as_ptr().cast()) }
}

// ---------------------------------------------------------------------------------
// transforms

/// `V = B^T d B` of every tile of one `h x 8` plane: `out[(xi * tv + g) * stride]` for
/// transform element `xi = 4 r + s` and tile group `g` (tile rows `4g .. 4g + 4`),
/// `tv = h / 8`.
///
/// # Safety
/// AVX-512F; `plane` points at `8 h` readable floats, `out` at `(16 h / 8 - 1) * stride + 1`
/// writable vectors.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn input_transform(plane: *const f32, h: usize, out: *mut __m512, stride: usize) {
    let (nvp, tv) = (h / 2, h / 8);
    let cols = [idx(&PATCH_COLS[0]), idx(&PATCH_COLS[1]), idx(&PATCH_COLS[2]), idx(&PATCH_COLS[3])];
    for g in 0..tv {
        // SAFETY: row-pair vectors are taken mod h / 2, inside the plane.
        let ld = |k: usize| unsafe { _mm512_loadu_ps(plane.add(((4 * g + k + nvp - 1) % nvp) * L)) };
        // v[k] holds lattice rows 2(4g + k - 1), 2(4g + k - 1) + 1
        let v = [ld(0), ld(1), ld(2), ld(3), ld(4), ld(5)];
        // rows 2ti - 1, 2ti, 2ti + 1, 2ti + 2 for tile rows ti = 4g, 4g + 1 (a) and 4g + 2, 4g + 3 (b)
        let e = [_mm512_shuffle_f32x4::<0x44>(v[1], v[2]), _mm512_shuffle_f32x4::<0x44>(v[3], v[4])];
        let o = [_mm512_shuffle_f32x4::<0xEE>(v[1], v[2]), _mm512_shuffle_f32x4::<0xEE>(v[3], v[4])];
        let om = [_mm512_shuffle_f32x4::<0xEE>(v[0], v[1]), _mm512_shuffle_f32x4::<0xEE>(v[2], v[3])];
        let ep = [_mm512_shuffle_f32x4::<0x44>(v[2], v[3]), _mm512_shuffle_f32x4::<0x44>(v[4], v[5])];
        let r = [
            [_mm512_sub_ps(om[0], o[0]), _mm512_sub_ps(om[1], o[1])],
            [_mm512_add_ps(e[0], o[0]), _mm512_add_ps(e[1], o[1])],
            [_mm512_sub_ps(o[0], e[0]), _mm512_sub_ps(o[1], e[1])],
            [_mm512_sub_ps(e[0], ep[0]), _mm512_sub_ps(e[1], ep[1])],
        ];
        for (rr, r) in r.iter().enumerate() {
            let d = [
                _mm512_permutex2var_ps(r[0], cols[0], r[1]),
                _mm512_permutex2var_ps(r[0], cols[1], r[1]),
                _mm512_permutex2var_ps(r[0], cols[2], r[1]),
                _mm512_permutex2var_ps(r[0], cols[3], r[1]),
            ];
            let at = |s: usize| ((4 * rr + s) * tv + g) * stride;
            // SAFETY: (4 rr + s) * tv + g < 16 tv.
            unsafe {
                *out.add(at(0)) = _mm512_sub_ps(d[0], d[2]);
                *out.add(at(1)) = _mm512_add_ps(d[1], d[2]);
                *out.add(at(2)) = _mm512_sub_ps(d[2], d[1]);
                *out.add(at(3)) = _mm512_sub_ps(d[1], d[3]);
            }
        }
    }
}

/// `y = A^T M A (+ bias)` of every tile of one plane, from `m[xi * tv + g]`, into the
/// plane's natural layout; LeakyReLU with `leaky = Some(slope)`.
///
/// # Safety
/// AVX-512F; `m` points at `16 h / 8` readable vectors, `plane` at `8 h` writable floats.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn output_transform(m: *const __m512, h: usize, bias: f32, leaky: Option<f32>, plane: *mut f32) {
    let tv = h / 8;
    let (lo, hi) = (idx(&TILES_TO_ROWS[0]), idx(&TILES_TO_ROWS[1]));
    for g in 0..tv {
        // SAFETY: xi * tv + g < 16 tv.
        let mm = |xi: usize| unsafe { *m.add(xi * tv + g) };
        let mut y = [[_mm512_setzero_ps(); 2]; 4];
        for r in 0..4 {
            let (m0, mut m1, m2, m3) = (mm(4 * r), mm(4 * r + 1), mm(4 * r + 2), mm(4 * r + 3));
            if r == 1 {
                // M[1,1] enters all four outputs of the tile with coefficient 1
                m1 = _mm512_add_ps(m1, _mm512_set1_ps(bias));
            }
            y[r][0] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
            y[r][1] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
        }
        let mut z = [[_mm512_setzero_ps(); 2]; 2];
        for b in 0..2 {
            z[0][b] = _mm512_add_ps(_mm512_add_ps(y[0][b], y[1][b]), y[2][b]);
            z[1][b] = _mm512_sub_ps(_mm512_sub_ps(y[1][b], y[2][b]), y[3][b]);
        }
        // w[a][half]: row a of each tile of tile rows 2 half, 2 half + 1
        let w = [
            [_mm512_permutex2var_ps(z[0][0], lo, z[0][1]), _mm512_permutex2var_ps(z[0][0], hi, z[0][1])],
            [_mm512_permutex2var_ps(z[1][0], lo, z[1][1]), _mm512_permutex2var_ps(z[1][0], hi, z[1][1])],
        ];
        let mut out = [
            _mm512_shuffle_f32x4::<0x44>(w[0][0], w[1][0]),
            _mm512_shuffle_f32x4::<0xEE>(w[0][0], w[1][0]),
            _mm512_shuffle_f32x4::<0x44>(w[0][1], w[1][1]),
            _mm512_shuffle_f32x4::<0xEE>(w[0][1], w[1][1]),
        ];
        if let Some(slope) = leaky {
            for v in &mut out {
                *v = super::conv2d_avx512::leaky16(*v, slope);
            }
        }
        for (k, v) in out.iter().enumerate() {
            // SAFETY: (4g + k) * 16 + 16 <= 8 h.
            unsafe { _mm512_storeu_ps(plane.add((4 * g + k) * L), *v) };
        }
    }
}

/// `P' = A dy A^T` of every 2x2 tile of one output-gradient plane, with the signs of row
/// and column 3 dropped (`P'[r,s] = sigma_r sigma_s P[r,s]`, `sigma = (1, 1, 1, -1)`; the
/// final `G^T S G` puts them back): `out[(xi * tv + g) * stride]`.
///
/// # Safety
/// AVX-512F; `plane` points at `8 h` readable floats, `out` at `(16 h / 8 - 1) * stride + 1`
/// writable vectors.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn grad_transform(plane: *const f32, h: usize, out: *mut __m512, stride: usize) {
    let tv = h / 8;
    let (b0, b1) = (idx(&ROWS_TO_TILES[0]), idx(&ROWS_TO_TILES[1]));
    for g in 0..tv {
        // SAFETY: vectors 4g .. 4g + 4 lie inside the plane.
        let ld = |k: usize| unsafe { _mm512_loadu_ps(plane.add((4 * g + k) * L)) };
        let n = [ld(0), ld(1), ld(2), ld(3)];
        // row parity a of tile rows (0, 1) and (2, 3)
        let w = [
            [_mm512_shuffle_f32x4::<0x44>(n[0], n[1]), _mm512_shuffle_f32x4::<0x44>(n[2], n[3])],
            [_mm512_shuffle_f32x4::<0xEE>(n[0], n[1]), _mm512_shuffle_f32x4::<0xEE>(n[2], n[3])],
        ];
        // z[a][b]: output-gradient entry (a, b) of every tile
        let z = [
            [_mm512_permutex2var_ps(w[0][0], b0, w[0][1]), _mm512_permutex2var_ps(w[0][0], b1, w[0][1])],
            [_mm512_permutex2var_ps(w[1][0], b0, w[1][1]), _mm512_permutex2var_ps(w[1][0], b1, w[1][1])],
        ];
        // columns: (z0, z0 + z1, z0 - z1, z1)
        let q = |a: usize| [z[a][0], _mm512_add_ps(z[a][0], z[a][1]), _mm512_sub_ps(z[a][0], z[a][1]), z[a][1]];
        let (q0, q1) = (q(0), q(1));
        for s in 0..4 {
            let p = [q0[s], _mm512_add_ps(q0[s], q1[s]), _mm512_sub_ps(q0[s], q1[s]), q1[s]];
            for r in 0..4 {
                // SAFETY: (4r + s) * tv + g < 16 tv.
                unsafe { *out.add(((4 * r + s) * tv + g) * stride) = p[r] };
            }
        }
    }
}

/// `U[xi][c][o] = (G g[o, c] G^T)[xi]`, computed in f64 and rounded once.
fn weight_transform(w: &[f32], s: &Conv2dShape) -> Vec<f32> {
    const G: [[f64; 3]; 4] = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];
    let mut u = vec![0f32; XI * s.cin * s.cout];
    for o in 0..s.cout {
        for c in 0..s.cin {
            let g = &w[(o * s.cin + c) * 9..][..9];
            for r in 0..4 {
                for q in 0..4 {
                    let mut acc = 0f64;
                    for a in 0..3 {
                        for e in 0..3 {
                            acc += G[r][a] * g[a * 3 + e] as f64 * G[q][e];
                        }
                    }
                    u[((4 * r + q) * s.cin + c) * s.cout + o] = acc as f32;
                }
            }
        }
    }
    u
}

/// `dw[o, c] = G^T S G` with `S[r, s] = sigma_r sigma_s S'[r, s]` (see [`grad_transform`]).
fn weight_grad_transform(sp: &[f32; XI]) -> [f32; 9] {
    const G: [[f64; 3]; 4] = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];
    const SIGMA: [f64; 4] = [1.0, 1.0, 1.0, -1.0];
    let mut out = [0f32; 9];
    for a in 0..3 {
        for e in 0..3 {
            let mut acc = 0f64;
            for r in 0..4 {
                for q in 0..4 {
                    acc += G[r][a] * G[q][e] * SIGMA[r] * SIGMA[q] * sp[4 * r + q] as f64;
                }
            }
            out[a * 3 + e] = acc as f32;
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// forward

/// Runs `f` on this thread's scratch vectors, at least `n` of them (kept between calls:
/// the transformed planes of a call are written before they are read, so they need no
/// zeroing; allocating and zeroing them per call cost ~3% of a training step).
pub(super) fn with_scratch<R>(n: usize, f: impl FnOnce(&mut [__m512]) -> R) -> R {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<__m512>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|s| {
        // no rayon call runs while the scratch is borrowed, so no task on this thread
        // can ask for it again
        let mut s = s.borrow_mut();
        if s.len() < n {
            *s = zeroed(n);
        }
        f(&mut s[..n])
    })
}

/// Forward pass into `y` (overwritten); over the batch with rayon when `threaded`.
/// `leaky = Some(slope)` applies LeakyReLU to each sample's outputs as they are stored.
///
/// # Panics
/// If [`available`] or [`fits`] is false (the dispatcher checks both), or slice lengths
/// do not match `s`.
pub fn forward(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    s: Conv2dShape,
    y: &mut [f32],
    threaded: bool,
    leaky: Option<f32>,
) {
    assert!(available() && fits(&s), "conv2d_winograd: shape {s:?} or CPU not supported");
    s.check(x.len(), w.len(), y.len());
    if let Some(b) = b {
        assert_eq!(b.len(), s.cout, "conv2d_winograd: bias length");
    }
    if s.n == 0 {
        return;
    }
    let u = weight_transform(w, &s);
    let (xin, yout) = (s.cin * s.h * s.w, s.cout * s.h * s.w);
    if threaded && s.n > 1 {
        let chunk = chunk_len(s.n, 4 * rayon::current_num_threads());
        x.par_chunks(chunk * xin).zip(y.par_chunks_mut(chunk * yout)).for_each(|(xc, yc)| {
            // SAFETY: available() was asserted; lengths match the chunk's shape.
            unsafe { forward_chunk(xc, &u, b, Conv2dShape { n: xc.len() / xin, ..s }, yc, leaky) }
        });
    } else {
        // SAFETY: as above.
        unsafe { forward_chunk(x, &u, b, s, y, leaky) }
    }
}

/// Input gradient into `dx` (overwritten): [`forward`] on `dy` with the flipped kernel.
///
/// # Panics
/// As [`forward`].
pub fn backward_input(dy: &[f32], w: &[f32], s: Conv2dShape, dx: &mut [f32], threaded: bool) {
    let wt = flipped_weights(w, &s);
    let st = Conv2dShape { cin: s.cout, cout: s.cin, ..s };
    forward(dy, &wt, None, st, dx, threaded, None);
}

/// Calls `$f::<O, X>($args)` for the forward tile `(o, x)` from [`fwd_block`].
macro_rules! fwd_tiles {
    ($f:ident, $o:expr, ($($args:expr),*)) => {
        match $o {
            1 => $f::<1, 16>($($args),*),
            2 => $f::<2, 8>($($args),*),
            3 => $f::<3, 4>($($args),*),
            4 => $f::<4, 4>($($args),*),
            5 => $f::<5, 2>($($args),*),
            6 => $f::<6, 2>($($args),*),
            7 => $f::<7, 2>($($args),*),
            _ => $f::<8, 2>($($args),*),
        }
    };
}

/// Transform elements per forward tile of `o` output channels (at most 16 accumulators).
fn fwd_block(o: usize) -> usize {
    match o {
        1 => 16,
        2 => 8,
        3 | 4 => 4,
        _ => 2,
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn forward_chunk(x: &[f32], u: &[f32], b: Option<&[f32]>, s: Conv2dShape, y: &mut [f32], leaky: Option<f32>) {
    let (hw, tv) = (s.h * s.w, s.h / 8);
    let nq = XI * tv;
    assert!(x.len() == s.n * s.cin * hw && y.len() == s.n * s.cout * hw && u.len() == XI * s.cin * s.cout);
    with_scratch((s.cin + s.cout) * nq, |buf| {
        let (v, m) = buf.split_at_mut(s.cin * nq);
        // SAFETY: as forward_chunk's contract; v and m hold cin * nq and cout * nq vectors.
        unsafe { forward_samples(x, u, b, s, y, leaky, v, m) }
    })
}

/// [`forward_chunk`]'s samples with the scratch `v` (`cin * nq` vectors) and `m`
/// (`cout * nq`).
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn forward_samples(
    x: &[f32],
    u: &[f32],
    b: Option<&[f32]>,
    s: Conv2dShape,
    y: &mut [f32],
    leaky: Option<f32>,
    v: &mut [__m512],
    m: &mut [__m512],
) {
    let (hw, tv) = (s.h * s.w, s.h / 8);
    let nq = XI * tv;
    assert!(v.len() == s.cin * nq && m.len() == s.cout * nq);
    for n in 0..s.n {
        for c in 0..s.cin {
            // SAFETY: plane (n, c) lies inside x; channel c's nq vectors inside v.
            unsafe { input_transform(x.as_ptr().add((n * s.cin + c) * hw), s.h, v.as_mut_ptr().add(c * nq), 1) };
        }
        let mut o0 = 0;
        while o0 < s.cout {
            let ob = (s.cout - o0).min(8);
            let xb = fwd_block(ob);
            let mut q0 = 0;
            while q0 < nq {
                // SAFETY: o0 + ob <= cout, q0 + xb <= nq (xb divides 16); buffers sized above.
                unsafe { fwd_tiles!(fwd_tile, ob, (v, u, s, o0, q0, m)) };
                q0 += xb;
            }
            o0 += ob;
        }
        for o in 0..s.cout {
            let bias = b.map_or(0.0, |b| b[o]);
            // SAFETY: output plane (n, o) lies inside y; m holds cout * nq vectors.
            unsafe {
                output_transform(m.as_ptr().add(o * nq), s.h, bias, leaky, y.as_mut_ptr().add((n * s.cout + o) * hw))
            };
        }
    }
}

/// `M[o][q] = sum_c U[xi(q)][c][o] V[c][q]` for output channels `o0..o0+O` and columns
/// `q0..q0+X` (`q = xi * tv + g`).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn fwd_tile<const O: usize, const X: usize>(
    v: &[__m512],
    u: &[f32],
    s: Conv2dShape,
    o0: usize,
    q0: usize,
    m: &mut [__m512],
) {
    let tv = s.h / 8;
    let nq = XI * tv;
    assert!(o0 + O <= s.cout && q0 + X <= nq && v.len() >= s.cin * nq && m.len() >= s.cout * nq);
    assert!(u.len() == XI * s.cin * s.cout);
    let mut acc = [[_mm512_setzero_ps(); X]; O];
    let (vb, ub) = (v.as_ptr(), u.as_ptr());
    for c in 0..s.cin {
        for x in 0..X {
            let q = q0 + x;
            // SAFETY: c * nq + q < cin * nq (asserted).
            let vv = unsafe { *vb.add(c * nq + q) };
            // SAFETY: ((xi * cin + c) * cout + o0 + o) < 16 cin cout (asserted).
            let up = unsafe { ub.add(((q / tv) * s.cin + c) * s.cout + o0) };
            for o in 0..O {
                acc[o][x] = _mm512_fmadd_ps(_mm512_set1_ps(unsafe { *up.add(o) }), vv, acc[o][x]);
            }
        }
    }
    for o in 0..O {
        for x in 0..X {
            m[(o0 + o) * nq + q0 + x] = acc[o][x];
        }
    }
}

// ---------------------------------------------------------------------------------
// weight gradient

/// One chunk's per-lane partial sums: `S'` (see [`weight_chunk`]) and the bias gradient.
type Part = (Vec<__m512>, Vec<__m512>);

/// Batch chunks of the threaded weight gradient, independent of the thread count.
const WEIGHT_GRAD_CHUNKS: usize = 8;

/// Bytes of transformed `x` and `dy` per sample block of the weight gradient (kept in L2
/// while every element and channel-pair tile streams through it).
const WEIGHT_BLOCK_BYTES: usize = 256 << 10;

/// Weight (and bias) gradient into `dw` (and `db`), overwritten; over fixed batch chunks
/// with rayon when `threaded`, the chunks' partial sums added in chunk order.
///
/// # Panics
/// As [`forward`].
pub fn backward_weight(dy: &[f32], x: &[f32], s: Conv2dShape, dw: &mut [f32], db: Option<&mut [f32]>, threaded: bool) {
    assert!(available() && fits(&s), "conv2d_winograd: shape {s:?} or CPU not supported");
    s.check(x.len(), dw.len(), dy.len());
    if let Some(db) = &db {
        assert_eq!(db.len(), s.cout, "conv2d_winograd: bias gradient length");
    }
    let (xin, yout) = (s.cin * s.h * s.w, s.cout * s.h * s.w);
    // SAFETY (both calls): available() was asserted; lengths match each chunk's shape.
    let parts: Vec<Part> = if s.n == 0 {
        Vec::new()
    } else if threaded && s.n > 1 {
        let chunk = chunk_len(s.n, WEIGHT_GRAD_CHUNKS);
        x.par_chunks(chunk * xin)
            .zip(dy.par_chunks(chunk * yout))
            .map(|(xc, dyc)| unsafe { weight_chunk(dyc, xc, Conv2dShape { n: xc.len() / xin, ..s }) })
            .collect()
    } else {
        vec![unsafe { weight_chunk(dy, x, s) }]
    };
    // SAFETY: available() was asserted.
    unsafe { finish_weight(&parts, s, dw, db) };
}

/// Adds the chunks' lane sums in chunk order, then the tile groups and lanes, then the
/// 4x4 -> 3x3 transform.
#[target_feature(enable = "avx512f")]
fn finish_weight(parts: &[Part], s: Conv2dShape, dw: &mut [f32], db: Option<&mut [f32]>) {
    let tv = s.h / 8;
    let nq = XI * tv;
    let sum = |pick: &dyn Fn(&Part) -> __m512| {
        let mut v = _mm512_setzero_ps();
        for p in parts {
            v = _mm512_add_ps(v, pick(p));
        }
        v
    };
    for o in 0..s.cout {
        for c in 0..s.cin {
            let base = (o * s.cin + c) * nq;
            let mut sp = [0f32; XI];
            for (xi, sp) in sp.iter_mut().enumerate() {
                let mut v = _mm512_setzero_ps();
                for g in 0..tv {
                    v = _mm512_add_ps(v, sum(&|p| p.0[base + xi * tv + g]));
                }
                *sp = _mm512_reduce_add_ps(v);
            }
            dw[(o * s.cin + c) * 9..][..9].copy_from_slice(&weight_grad_transform(&sp));
        }
    }
    if let Some(db) = db {
        for (o, d) in db.iter_mut().enumerate() {
            *d = _mm512_reduce_add_ps(sum(&|p| p.1[o]));
        }
    }
}

/// Calls `$f::<O, C>($args)` for the weight-gradient tile `(o, c)` ([`wg_rows`], [`wg_cols`]).
macro_rules! wg_tiles {
    ($f:ident, $oc:expr, ($($args:expr),*)) => {
        match $oc {
            (1, 1) => $f::<1, 1>($($args),*),
            (1, 2) => $f::<1, 2>($($args),*),
            (1, 3) => $f::<1, 3>($($args),*),
            (1, 4) => $f::<1, 4>($($args),*),
            (1, 5) => $f::<1, 5>($($args),*),
            (1, 6) => $f::<1, 6>($($args),*),
            (1, 7) => $f::<1, 7>($($args),*),
            (1, _) => $f::<1, 8>($($args),*),
            (2, 1) => $f::<2, 1>($($args),*),
            (2, 2) => $f::<2, 2>($($args),*),
            (2, 3) => $f::<2, 3>($($args),*),
            (2, 4) => $f::<2, 4>($($args),*),
            (2, 5) => $f::<2, 5>($($args),*),
            (2, 6) => $f::<2, 6>($($args),*),
            (2, 7) => $f::<2, 7>($($args),*),
            (2, _) => $f::<2, 8>($($args),*),
            (3, 1) => $f::<3, 1>($($args),*),
            (3, 2) => $f::<3, 2>($($args),*),
            (3, 3) => $f::<3, 3>($($args),*),
            (3, _) => $f::<3, 4>($($args),*),
            (4, 1) => $f::<4, 1>($($args),*),
            (4, 2) => $f::<4, 2>($($args),*),
            (4, 3) => $f::<4, 3>($($args),*),
            (4, _) => $f::<4, 4>($($args),*),
            (5, 1) => $f::<5, 1>($($args),*),
            (5, _) => $f::<5, 2>($($args),*),
            (6, 1) => $f::<6, 1>($($args),*),
            (6, _) => $f::<6, 2>($($args),*),
            (7, 1) => $f::<7, 1>($($args),*),
            (7, _) => $f::<7, 2>($($args),*),
            (_, 1) => $f::<8, 1>($($args),*),
            _ => $f::<8, 2>($($args),*),
        }
    };
}

/// Output channels per weight-gradient tile for `ol` output channels left and `cin` input
/// channels: tiles of at most 8 x 2, 4 x 4 or 2 x 8 channel pairs (16 accumulators).
fn wg_rows(ol: usize, cin: usize) -> usize {
    if cin <= 2 {
        ol.min(8)
    } else if ol <= 2 {
        ol
    } else {
        ol.min(4)
    }
}

/// Input channels per weight-gradient tile of `ob` output channels.
fn wg_cols(ob: usize) -> usize {
    if ob <= 2 {
        8
    } else if ob <= 4 {
        4
    } else {
        2
    }
}

/// Per-lane partial sums `(S', db)` over the `s.n` samples of one chunk,
/// `S'[(o * cin + c) * nq + q]`. A block of `nb` samples is transformed into `V[q * vs + k * cin + c]` and
/// `P'[q * ps + k * cout + o]`: the vectors of one element `q`, which every channel-pair
/// tile of `q` reads, lie together (in L1 while those tiles run). The strides are padded by
/// one vector (`vs = nb * cin + 1`, `ps = nb * cout + 1`): at `nb * cin = 64` (8 samples of 8
/// channels) a plane's 16 transformed vectors would otherwise be 4 KiB apart, all in one
/// L1 set (measured at 8 -> 8, batch 64: 75 us unpadded, 52 us padded).
#[target_feature(enable = "avx512f")]
unsafe fn weight_chunk(dy: &[f32], x: &[f32], s: Conv2dShape) -> Part {
    let (hw, tv) = (s.h * s.w, s.h / 8);
    let nq = XI * tv;
    assert!(x.len() == s.n * s.cin * hw && dy.len() == s.n * s.cout * hw);
    let mut sacc = zeroed(s.cout * s.cin * nq);
    let mut db = zeroed(s.cout);
    for n in 0..s.n {
        for (o, d) in db.iter_mut().enumerate() {
            for k in 0..s.h / 2 {
                // SAFETY: ((n * cout + o) * h / 2 + k) * 16 + 16 <= dy.len().
                *d = _mm512_add_ps(*d, unsafe { _mm512_loadu_ps(dy.as_ptr().add((n * s.cout + o) * hw + k * L)) });
            }
        }
    }
    let per_sample = (s.cin + s.cout) * nq * std::mem::size_of::<__m512>();
    let nb = (WEIGHT_BLOCK_BYTES / per_sample).clamp(1, s.n.max(1));
    let (vn, pn) = ((nb * s.cin + 1) * nq, (nb * s.cout + 1) * nq);
    with_scratch(vn + pn, |buf| {
        let (v, p) = buf.split_at_mut(vn);
        // SAFETY: as weight_chunk's contract; v and p hold vn and pn vectors.
        unsafe { weight_blocks(dy, x, s, nb, v, p, &mut sacc) }
    });
    (sacc, db)
}

/// [`weight_chunk`]'s sample blocks of `nb` with the scratch `v` and `p`, into `sacc`.
#[target_feature(enable = "avx512f")]
unsafe fn weight_blocks(
    dy: &[f32],
    x: &[f32],
    s: Conv2dShape,
    nb: usize,
    v: &mut [__m512],
    p: &mut [__m512],
    sacc: &mut [__m512],
) {
    let (hw, tv) = (s.h * s.w, s.h / 8);
    let nq = XI * tv;
    assert!(v.len() == (nb * s.cin + 1) * nq && p.len() == (nb * s.cout + 1) * nq);
    let mut n0 = 0;
    while n0 < s.n {
        let n1 = (n0 + nb).min(s.n);
        for n in n0..n1 {
            let k = n - n0;
            for c in 0..s.cin {
                // SAFETY: plane (n, c) inside x; slot (k, c) inside v.
                unsafe {
                    input_transform(
                        x.as_ptr().add((n * s.cin + c) * hw),
                        s.h,
                        v.as_mut_ptr().add(k * s.cin + c),
                        nb * s.cin + 1,
                    )
                };
            }
            for o in 0..s.cout {
                // SAFETY: plane (n, o) inside dy; slot (k, o) inside p.
                unsafe {
                    grad_transform(
                        dy.as_ptr().add((n * s.cout + o) * hw),
                        s.h,
                        p.as_mut_ptr().add(k * s.cout + o),
                        nb * s.cout + 1,
                    )
                };
            }
        }
        for q in 0..nq {
            let mut o0 = 0;
            while o0 < s.cout {
                let mut c0 = 0;
                let ob = wg_rows(s.cout - o0, s.cin);
                while c0 < s.cin {
                    let cb = (s.cin - c0).min(wg_cols(ob));
                    // SAFETY: o0 + ob <= cout, c0 + cb <= cin, q < nq; n1 - n0 samples in v, p.
                    unsafe { wg_tiles!(wg_tile, (ob, cb), (p, v, s, nb, n1 - n0, q, o0, c0, sacc)) };
                    c0 += cb;
                }
                o0 += ob;
            }
        }
        n0 = n1;
    }
}

/// `S'[o][c][q] += sum_{k < nk} P'[q][k][o] V[q][k][c]` for `o in o0..o0+O`, `c in c0..c0+C`
/// (`nb` the block's capacity, `nk` its samples; layout in [`weight_chunk`]).
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn wg_tile<const O: usize, const C: usize>(
    p: &[__m512],
    v: &[__m512],
    s: Conv2dShape,
    nb: usize,
    nk: usize,
    q: usize,
    o0: usize,
    c0: usize,
    sacc: &mut [__m512],
) {
    let nq = XI * s.h / 8;
    assert!(o0 + O <= s.cout && c0 + C <= s.cin && q < nq && nk <= nb);
    let (vs, ps) = (nb * s.cin + 1, nb * s.cout + 1);
    assert!(p.len() >= ps * nq && v.len() >= vs * nq && sacc.len() == s.cout * s.cin * nq);
    let at = |o: usize, c: usize| ((o0 + o) * s.cin + c0 + c) * nq + q;
    let mut acc = [[_mm512_setzero_ps(); C]; O];
    for o in 0..O {
        for c in 0..C {
            acc[o][c] = sacc[at(o, c)];
        }
    }
    let (pb, vb) = (p.as_ptr(), v.as_ptr());
    for k in 0..nk {
        let mut vv = [_mm512_setzero_ps(); C];
        for c in 0..C {
            // SAFETY: q * vs + k * cin + c0 + c < nq * vs (asserted).
            vv[c] = unsafe { *vb.add(q * vs + k * s.cin + c0 + c) };
        }
        for o in 0..O {
            // SAFETY: q * ps + k * cout + o0 + o < nq * ps (asserted).
            let pv = unsafe { *pb.add(q * ps + k * s.cout + o0 + o) };
            for c in 0..C {
                acc[o][c] = _mm512_fmadd_ps(pv, vv[c], acc[o][c]);
            }
        }
    }
    for o in 0..O {
        for c in 0..C {
            sacc[at(o, c)] = acc[o][c];
        }
    }
}
