//! FFT circular conv2d for `f32` on 8x8 lattices, any odd kernel `k <= 7`, samples as the
//! 16 lanes of an `__m512`, AVX-512F (chosen at run time, like [`super::conv2d_winograd`];
//! `LATFLOW_NO_FFT=1` or `LATFLOW_NO_AVX512=1` turn it off). Same functions as
//! [`super::conv2d::reference`]; the tests compare against it with the bound derived below
//! ([`F32_FFT_TOL_PER_DEPTH`], [`FFT_GROWTH`]).
//!
//! # The convolution theorem on the torus
//!
//! With the 2-D DFT `X(k) = sum_n x(n) e^{-2 pi i k.n / 8}` (`k, n` in `Z_8^2`) and its inverse
//! `x(n) = 1/64 sum_k X(k) e^{+2 pi i k.n / 8}`, a circular convolution is a product:
//! `(g * x)(n) = sum_d g(d) x(n - d)` has the transform `G(k) X(k)`. The reference's
//! cross-correlation `y[i,j] = sum_{a,e} w[a,e] x[i+a-p, j+e-p]` is the convolution with the
//! kernel `g(p - a, p - e) = w[a, e]` (`p = k/2`, indices mod 8), so
//!
//! - forward: `Y_o(k) = sum_c G_oc(k) X_c(k)`, `G_oc(k) = sum_{a,e} w[o,c,a,e]
//!   e^{-2 pi i (k1 (p-a) + k2 (p-e)) / 8}` (computed in f64 once per call);
//! - input gradient (the adjoint): `dX_c(k) = sum_o conj(G_oc(k)) dY_o(k)`, which is the forward
//!   pass with the flipped kernel and the channels swapped (`flipped_weights`), as in the other kernels;
//! - weight gradient: `dw[o,c,a,e] = sum_n R_n(a - p, e - p)` with the circular
//!   cross-correlation `R(d) = sum_i dy(i) x(i + d) = 1/64 sum_k X(k) conj(DY(k)) e^{+2 pi i k.d / 8}`:
//!   accumulate `S_oc(k) = sum_n X_c(k) conj(DY_o(k))` over the samples, then take the 9 (or
//!   `k^2`) wanted values of its inverse DFT in f64.
//!
//! Any kernel up to 7x7 costs the same: the products run over the 64 frequencies whatever `k`.
//!
//! # The real 8x8 DFT (Cooley & Tukey, Math. Comp. 19 (1965) 297; radix 2)
//!
//! A real plane's spectrum is conjugate-symmetric, `X(-k) = conj X(k)`: 64 real degrees of
//! freedom, the 4 real values at `k in {0, 4}^2` and 30 independent complex ones. Rows first:
//! a real 8-point DFT per row (`rdft8`: `X_0, X_4` real, `X_1, X_2, X_3` complex; 20 additions
//! and 2 multiplications by `sqrt(1/2)`, the only twiddle), then along the columns: real
//! 8-point DFTs of the row frequencies 0 and 4, complex 8-point DFTs (`cdft8`, two radix-2
//! DFT4 halves and the twiddles `W^1, W^2 = -i, W^3`: 52 additions, 4 multiplications) of the
//! row frequencies 1, 2, 3: 388 flops per plane. The inverse runs the same steps backwards
//! (`rinv8`; the complex inverse is the forward one on swapped real and imaginary parts,
//! `IDFT(z) = swap(DFT(swap z))`), with the normalisation folded into the weights: it takes
//! the slots scaled by 1/64 (the 4 real ones) or 1/32 (the complex ones, which stand for
//! `k` and `-k`).
//!
//! Slots (64 vectors per plane): `0..4` the real frequencies `(k1, k2) = (0,0), (4,0), (0,4),
//! (4,4)`; then 30 pairs (real part, imaginary part) at `4 + 2q, 5 + 2q`: `q = 0..3` the
//! frequencies `(1..3, 0)`, `q = 3..6` `(1..3, 4)`, `q = 6 + 8 (k2 - 1) + k1` for `k2 = 1..3`,
//! `k1 = 0..7` ([`slot_pair_freq`]). `k1` is the row (first lattice axis) frequency.
//!
//! Per channel pair and sample the products cost `4 + 30 * 4 = 124` multiply-adds (direct
//! 3x3: 576, Winograd F(2x2, 3x3): 256), plus one forward transform per input channel and one
//! inverse per output channel (388 flops each, shared by all channel pairs).
//!
//! # Layout: samples as lanes
//!
//! 16 samples at a time (the last group padded with zero lanes): each channel plane of the 16
//! samples is turned into 64 vectors, one per site, lane `l` = sample `l`, by four AVX-512
//! 16x16 transposes (64 shuffles each, `transpose16`). Every butterfly is then a plain
//! vertical add, subtract or multiply: no shuffles inside the transforms. The products are
//! per frequency slot a small complex matrix-vector product with broadcast scalar weights,
//! register tiles of up to 4 output channels x 2 complex slots (16 accumulators). The
//! weight gradient keeps a block of transformed samples in L2 and accumulates per lane in
//! tiles of 4 x 2 channel pairs per slot; chunks of the threaded version are fixed
//! (multiples of 16 samples, independent of the thread count) and added in chunk order.
//!
//! # Rounding error (the tolerance the tests use)
//!
//! `u = 2^-24`. The FFT mixes all 64 sites, so its natural error bound is in norms of whole
//! planes, not of the 3x3 window. Following Higham (Accuracy and Stability of Numerical
//! Algorithms, 2nd ed., Thm. 24.2): each butterfly level maps a vector to one with at most
//! `sqrt 2` times its 2-norm and rounds each component with relative error `u` (the twiddle
//! `sqrt(1/2)`, rounded to f32, adds `u` on the levels that multiply), so a transform of
//! depth `d` (levels of roundings on the longest path: 8 for the forward 8x8 transform, 3 + 1
//! per dimension, and 8 for the inverse) has `||F_computed - F||_2 <= ~d u ||F||_2`. Then, with
//! Parseval (`||X||_2 = 8 ||x||_2`) and `|G_oc(k)| <= ||w_oc||_1`, for one output plane
//!
//! `||y_fft - y||_2 <= gamma_{2 cin + 18} * K * sum_c ||w_oc||_1 ||x_c||_2`
//!
//! (depth: forward transform 8, weights rounded once, the complex products `2 cin`
//! multiply-adds in sequence, inverse 8, bias 1; `K` collects the `sqrt 2` growth of the
//! componentwise (real, imaginary) rounding against the complex modulus in both passes).
//! A single site's error is at most the plane's 2-norm of the error. The weight gradient
//! the same way, with Cauchy-Schwarz over the frequencies:
//!
//! `|dw_fft - dw| <= gamma_{ceil(n/16) + 31} * K * sum_n ||x_{n,c}||_2 ||dy_{n,o}||_2`
//!
//! (two forward transforms 16, the complex product 2, `ceil(n / 16)` groups summed per lane,
//! up to 8 chunks and 4 lane-reduction levels, 1 for the f64 inverse rounded to f32). The tests
//! take `gamma_d ~ d u` with a factor 2 of margin ([`F32_FFT_TOL_PER_DEPTH`] `= 2u` per depth)
//! and `K =` [`FFT_GROWTH`] `= 4`. Against the direct bound `gamma_{9 cin} sum |w| |x|` this
//! is wider (on uniform random data about 35x at 8 -> 8, by the same estimate). It is a
//! worst-case bound: the errors measured on uniform random data are ~1e-6 (1 -> 8) to 4e-6
//! (8 -> 8) against bounds of 2e-4 to 2.3e-3, and a single weight off by 1% of its kernel's
//! 1-norm already exceeds it (`fft_bound_is_tight_enough_to_catch_errors`); a wrong twiddle,
//! sign or slot gives errors of order `|y|`.

#![allow(unsafe_code)]

use std::arch::x86_64::*;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::conv2d_avx512::{act_grad16, leaky16, ActGrad};
pub use super::conv2d_shape::Pass;
use super::conv2d_shape::{flipped_weights, Conv2dShape};
use super::conv2d_simd::chunk_len;
use super::conv2d_winograd::{with_scratch, zeroed};

/// Lanes of one `__m512` of `f32`: 16 samples.
const L: usize = 16;
/// Sites of the 8x8 plane, and real spectral slots per plane.
const S: usize = 64;
/// Slots holding the 4 real frequencies.
const NR: usize = 4;
/// Complex frequency pairs (slots `NR + 2q`, `NR + 2q + 1`).
const NP: usize = 30;

/// Relative error per unit of rounding depth the tests allow, against the FFT magnitude of
/// the module docs: `2 u` with `u = 2^-24` (`gamma_d <= 2 d u` for the depths here).
pub const F32_FFT_TOL_PER_DEPTH: f64 = 2.0 / (1u64 << 24) as f64;

/// The growth factor `K` of the module docs' bound (componentwise rounding against the
/// complex modulus, `sqrt 2` per transform direction, squared).
pub const FFT_GROWTH: f64 = 4.0;

/// Whether the CPU has AVX-512F (and `LATFLOW_NO_AVX512` is unset) and `LATFLOW_NO_FFT`
/// is unset (checked once).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| super::cpu_features::avx512_available() && std::env::var_os("LATFLOW_NO_FFT").is_none())
}

/// Whether this path computes shape `s`: an 8x8 lattice, odd kernel up to 7, at least one
/// channel in and out.
pub fn fits(s: &Conv2dShape) -> bool {
    s.h == 8 && s.w == 8 && s.k % 2 == 1 && s.k <= 7 && s.cin > 0 && s.cout > 0
}

/// Flops of one real 8x8 transform (forward or inverse): 10 real 8-point DFTs of 22 and
/// 3 complex ones of 56.
const TRANSFORM_FLOPS: f64 = 10.0 * 22.0 + 3.0 * 56.0;

/// Floating-point operations one call of `pass` really executes (fused multiply-adds counted
/// as 2), for the benchmark's "true" GFLOP/s: per sample, `2 * 124 cin cout` for the products
/// and 388 per transform (`cin + cout` of them); the zero lanes of a last partial group of
/// 16 samples count too (they are computed).
pub fn flops(s: &Conv2dShape, pass: Pass) -> f64 {
    let lanes = (s.n.div_ceil(L) * L) as f64;
    let (ci, co) = (s.cin as f64, s.cout as f64);
    let _ = pass; // every pass: (cin + cout) transforms and cin * cout products
    lanes * (2.0 * 124.0 * ci * co + TRANSFORM_FLOPS * (ci + co))
}

/// `(k1, k2)` of complex slot pair `q` (slots `4 + 2q`, `5 + 2q`): see the module docs.
pub const fn slot_pair_freq(q: usize) -> (usize, usize) {
    if q < 3 {
        (q + 1, 0)
    } else if q < 6 {
        (q - 2, 4)
    } else {
        ((q - 6) % 8, 1 + (q - 6) / 8)
    }
}

/// `(k1, k2)` of the real slots `0..4`.
pub const REAL_FREQ: [(usize, usize); NR] = [(0, 0), (4, 0), (0, 4), (4, 4)];

// ---------------------------------------------------------------------------------
// the transforms, written once for f64 (tests) and for __m512 (the kernels)

/// The 8-point and 8x8 transforms over a value type with `add`, `sub` and `mul(v, constant)`
/// and the constants `S2 = sqrt(1/2)`, `NS2 = -sqrt(1/2)` in scope.
macro_rules! transforms {
    ($v:ty, $(#[$m:meta])*) => {
        /// Real 8-point DFT: `[X0, X4, Re X1, Im X1, Re X2, Im X2, Re X3, Im X3]`,
        /// `X_k = sum_n x_n e^{-2 pi i k n / 8}`.
        $(#[$m])*
        fn rdft8(x: [$v; 8]) -> [$v; 8] {
            let (a04, s04) = (add(x[0], x[4]), sub(x[0], x[4]));
            let (a26, d26) = (add(x[2], x[6]), sub(x[2], x[6]));
            let (a15, p) = (add(x[1], x[5]), sub(x[1], x[5]));
            let (a37, q) = (add(x[3], x[7]), sub(x[3], x[7]));
            let (e0, e2) = (add(a04, a26), sub(a04, a26));
            let (o0, no2) = (add(a15, a37), sub(a37, a15));
            // W = sqrt(1/2) (1 - i): W O_1 = s((p - q) - i (p + q)), W^3 O_3 = s((q - p) - i (p + q))
            let pm = mul(sub(p, q), S2);
            let nm = mul(add(p, q), NS2);
            [add(e0, o0), sub(e0, o0), add(s04, pm), sub(nm, d26), e2, no2, sub(s04, pm), add(d26, nm)]
        }

        /// Inverse of `rdft8` up to the scale 4, from `[X0 / 2, X4 / 2, Re X1, Im X1, ..]`:
        /// `4 x_n = X0/2 + (-1)^n X4/2 + Re sum_{k=1..3} X_k e^{2 pi i k n / 8}` (= `x_n` times 4).
        $(#[$m])*
        fn rinv8(h: [$v; 8]) -> [$v; 8] {
            let (pp, mm) = (add(h[0], h[1]), sub(h[0], h[1]));
            let (a2, b2) = (add(pp, h[4]), sub(pp, h[4])); // 2(x0 + x4), 2(x2 + x6)
            let (c2, d2) = (sub(mm, h[5]), add(mm, h[5])); // 2(x1 + x5), 2(x3 + x7)
            let s04 = add(h[2], h[6]); // 2(x0 - x4)
            let d26 = sub(h[7], h[3]); // 2(x2 - x6)
            let (c, d) = (sub(h[2], h[6]), add(h[3], h[7]));
            let p2 = mul(sub(c, d), S2); // 2(x1 - x5)
            let q2n = mul(add(c, d), S2); // -2(x3 - x7)
            [
                add(a2, s04),
                add(c2, p2),
                add(b2, d26),
                sub(d2, q2n),
                sub(a2, s04),
                sub(c2, p2),
                sub(b2, d26),
                add(d2, q2n),
            ]
        }

        /// Complex 8-point DFT of `(re, im)`: two radix-2 DFT4 halves and the twiddles.
        $(#[$m])*
        fn cdft8(re: [$v; 8], im: [$v; 8]) -> ([$v; 8], [$v; 8]) {
            // DFT4 of (z_b, z_{b+2}, z_{b+4}, z_{b+6}): (Y0, Y1, Y2, Y3) as (re, im)
            let dft4 = |b: usize| {
                let (t0r, t0i) = (add(re[b], re[b + 4]), add(im[b], im[b + 4]));
                let (t1r, t1i) = (sub(re[b], re[b + 4]), sub(im[b], im[b + 4]));
                let (t2r, t2i) = (add(re[b + 2], re[b + 6]), add(im[b + 2], im[b + 6]));
                let (t3r, t3i) = (sub(re[b + 2], re[b + 6]), sub(im[b + 2], im[b + 6]));
                // Y1 = t1 - i t3, Y3 = t1 + i t3
                (
                    [add(t0r, t2r), add(t1r, t3i), sub(t0r, t2r), sub(t1r, t3i)],
                    [add(t0i, t2i), sub(t1i, t3r), sub(t0i, t2i), add(t1i, t3r)],
                )
            };
            let (er, ei) = dft4(0);
            let (or, oi) = dft4(1);
            // W^1 O_1 = s(a + b, b - a); W^3 O_3 = s(b - a, -(a + b))
            let (w1r, w1i) = (mul(add(or[1], oi[1]), S2), mul(sub(oi[1], or[1]), S2));
            let (v3, u3) = (mul(sub(oi[3], or[3]), S2), mul(add(or[3], oi[3]), S2));
            (
                [
                    add(er[0], or[0]),
                    add(er[1], w1r),
                    add(er[2], oi[2]),
                    add(er[3], v3),
                    sub(er[0], or[0]),
                    sub(er[1], w1r),
                    sub(er[2], oi[2]),
                    sub(er[3], v3),
                ],
                [
                    add(ei[0], oi[0]),
                    add(ei[1], w1i),
                    sub(ei[2], or[2]),
                    sub(ei[3], u3),
                    sub(ei[0], oi[0]),
                    sub(ei[1], w1i),
                    add(ei[2], or[2]),
                    add(ei[3], u3),
                ],
            )
        }

        /// Real 8x8 DFT in place: sites `i * 8 + j` in, slots (module docs) out, unscaled.
        #[allow(dead_code)] // the vector kernels transform with fft2d_to / fft2d_from
        $(#[$m])*
        pub(super) fn fft2d(a: &mut [$v; 64]) {
            let r = fft2d_rows(|s| a[s]);
            fft2d_columns(&r, |t, v| a[t] = v);
        }

        /// [`fft2d`] of the sites `a` with slot `t` handed to `put(t, X_t)` (straight into
        /// a strided buffer: no plane of slots to copy).
        #[allow(dead_code)] // the f64 transforms do not need it
        $(#[$m])*
        pub(super) fn fft2d_to(a: &[$v; 64], put: impl FnMut(usize, $v)) {
            fft2d_from(|s| a[s], put);
        }

        /// [`fft2d`] of the sites `get(s)`, `s = 0..64`, with slot `t` handed to `put(t, X_t)`:
        /// the sites read where they lie (no plane to copy them into first), each once.
        #[allow(dead_code)] // the f64 transforms do not need it
        $(#[$m])*
        pub(super) fn fft2d_from(get: impl Fn(usize) -> $v, put: impl FnMut(usize, $v)) {
            let r = fft2d_rows(get);
            fft2d_columns(&r, put);
        }

        /// The row pass of [`fft2d`]: `rdft8` of each lattice row of the sites `get(s)`.
        $(#[$m])*
        fn fft2d_rows(get: impl Fn(usize) -> $v) -> [[$v; 8]; 8] {
            std::array::from_fn(|i| rdft8(std::array::from_fn(|j| get(8 * i + j))))
        }

        /// The column pass of [`fft2d`] on the row spectra `r`, slot `t` to `put(t, X_t)`.
        $(#[$m])*
        fn fft2d_columns(r: &[[$v; 8]; 8], mut put: impl FnMut(usize, $v)) {
            let col = |t: usize| [r[0][t], r[1][t], r[2][t], r[3][t], r[4][t], r[5][t], r[6][t], r[7][t]];
            let c0 = rdft8(col(0));
            let c4 = rdft8(col(1));
            put(0, c0[0]);
            put(1, c0[1]);
            put(2, c4[0]);
            put(3, c4[1]);
            for j in 0..6 {
                put(4 + j, c0[2 + j]);
                put(10 + j, c4[2 + j]);
            }
            for k2 in 1..4 {
                let (zr, zi) = cdft8(col(2 * k2), col(2 * k2 + 1));
                for k1 in 0..8 {
                    let q = 6 + 8 * (k2 - 1) + k1;
                    put(NR + 2 * q, zr[k1]);
                    put(NR + 2 * q + 1, zi[k1]);
                }
            }
        }

        /// Inverse of [`fft2d`] in place, from the slots scaled by 1/64 (real) and 1/32
        /// (pairs): exactly `x` then.
        $(#[$m])*
        pub(super) fn ifft2d(a: &mut [$v; 64]) {
            let cols = ifft2d_columns(a);
            ifft2d_rows(&cols, |s, v| a[s] = v);
        }

        /// [`ifft2d`] of the slots `a` with site `s` handed to `put(s, x_s)` (straight to where
        /// it is stored: no plane of sites to copy).
        #[allow(dead_code)] // the f64 transforms do not need it
        $(#[$m])*
        pub(super) fn ifft2d_to(a: &[$v; 64], put: impl FnMut(usize, $v)) {
            let cols = ifft2d_columns(a);
            ifft2d_rows(&cols, put);
        }

        /// The column pass of [`ifft2d`]: per lattice row `i`, the eight values `rinv8` takes
        /// (`cols[j][i]`).
        $(#[$m])*
        fn ifft2d_columns(a: &[$v; 64]) -> [[$v; 8]; 8] {
            let c0 = rinv8([a[0], a[1], a[4], a[5], a[6], a[7], a[8], a[9]]);
            let c4 = rinv8([a[2], a[3], a[10], a[11], a[12], a[13], a[14], a[15]]);
            let mut cr = [[a[0]; 8]; 3];
            let mut ci = [[a[0]; 8]; 3];
            for k2 in 1..4 {
                let mut zr = [a[0]; 8];
                let mut zi = [a[0]; 8];
                for k1 in 0..8 {
                    let q = 6 + 8 * (k2 - 1) + k1;
                    zr[k1] = a[NR + 2 * q];
                    zi[k1] = a[NR + 2 * q + 1];
                }
                // IDFT(z) = swap(DFT(swap z))
                let (yi, yr) = cdft8(zi, zr);
                cr[k2 - 1] = yr;
                ci[k2 - 1] = yi;
            }
            [c0, c4, cr[0], ci[0], cr[1], ci[1], cr[2], ci[2]]
        }

        /// The row pass of [`ifft2d`] on [`ifft2d_columns`]' output, site `s` to `put(s, x_s)`.
        $(#[$m])*
        fn ifft2d_rows(cols: &[[$v; 8]; 8], mut put: impl FnMut(usize, $v)) {
            for i in 0..8 {
                let row = rinv8(std::array::from_fn(|j| cols[j][i]));
                for (j, v) in row.into_iter().enumerate() {
                    put(8 * i + j, v);
                }
            }
        }
    };
}

/// The transforms in f64, one value per site (for the tests; the same butterflies as the
/// vector kernels).
mod scalar {
    use super::NR;
    const S2: f64 = std::f64::consts::FRAC_1_SQRT_2;
    const NS2: f64 = -std::f64::consts::FRAC_1_SQRT_2;
    fn add(a: f64, b: f64) -> f64 {
        a + b
    }
    fn sub(a: f64, b: f64) -> f64 {
        a - b
    }
    fn mul(a: f64, c: f64) -> f64 {
        a * c
    }
    transforms!(f64, #[inline]);
}

/// The transforms on vectors of 16 samples.
mod vector {
    use super::NR;
    use std::arch::x86_64::*;
    const S2: f32 = std::f32::consts::FRAC_1_SQRT_2;
    const NS2: f32 = -std::f32::consts::FRAC_1_SQRT_2;
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn add(a: __m512, b: __m512) -> __m512 {
        _mm512_add_ps(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn sub(a: __m512, b: __m512) -> __m512 {
        _mm512_sub_ps(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn mul(a: __m512, c: f32) -> __m512 {
        _mm512_mul_ps(a, _mm512_set1_ps(c))
    }
    transforms!(__m512, #[inline] #[target_feature(enable = "avx512f")]);
}

/// The transforms on vectors of 8 `f64` (the weight gradient's final inverse transform, 8
/// channel pairs at a time: the same operations as [`scalar`], lane by lane).
#[allow(dead_code)] // the forward transforms are not used in f64 vectors
mod vector64 {
    use super::NR;
    use std::arch::x86_64::*;
    const S2: f64 = std::f64::consts::FRAC_1_SQRT_2;
    const NS2: f64 = -std::f64::consts::FRAC_1_SQRT_2;
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn add(a: __m512d, b: __m512d) -> __m512d {
        _mm512_add_pd(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn sub(a: __m512d, b: __m512d) -> __m512d {
        _mm512_sub_pd(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn mul(a: __m512d, c: f64) -> __m512d {
        _mm512_mul_pd(a, _mm512_set1_pd(c))
    }
    transforms!(__m512d, #[inline] #[target_feature(enable = "avx512f")]);
}

/// The real 8x8 DFT of one plane (sites `i * 8 + j`) in f64, the same butterflies as the
/// vector kernels: slots as in the module docs, unscaled (for tests).
pub fn dft8x8_f64(x: &[f64; S]) -> [f64; S] {
    let mut a = *x;
    scalar::fft2d(&mut a);
    a
}

/// The inverse of [`dft8x8_f64`] from slots scaled by [`slot_scale`] (for tests).
pub fn idft8x8_f64(spec: &[f64; S]) -> [f64; S] {
    let mut a = *spec;
    scalar::ifft2d(&mut a);
    a
}

/// The factor the inverse transform expects on slot `t`: 1/64 on the real slots, 1/32 on the
/// complex pairs (which stand for `k` and `-k`).
pub fn slot_scale(t: usize) -> f64 {
    if t < NR {
        1.0 / 64.0
    } else {
        1.0 / 32.0
    }
}

// ---------------------------------------------------------------------------------
// transposes

/// 16x16 transpose of `r` (rows in, columns out): unpack 32-bit and 64-bit pairs, then two
/// rounds of 128-bit block shuffles (64 shuffles).
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose16(r: &mut [__m512; L]) {
    let mut t = [_mm512_setzero_ps(); L];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // u[4g + j], block b: column 4b + j of rows 4g .. 4g + 4
    let mut u = [_mm512_setzero_ps(); L];
    for g in 0..4 {
        let pd = |v: __m512| _mm512_castps_pd(v);
        let (a, b, c, d) = (pd(t[4 * g]), pd(t[4 * g + 2]), pd(t[4 * g + 1]), pd(t[4 * g + 3]));
        u[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
        u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
    for j in 0..4 {
        let v0 = _mm512_shuffle_f32x4::<0x88>(u[j], u[4 + j]);
        let w0 = _mm512_shuffle_f32x4::<0xDD>(u[j], u[4 + j]);
        let v1 = _mm512_shuffle_f32x4::<0x88>(u[8 + j], u[12 + j]);
        let w1 = _mm512_shuffle_f32x4::<0xDD>(u[8 + j], u[12 + j]);
        r[j] = _mm512_shuffle_f32x4::<0x88>(v0, v1);
        r[8 + j] = _mm512_shuffle_f32x4::<0xDD>(v0, v1);
        r[4 + j] = _mm512_shuffle_f32x4::<0x88>(w0, w1);
        r[12 + j] = _mm512_shuffle_f32x4::<0xDD>(w0, w1);
    }
}

/// The planes of `nl <= 16` samples (`src + l * stride`, 64 floats each) as 64 site vectors
/// (lane `l` = sample `l`, zero lanes from `nl` on).
///
/// # Safety
/// `src + l * stride .. + 64` readable for `l < nl`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load_planes(src: *const f32, stride: usize, nl: usize, out: &mut [__m512]) {
    // SAFETY: the caller's contract.
    unsafe { load_planes_act(src, None, stride, nl, out) }
}

/// [`load_planes`] of `g act'(y)` when `act = Some((y, act))` (`y` laid out as `src`), of
/// `src` otherwise.
///
/// # Safety
/// As [`load_planes`], and the same for `y`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load_planes_act(
    src: *const f32,
    act: Option<(*const f32, ActGrad)>,
    stride: usize,
    nl: usize,
    out: &mut [__m512],
) {
    assert!(out.len() >= S && nl <= L);
    // SAFETY (every load): sample l < nl, its plane is readable (contract).
    let load = |at: usize| unsafe {
        let g = _mm512_loadu_ps(src.add(at));
        match act {
            None => g,
            Some((y, a)) => act_grad16(g, _mm512_loadu_ps(y.add(at)), a),
        }
    };
    for b in 0..4 {
        let mut r = [_mm512_setzero_ps(); L];
        if nl == L {
            // a full group: constant trip count, the rows stay in registers
            for (l, r) in r.iter_mut().enumerate() {
                *r = load(l * stride + b * L);
            }
        } else {
            for (l, r) in r.iter_mut().enumerate().take(nl) {
                *r = load(l * stride + b * L);
            }
        }
        transpose16(&mut r);
        for j in 0..L {
            out[b * L + j] = r[j];
        }
    }
}

/// The inverse of [`load_planes`]: the first `nl` lanes of 64 site vectors into the planes
/// `dst + l * stride`, through LeakyReLU with slope `leaky` when given (applied as the vectors
/// are loaded for the transpose: `y > 0 ? y : slope y`, the values of `Unary::LeakyRelu`).
///
/// # Safety
/// `dst + l * stride .. + 64` writable for `l < nl`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn store_planes(v: &[__m512], dst: *mut f32, stride: usize, nl: usize, leaky: Option<f32>) {
    assert!(v.len() >= S && nl <= L);
    let act = |v: __m512| match leaky {
        None => v,
        Some(slope) => leaky16(v, slope),
    };
    for b in 0..4 {
        let mut r: [__m512; L] = std::array::from_fn(|j| act(v[b * L + j]));
        transpose16(&mut r);
        if nl == L {
            for (l, r) in r.iter().enumerate() {
                // SAFETY: sample l < nl: its plane is writable (contract).
                unsafe { _mm512_storeu_ps(dst.add(l * stride + b * L), *r) };
            }
        } else {
            for (l, r) in r.iter().enumerate().take(nl) {
                // SAFETY: as above.
                unsafe { _mm512_storeu_ps(dst.add(l * stride + b * L), *r) };
            }
        }
    }
}

/// Bytes of vector buffers a thread keeps for reuse ([`recycled`]).
const RECYCLE_BYTES: usize = 64 << 20;

thread_local! {
    /// Free vector buffers of this thread and their bytes.
    static FREE: std::cell::RefCell<(Vec<Vec<__m512>>, usize)> = const { std::cell::RefCell::new((Vec::new(), 0)) };
}

/// A buffer of `n` vectors with unspecified (initialized) contents: one this thread handed
/// to [`recycle`] when it has one of that length, else a zeroed allocation. The input
/// spectra kept from each forward pass of a training step and the weight gradient's
/// accumulators are such buffers (zeroing them took ~5% of a phi^4 step at batch 1024).
fn recycled(n: usize) -> Vec<__m512> {
    let hit = FREE
        .try_with(|f| {
            let mut f = f.borrow_mut();
            let i = f.0.iter().rposition(|v| v.len() == n)?;
            f.1 -= n * std::mem::size_of::<__m512>();
            Some(f.0.swap_remove(i))
        })
        .ok()
        .flatten();
    hit.unwrap_or_else(|| zeroed(n))
}

/// Gives `v` to this thread's free list (dropped when the list is full).
fn recycle(v: Vec<__m512>) {
    let bytes = v.len() * std::mem::size_of::<__m512>();
    let _ = FREE.try_with(move |f| {
        let mut f = f.borrow_mut();
        if f.1 + bytes <= RECYCLE_BYTES {
            f.1 += bytes;
            f.0.push(v);
        }
    });
}

/// The 64 vectors at `v[..64]` as an array.
fn plane(v: &mut [__m512]) -> &mut [__m512; S] {
    (&mut v[..S]).try_into().unwrap()
}

// ---------------------------------------------------------------------------------
// weights

/// `(cos, sin)` of `2 pi m / 8`, `m = 0..8` (a table: per-tap trigonometric calls cost
/// ~90 us per call at 8 -> 8).
fn unit_roots() -> [(f64, f64); 8] {
    std::array::from_fn(|m| {
        let th = std::f64::consts::PI / 4.0 * m as f64;
        (th.cos(), th.sin())
    })
}

/// Entries of the per-thread cache of [`cached_weight_transform`] (cleared when full).
const WEIGHT_CACHE_ENTRIES: usize = 256;

/// [`weight_transform`] of `w` (the weights of a layer of shape `s`) or, when `flipped`, of
/// its flipped kernel (`flipped_weights(w, s)`, a layer of shape `cin <-> cout`: the input
/// gradient's), through a per-thread cache keyed by the shape, `flipped` and the exact bits
/// of `w` (a hash to find the entry, then a full comparison): the shards of a training step
/// call each layer with the same weights (16 shards of 64 samples at batch 1024), and the
/// transform costs about as much as the products of 16 samples at 8 -> 8. A hit neither
/// flips nor allocates; the hash runs 8 independent FNV-1a streams (one serial multiply
/// chain over 576 weights was ~1% of a phi^4 training step).
fn cached_weight_transform(w: &[f32], s: &Conv2dShape, flipped: bool) -> std::sync::Arc<Vec<f32>> {
    use std::collections::HashMap;
    use std::sync::Arc as Rc;
    type Cache = HashMap<u64, (Conv2dShape, bool, Vec<u32>, Rc<Vec<f32>>)>;
    thread_local! {
        static CACHE: std::cell::RefCell<Cache> = std::cell::RefCell::new(HashMap::new());
    }
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0100_0000_01b3;
    let mut lanes = [FNV_OFFSET; 8];
    let mut chunks = w.chunks_exact(8);
    for c in &mut chunks {
        for (h, v) in lanes.iter_mut().zip(c) {
            *h = (*h ^ v.to_bits() as u64).wrapping_mul(FNV_PRIME);
        }
    }
    let head = [s.cin, s.cout, s.k, usize::from(flipped), w.len()].map(|v| v as u32);
    let tail = chunks.remainder().iter().map(|v| v.to_bits());
    let h = lanes
        .iter()
        .flat_map(|h| [*h as u32, (*h >> 32) as u32])
        .chain(head)
        .chain(tail)
        .fold(FNV_OFFSET, |h, v| (h ^ v as u64).wrapping_mul(FNV_PRIME));
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if let Some((cs, cf, cw, wf)) = c.get(&h) {
            let same = cw.len() == w.len() && cw.iter().zip(w).fold(true, |eq, (a, b)| eq & (*a == b.to_bits()));
            if (cs.cin, cs.cout, cs.k, *cf) == (s.cin, s.cout, s.k, flipped) && same {
                return wf.clone();
            }
        }
        let wf = Rc::new(if flipped {
            weight_transform(&flipped_weights(w, s), &Conv2dShape { cin: s.cout, cout: s.cin, ..*s })
        } else {
            weight_transform(w, s)
        });
        if c.len() >= WEIGHT_CACHE_ENTRIES {
            c.clear();
        }
        c.insert(h, (*s, flipped, w.iter().map(|v| v.to_bits()).collect(), wf.clone()));
        wf
    })
}

/// The real `64 x k^2` matrix of [`weight_transform`], `m[t][a k + e]`: slot `t`'s real or
/// imaginary part of `c_t e^{-2 pi i (k1 (p - a) + k2 (p - e)) / 8}` (`c_t` = [`slot_scale`],
/// `p = k / 2`), from a table of unit roots; computed once per odd `k <= 7`.
fn slot_matrix(k: usize) -> &'static [f64] {
    static M: [OnceLock<Vec<f64>>; 4] = [const { OnceLock::new() }; 4];
    assert!(k % 2 == 1 && k <= 7, "conv2d_fft: kernel {k}");
    M[k / 2].get_or_init(|| {
        let (kk, p) = (k * k, (k / 2) as isize);
        let cs = unit_roots();
        let mut m = vec![0f64; S * kk];
        for (t, m) in m.chunks_mut(kk).enumerate() {
            let ((k1, k2), imag) =
                if t < NR { (REAL_FREQ[t], false) } else { (slot_pair_freq((t - NR) / 2), (t - NR) % 2 == 1) };
            for a in 0..k {
                for e in 0..k {
                    let ph = (k1 as isize * (p - a as isize) + k2 as isize * (p - e as isize)).rem_euclid(8) as usize;
                    let (co, si) = cs[ph];
                    m[a * k + e] = slot_scale(t) * if imag { -si } else { co };
                }
            }
        }
        m
    })
}

/// The spectral weights `c_t G_oc(slot t)` (`c_t` = [`slot_scale`]), computed in f64 and
/// rounded once, at `wf[(t * cin + c) * cout + o]`: the matrix [`slot_matrix`] applied to
/// every channel pair's `k^2` weights, 8 pairs at a time in the lanes of an f64 AVX-512
/// vector (the block's `k^2` weight vectors in registers, each slot's value a sum of fused
/// multiply-adds over the taps in order, rounded to f32 once). 64 `k^2` multiply-adds per
/// pair. Recomputed whenever the weights change: once per layer and thread in a training
/// step. Measured (2026-12-01, AMD EPYC dev box) as the time an 8 -> 8 forward call of 16
/// samples takes more when its weights change every call (a cache miss: this transform, the
/// cache's hashing and insertion) than with the same weights: 5.0-5.6 us with this sum
/// auto-vectorized on 4 lanes (the matrix built per call), against 9.6-9.9 us with the
/// separable per-pair complex sums it replaced. With the matrix built once and explicit
/// 8-lane blocks (2026-12-02, Zen 4, best of 5 x 20000 calls, one thread, a scratch timing loop
/// not kept): 8 -> 8 1.97 us
/// against 3.85 us, 8 -> 3 0.76 against 2.54, 1 -> 8 0.30 against 1.93, the same bits (test
/// `spectral_weights_are_the_scalar_sums`).
fn weight_transform(w: &[f32], s: &Conv2dShape) -> Vec<f32> {
    let (kk, np) = (s.k * s.k, s.cin * s.cout);
    assert_eq!(w.len(), np * kk);
    debug_assert!(available(), "conv2d_fft: spectral weights without AVX-512F");
    let m = slot_matrix(s.k);
    // wt[j][c cout + o] = w[o][c][j]
    let mut wt = vec![0f64; kk * np];
    for o in 0..s.cout {
        for c in 0..s.cin {
            for (j, &v) in w[(o * s.cin + c) * kk..][..kk].iter().enumerate() {
                wt[j * np + c * s.cout + o] = v as f64;
            }
        }
    }
    let mut wf = vec![0f32; S * np];
    // SAFETY: the FFT kernels run only where AVX-512F is available (`available`); the
    // lengths are those `spectral_block` asserts.
    unsafe {
        match kk {
            1 => spectral_block::<1>(m, &wt, np, &mut wf),
            9 => spectral_block::<9>(m, &wt, np, &mut wf),
            25 => spectral_block::<25>(m, &wt, np, &mut wf),
            _ => spectral_block::<49>(m, &wt, np, &mut wf),
        }
    }
    wf
}

/// `wf[t * np + p] = f32(sum_j m[t * KK + j] wt[j * np + p])` (the sum as fused multiply-adds
/// in the order of `j`, from 0), 8 pairs `p` per f64 vector.
#[target_feature(enable = "avx512f")]
unsafe fn spectral_block<const KK: usize>(m: &[f64], wt: &[f64], np: usize, wf: &mut [f32]) {
    assert!(m.len() == S * KK && wt.len() == KK * np && wf.len() == S * np);
    let mut p0 = 0;
    while p0 < np {
        let nb = (np - p0).min(8);
        let mask = ((1u32 << nb) - 1) as __mmask8;
        // SAFETY: the masked lanes j * np + p0 + l, l < nb, lie inside wt.
        let wv: [__m512d; KK] =
            std::array::from_fn(|j| unsafe { _mm512_maskz_loadu_pd(mask, wt.as_ptr().add(j * np + p0)) });
        for t in 0..S {
            let mt = &m[t * KK..][..KK];
            let mut acc = _mm512_setzero_pd();
            for j in 0..KK {
                acc = _mm512_fmadd_pd(_mm512_set1_pd(mt[j]), wv[j], acc);
            }
            let f = _mm512_cvtpd_ps(acc);
            let dst = &mut wf[t * np + p0..][..nb];
            if nb == 8 {
                // SAFETY: 8 writable floats.
                unsafe { _mm256_storeu_ps(dst.as_mut_ptr(), f) };
            } else {
                let mut r = [0f32; 8];
                // SAFETY: 8 writable floats.
                unsafe { _mm256_storeu_ps(r.as_mut_ptr(), f) };
                dst.copy_from_slice(&r[..nb]);
            }
        }
        p0 += nb;
    }
}

// ---------------------------------------------------------------------------------
// forward

/// Forward pass into `y` (overwritten); over fixed chunks of the batch (multiples of 16
/// samples) with rayon when `threaded`. `leaky = Some(slope)` applies LeakyReLU to the
/// outputs as they are stored.
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
    assert!(available() && fits(&s), "conv2d_fft: shape {s:?} or CPU not supported");
    s.check(x.len(), w.len(), y.len());
    if let Some(b) = b {
        assert_eq!(b.len(), s.cout, "conv2d_fft: bias length");
    }
    if s.n == 0 {
        return;
    }
    forward_spectral(x, &cached_weight_transform(w, &s, false), b, s, y, threaded, leaky);
}

/// [`forward`] with the spectral weights `wf` of its layer.
fn forward_spectral(
    x: &[f32],
    wf: &[f32],
    b: Option<&[f32]>,
    s: Conv2dShape,
    y: &mut [f32],
    threaded: bool,
    leaky: Option<f32>,
) {
    let (xin, yout) = (s.cin * S, s.cout * S);
    if threaded && s.n > L {
        let chunk = chunk_len(s.n, 4 * rayon::current_num_threads()).next_multiple_of(L);
        x.par_chunks(chunk * xin).zip(y.par_chunks_mut(chunk * yout)).for_each(|(xc, yc)| {
            // SAFETY: available() was asserted; lengths match the chunk's shape.
            unsafe { forward_chunk(xc, wf, b, Conv2dShape { n: xc.len() / xin, ..s }, yc, leaky, Layout::Nchw) }
        });
    } else {
        // SAFETY: as above.
        unsafe { forward_chunk(x, wf, b, s, y, leaky, Layout::Nchw) }
    }
}

/// [`forward`] on tensors held in the kernels' own samples-as-lanes layout: `x` as
/// `(n / 16, cin, 64, 16)` (group, channel, site, sample of the group) and `y` as
/// `(n / 16, cout, 64, 16)`, `n` a multiple of 16; one thread. The same values as [`forward`]
/// on the NCHW tensors, bit for bit (the transposes of `load_planes` and `store_planes`
/// are exact), without the transposes: a plane of 16 samples is 64 contiguous vectors. The
/// FFT layers of a training shard held in this layout run here (`crate::conv_stack`; `cargo
/// bench --bench conv2d_layout`, `docs/perf-conv2d.md`).
///
/// # Panics
/// As [`forward`]; or if `n` is not a multiple of 16.
pub fn forward_lanes(x: &[f32], w: &[f32], b: Option<&[f32]>, s: Conv2dShape, y: &mut [f32], leaky: Option<f32>) {
    assert!(available() && fits(&s), "conv2d_fft: shape {s:?} or CPU not supported");
    assert!(s.n.is_multiple_of(L), "conv2d_fft: the lanes layout needs a multiple of 16 samples, got {}", s.n);
    s.check(x.len(), w.len(), y.len());
    if let Some(b) = b {
        assert_eq!(b.len(), s.cout, "conv2d_fft: bias length");
    }
    let wf = cached_weight_transform(w, &s, false);
    // SAFETY: available() was asserted; lengths checked.
    unsafe { forward_chunk(x, &wf, b, s, y, leaky, Layout::Lanes) }
}

/// NCHW `(n, c, 8, 8)` to the lanes layout `(n / 16, c, 64, 16)` of [`forward_lanes`] (`n` a
/// multiple of 16), and back with `back`: plain index copies, for tests and benchmarks.
pub fn to_lanes(a: &[f32], n: usize, c: usize, back: bool) -> Vec<f32> {
    assert!(
        n.is_multiple_of(L) && a.len() == n * c * S,
        "conv2d_fft::to_lanes: {} values for n = {n}, c = {c}",
        a.len()
    );
    let mut out = vec![0f32; a.len()];
    for i in 0..n {
        for ch in 0..c {
            for t in 0..S {
                let nchw = (i * c + ch) * S + t;
                let lanes = (((i / L) * c + ch) * S + t) * L + i % L;
                if back {
                    out[nchw] = a[lanes];
                } else {
                    out[lanes] = a[nchw];
                }
            }
        }
    }
    out
}

/// [`to_lanes`] into `out` with the kernels' 16x16 transposes (the shard entry and exit of
/// `crate::conv_stack`): NCHW `(n, c, 8, 8)` to the lanes layout `(n / 16, c, 64, 16)`, or
/// back with `back`; `n` a multiple of 16. The same values as [`to_lanes`] (exact copies).
///
/// # Panics
/// If the CPU lacks AVX-512F, `n` is not a multiple of 16, or a length is not `n c 64`.
pub fn transpose_lanes(a: &[f32], n: usize, c: usize, back: bool, out: &mut [f32]) {
    assert!(
        super::cpu_features::avx512_available() && n.is_multiple_of(L) && a.len() == n * c * S && out.len() == a.len(),
        "conv2d_fft::transpose_lanes: {} values into {} for n = {n}, c = {c}",
        a.len(),
        out.len()
    );
    // SAFETY: AVX-512F (asserted); every plane of the group lies inside `a` and `out`
    // (lengths asserted).
    unsafe { transpose_lanes_avx512(a, n, c, back, out) }
}

/// [`transpose_lanes`].
///
/// # Safety
/// AVX-512F; `n` a multiple of 16, `a` and `out` of `n c 64` floats.
#[target_feature(enable = "avx512f")]
unsafe fn transpose_lanes_avx512(a: &[f32], n: usize, c: usize, back: bool, out: &mut [f32]) {
    let mut v = [_mm512_setzero_ps(); S];
    for grp in 0..n / L {
        for ch in 0..c {
            let nchw = (grp * L * c + ch) * S;
            let lanes = (grp * c + ch) * S * L;
            if back {
                for (t, v) in v.iter_mut().enumerate() {
                    // SAFETY: the group's plane ch lies inside `a` (contract).
                    *v = unsafe { _mm512_loadu_ps(a.as_ptr().add(lanes + t * L)) };
                }
                // SAFETY: the planes of the group's 16 samples lie inside `out` (contract).
                unsafe { store_planes(&v, out.as_mut_ptr().add(nchw), c * S, L, None) };
            } else {
                // SAFETY: the planes of the group's 16 samples lie inside `a` (contract).
                unsafe { load_planes(a.as_ptr().add(nchw), c * S, L, &mut v) };
                for (t, v) in v.iter().enumerate() {
                    // SAFETY: the group's plane ch lies inside `out` (contract).
                    unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(lanes + t * L), *v) };
                }
            }
        }
    }
}

/// Input gradient (when `dx` is given) and weight and bias gradients of `y = act(conv(x))`
/// from `g = dL/dy` (`y` the activation's output, read only with an activation), on one
/// thread: `dy = g act'(y)` formed as the planes are loaded (no buffer for it) and
/// transformed once for both gradients. The same bits as `Unary::grad_from_output` followed
/// by [`backward_input`] and [`backward_weight`] on one thread, with one transform of `dy`
/// and one pass over it fewer (the 8 -> 8 and 8 -> 3 layers' backward pass of a training
/// shard of 64 samples: 1.17x and 1.13x what ran before, see `conv2d::fft_fused_preferred`
/// and `benches/conv2d_backward.rs`).
///
/// # Panics
/// As [`backward_weight`]; or if an activation is given and `y` and `g` differ in length.
#[allow(clippy::too_many_arguments)]
pub fn backward_fused(
    g: &[f32],
    y: &[f32],
    act: Option<ActGrad>,
    x: &[f32],
    w: &[f32],
    s: Conv2dShape,
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    backward_fused_in(Layout::Nchw, g, y, act, x, w, s, dx, dw, db);
}

/// [`backward_fused`] on tensors in the lanes layout of [`forward_lanes`] (`g`, `y`, `x` and
/// `dx`; `n` a multiple of 16): the same gradients, bit for bit, without the transposes. The
/// backward pass of every layer of a training shard held in this layout
/// (`crate::conv_stack`; `cargo bench --bench conv2d_layout`).
///
/// # Panics
/// As [`backward_fused`]; or if `n` is not a multiple of 16.
#[allow(clippy::too_many_arguments)]
pub fn backward_fused_lanes(
    g: &[f32],
    y: &[f32],
    act: Option<ActGrad>,
    x: &[f32],
    w: &[f32],
    s: Conv2dShape,
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    backward_fused_in(Layout::Lanes, g, y, act, x, w, s, dx, dw, db);
}

/// [`backward_fused`] with its tensors in `layout`.
#[allow(clippy::too_many_arguments)]
fn backward_fused_in(
    layout: Layout,
    g: &[f32],
    y: &[f32],
    act: Option<ActGrad>,
    x: &[f32],
    w: &[f32],
    s: Conv2dShape,
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    assert!(available() && fits(&s), "conv2d_fft: shape {s:?} or CPU not supported");
    assert!(
        layout == Layout::Nchw || s.n.is_multiple_of(L),
        "conv2d_fft: the lanes layout needs a multiple of 16 samples, got {}",
        s.n
    );
    s.check(x.len(), dw.len(), g.len());
    assert!(act.is_none() || y.len() == g.len(), "conv2d_fft: activation output length");
    if let Some(dx) = &dx {
        assert_eq!(dx.len(), s.input_len(), "conv2d_fft: input gradient length for {s:?}");
    }
    if let Some(db) = &db {
        assert_eq!(db.len(), s.cout, "conv2d_fft: bias gradient length");
    }
    let wtf = dx.is_some().then(|| cached_weight_transform(w, &s, true));
    let act = act.map(|a| (y.as_ptr(), a));
    // SAFETY: available() was asserted; lengths checked (y as long as g when read).
    let part = unsafe { fused_chunk(g, act, x, wtf.as_deref().map(|v| v.as_slice()), s, dx, layout) };
    // SAFETY: as above.
    unsafe { finish_weight(vec![part], s, dw, db) };
}

/// How a kernel's tensors hold their samples: NCHW, or the lanes layout of [`forward_lanes`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    Nchw,
    Lanes,
}

/// The transform of channel `c` (of `channels`) of the samples `n0 .. n0 + nl` (group
/// `n0 / 16`) of `src`, of `g act'(y)` when `act = Some((y, act))` (`y` laid out as `src`), slot
/// `t` to `put(t, X_t)`. NCHW planes go through [`load_planes_act`] (the 16x16 transposes) into
/// `scratch`; in the lanes layout the transform reads the 64 site vectors where they lie. (A
/// copy into scratch there, `memcpy` calls where no activation applied, was ~18% of a U(1)
/// step at batch 1024 in `perf`, mostly waiting for the planes to come from L3; read by the
/// transform, the waits stay: the step measured within the noise of before,
/// docs/perf-conv2d.md, "The lanes transforms read and write the planes in place".)
///
/// # Safety
/// AVX-512F; the planes lie inside `src` (and `y`); in the lanes layout `nl = 16`.
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn fft_plane(
    layout: Layout,
    src: *const f32,
    act: Option<(*const f32, ActGrad)>,
    channels: usize,
    c: usize,
    n0: usize,
    nl: usize,
    scratch: &mut [__m512; S],
    put: impl FnMut(usize, __m512),
) {
    match layout {
        Layout::Nchw => {
            let at = (n0 * channels + c) * S;
            // SAFETY: the caller's contract.
            unsafe { load_planes_act(src.add(at), act.map(|(y, a)| (y.add(at), a)), channels * S, nl, scratch) };
            vector::fft2d_to(scratch, put);
        }
        Layout::Lanes => {
            let at = ((n0 / L) * channels + c) * S * L;
            // SAFETY (every load): site t < 64 of the plane, inside src (and y) by the contract.
            let get = |t: usize| unsafe {
                let g = _mm512_loadu_ps(src.add(at + t * L));
                match act {
                    None => g,
                    Some((y, a)) => act_grad16(g, _mm512_loadu_ps(y.add(at + t * L)), a),
                }
            };
            vector::fft2d_from(get, put);
        }
    }
}

/// The inverse of [`fft_plane`]: the inverse transform of the slots `v` into channel `c` of the
/// samples `n0 .. n0 + nl` of `dst`, through LeakyReLU with slope `leaky` when given. NCHW: in
/// place in `v`, then through [`store_planes`] (the transposes); in the lanes layout each site
/// vector straight from the transform to `dst` (`v` unchanged).
///
/// # Safety
/// AVX-512F; the planes lie inside `dst`; in the lanes layout `nl = 16`.
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn ifft_store_plane(
    layout: Layout,
    v: &mut [__m512; S],
    dst: *mut f32,
    channels: usize,
    c: usize,
    n0: usize,
    nl: usize,
    leaky: Option<f32>,
) {
    match layout {
        Layout::Nchw => {
            vector::ifft2d(v);
            // SAFETY: the caller's contract.
            unsafe { store_planes(v, dst.add((n0 * channels + c) * S), channels * S, nl, leaky) };
        }
        Layout::Lanes => {
            let at = ((n0 / L) * channels + c) * S * L;
            vector::ifft2d_to(v, |t, v| {
                let v = match leaky {
                    None => v,
                    Some(slope) => leaky16(v, slope),
                };
                // SAFETY: site t < 64 of the plane, inside dst by the contract.
                unsafe { _mm512_storeu_ps(dst.add(at + t * L), v) };
            });
        }
    }
}

/// The fused backward pass's per-lane sums (and `dx`): blocks of groups whose spectra fit
/// [`WEIGHT_BLOCK_BYTES`]; per group, `dy` transformed once, kept for the weight tiles and,
/// with `wtf` (the spectral flipped weights), multiplied into `dx`'s spectra and
/// inverse-transformed as [`forward_chunk`] does; `x` transformed into the block as
/// [`weight_chunk`] does. With `act = Some((y, act))` the planes of `dy` are loaded as
/// `dy act'(y)`.
///
/// # Safety
/// AVX-512F; with an activation, `y` readable for `dy.len()` floats.
#[target_feature(enable = "avx512f")]
unsafe fn fused_chunk(
    dy: &[f32],
    act: Option<(*const f32, ActGrad)>,
    x: &[f32],
    wtf: Option<&[f32]>,
    s: Conv2dShape,
    mut dx: Option<&mut [f32]>,
    layout: Layout,
) -> Part {
    assert!(dy.len() == s.n * s.cout * S && x.len() == s.n * s.cin * S);
    assert!(layout == Layout::Nchw || s.n.is_multiple_of(L));
    let st = Conv2dShape { cin: s.cout, cout: s.cin, ..s };
    let mut db = zeroed(s.cout);
    let groups = s.n.div_ceil(L);
    let per_group = (s.cin + s.cout) * S * std::mem::size_of::<__m512>();
    let nb = (WEIGHT_BLOCK_BYTES / per_group).clamp(1, groups.max(1));
    let mut sums = PartSums::new(s, true, groups, nb);
    let (vs, ds) = (nb * s.cin + 1, nb * s.cout + 1);
    with_scratch(vs * S + ds * S + s.cin * S, |buf| {
        let (xb, rest) = buf.split_at_mut(vs * S);
        let (dbuf, xs) = rest.split_at_mut(ds * S);
        let mut g0 = 0;
        while g0 < groups {
            let g1 = (g0 + nb).min(groups);
            for g in g0..g1 {
                let (n0, nl) = (g * L, (s.n - g * L).min(L));
                for c in 0..s.cin {
                    let at = (g - g0) * s.cin + c;
                    // SAFETY: planes (n0 + l, c), l < nl, inside x.
                    unsafe {
                        fft_plane(layout, x.as_ptr(), None, s.cin, c, n0, nl, plane(xs), |t, v| xb[t * vs + at] = v)
                    };
                }
                for o in 0..s.cout {
                    let at = (g - g0) * s.cout + o;
                    let put = |t: usize, v| dbuf[t * ds + at] = v;
                    // SAFETY: planes (n0 + l, o), l < nl, inside dy (and y, contract).
                    unsafe { fft_plane(layout, dy.as_ptr(), act, s.cout, o, n0, nl, plane(xs), put) };
                    db[o] = _mm512_add_ps(db[o], dbuf[at]);
                }
                if let (Some(dx), Some(wtf)) = (dx.as_deref_mut(), wtf) {
                    // the spectra of dy straight from the block: slot t of channel o at t * ds + o
                    products(&dbuf[(g - g0) * s.cout..], (ds, 1), wtf, None, st, xs);
                    for c in 0..s.cin {
                        let v = plane(&mut xs[c * S..]);
                        // SAFETY: the planes (n0 + l, c), l < nl, lie inside dx (length checked).
                        unsafe { ifft_store_plane(layout, v, dx.as_mut_ptr(), s.cin, c, n0, nl, None) };
                    }
                }
            }
            weight_tiles(xb, dbuf, s, (vs, ds), g1 - g0, &mut sums.dest(g0));
            g0 = g1;
        }
    });
    (sums, db)
}

/// Input gradient into `dx` (overwritten): [`forward`] on `dy` with the flipped kernel
/// (whose transform is `conj G`).
///
/// # Panics
/// As [`forward`].
pub fn backward_input(dy: &[f32], w: &[f32], s: Conv2dShape, dx: &mut [f32], threaded: bool) {
    assert!(available() && fits(&s), "conv2d_fft: shape {s:?} or CPU not supported");
    s.check(dx.len(), w.len(), dy.len());
    if s.n == 0 {
        return;
    }
    let st = Conv2dShape { cin: s.cout, cout: s.cin, ..s };
    forward_spectral(dy, &cached_weight_transform(w, &s, true), None, st, dx, threaded, None);
}

#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn forward_chunk(
    x: &[f32],
    wf: &[f32],
    b: Option<&[f32]>,
    s: Conv2dShape,
    y: &mut [f32],
    leaky: Option<f32>,
    layout: Layout,
) {
    assert!(x.len() == s.n * s.cin * S && y.len() == s.n * s.cout * S && wf.len() == S * s.cin * s.cout);
    assert!(layout == Layout::Nchw || s.n.is_multiple_of(L));
    with_scratch((s.cin + s.cout + 1) * S, |buf| {
        let (xs, rest) = buf.split_at_mut(s.cin * S);
        let (ys, scratch) = rest.split_at_mut(s.cout * S);
        let mut n0 = 0;
        while n0 < s.n {
            let nl = (s.n - n0).min(L);
            for c in 0..s.cin {
                let v = &mut xs[c * S..(c + 1) * S];
                // SAFETY: the planes (n0 + l, c), l < nl, lie inside x.
                unsafe { fft_plane(layout, x.as_ptr(), None, s.cin, c, n0, nl, plane(scratch), |t, x| v[t] = x) };
            }
            products(xs, (1, S), wf, b, s, ys);
            for o in 0..s.cout {
                let v = plane(&mut ys[o * S..]);
                // SAFETY: the planes (n0 + l, o), l < nl, lie inside y.
                unsafe { ifft_store_plane(layout, v, y.as_mut_ptr(), s.cout, o, n0, nl, leaky) };
            }
            n0 += L;
        }
    })
}

/// `Y[o][t] = sum_c Wf[t][c][o] X[c][t]` (complex on the pairs), bias into slot 0, from
/// `X[c][t]` at `xs[t * ts + c * cs]` (`(ts, cs) = (1, 64)`: planes; `(ds, 1)`: a weight block's
/// slot-major spectra) into planes `ys[o * 64 + t]`.
#[target_feature(enable = "avx512f")]
fn products(xs: &[__m512], strides: (usize, usize), wf: &[f32], b: Option<&[f32]>, s: Conv2dShape, ys: &mut [__m512]) {
    let mut o0 = 0;
    while o0 < s.cout {
        let ob = (s.cout - o0).min(4);
        match ob {
            1 => fwd_tile::<1, 6>(xs, strides, wf, b, s, o0, ys),
            2 => fwd_tile::<2, 3>(xs, strides, wf, b, s, o0, ys),
            3 => fwd_tile::<3, 2>(xs, strides, wf, b, s, o0, ys),
            _ => fwd_tile::<4, 2>(xs, strides, wf, b, s, o0, ys),
        }
        o0 += ob;
    }
}

/// Output channels `o0 .. o0 + O`: the real slots, then the pairs `P` at a time.
#[inline]
#[target_feature(enable = "avx512f")]
fn fwd_tile<const O: usize, const P: usize>(
    xs: &[__m512],
    (ts, cs): (usize, usize),
    wf: &[f32],
    b: Option<&[f32]>,
    s: Conv2dShape,
    o0: usize,
    ys: &mut [__m512],
) {
    let (ci, co) = (s.cin, s.cout);
    assert!(o0 + O <= co && xs.len() > (S - 1) * ts + (ci - 1) * cs && ys.len() >= co * S && wf.len() == S * ci * co);
    let wp = wf.as_ptr();
    let xp = xs.as_ptr();
    // SAFETY (all reads below): t < 64, c < cin, o0 + o < cout, asserted lengths.
    let wv = |t: usize, c: usize, o: usize| _mm512_set1_ps(unsafe { *wp.add((t * ci + c) * co + o0 + o) });
    let xv = |c: usize, t: usize| unsafe { *xp.add(c * cs + t * ts) };
    // real slots
    let mut acc = [[_mm512_setzero_ps(); NR]; O];
    if let Some(b) = b {
        for o in 0..O {
            acc[o][0] = _mm512_set1_ps(b[o0 + o]);
        }
    }
    for c in 0..ci {
        let x = [xv(c, 0), xv(c, 1), xv(c, 2), xv(c, 3)];
        for o in 0..O {
            for t in 0..NR {
                acc[o][t] = _mm512_fmadd_ps(wv(t, c, o), x[t], acc[o][t]);
            }
        }
    }
    for o in 0..O {
        ys[(o0 + o) * S..][..NR].copy_from_slice(&acc[o]);
    }
    // complex pairs
    let mut q0 = 0;
    while q0 < NP {
        let mut ar = [[_mm512_setzero_ps(); P]; O];
        let mut ai = [[_mm512_setzero_ps(); P]; O];
        for c in 0..ci {
            for p in 0..P {
                let t = NR + 2 * (q0 + p);
                let (xr, xi) = (xv(c, t), xv(c, t + 1));
                for o in 0..O {
                    let (gr, gi) = (wv(t, c, o), wv(t + 1, c, o));
                    ar[o][p] = _mm512_fnmadd_ps(gi, xi, _mm512_fmadd_ps(gr, xr, ar[o][p]));
                    ai[o][p] = _mm512_fmadd_ps(gi, xr, _mm512_fmadd_ps(gr, xi, ai[o][p]));
                }
            }
        }
        for o in 0..O {
            for p in 0..P {
                let t = NR + 2 * (q0 + p);
                ys[(o0 + o) * S + t] = ar[o][p];
                ys[(o0 + o) * S + t + 1] = ai[o][p];
            }
        }
        q0 += P;
    }
}

// ---------------------------------------------------------------------------------
// weight gradient

/// One chunk's sums `S[t][o][c]` (see [`weight_chunk`]) and the bias gradient's per-lane
/// `DY(0, 0)` sums.
type Part = (PartSums, Vec<__m512>);

/// A chunk's `S[t][o][c]`: per lane (to be added over chunks, then over the lanes), or, for
/// a call with one chunk of one block (every training shard), already added over the lanes
/// by the weight tiles themselves (`lane_sums16` on their registers: the same tree, so the
/// same bits, without storing and reloading 16-lane accumulators).
enum PartSums {
    Lanes(Vec<__m512>),
    Sums(Vec<f32>),
}

impl PartSums {
    /// Sums for a chunk of `groups` groups in blocks of `nb`: final lane sums when the chunk
    /// is its call's only one (`alone`) and one block holds every group, per-lane
    /// accumulators otherwise.
    fn new(s: Conv2dShape, alone: bool, groups: usize, nb: usize) -> Self {
        if alone && nb >= groups {
            PartSums::Sums(vec![0f32; S * s.cout * s.cin])
        } else {
            PartSums::Lanes(accumulators(s))
        }
    }

    /// Where the block starting at group `g0` puts its sums.
    fn dest(&mut self, g0: usize) -> Dest<'_> {
        match self {
            PartSums::Lanes(acc) => Dest::Lanes { acc, first: g0 == 0 },
            PartSums::Sums(sums) => Dest::Sums(sums),
        }
    }
}

/// Where [`weight_tiles`] put their sums.
enum Dest<'a> {
    /// Per-lane accumulators `S[t][o][c]`, overwritten when `first`, else added to.
    Lanes { acc: &'a mut [__m512], first: bool },
    /// The final lane sums `S[t][o][c]` (one block of groups).
    Sums(&'a mut [f32]),
}

impl Dest<'_> {
    /// The accumulator at `i` to continue from (zero unless adding to per-lane sums).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn start(&self, i: usize) -> __m512 {
        match self {
            Dest::Lanes { acc, first: false } => acc[i],
            _ => _mm512_setzero_ps(),
        }
    }

    /// Writes a tile's first `n <= 16` vectors `v[j]` to `S[at[j]]`: as they are, or their
    /// lane sums (one [`lane_sums16`] for the tile).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn put(&mut self, v: &[__m512; L], at: &[usize; L], n: usize) {
        match self {
            Dest::Lanes { acc, .. } => {
                for j in 0..n {
                    acc[at[j]] = v[j];
                }
            }
            Dest::Sums(sums) => {
                let mut r = [0f32; L];
                // SAFETY: 16 writable floats.
                unsafe { _mm512_storeu_ps(r.as_mut_ptr(), lane_sums16(*v)) };
                for j in 0..n {
                    sums[at[j]] = r[j];
                }
            }
        }
    }
}

/// Batch chunks of the threaded weight gradient, independent of the thread count.
const WEIGHT_GRAD_CHUNKS: usize = 8;

/// Bytes of transformed `x` and `dy` per sample block of the weight gradient (kept in L2
/// while every slot and channel-pair tile streams through it).
const WEIGHT_BLOCK_BYTES: usize = 256 << 10;

/// Weight (and bias) gradient into `dw` (and `db`), overwritten; over fixed batch chunks
/// (multiples of 16 samples) with rayon when `threaded`, the chunks' partial sums added in
/// chunk order.
///
/// # Panics
/// As [`forward`].
pub fn backward_weight(dy: &[f32], x: &[f32], s: Conv2dShape, dw: &mut [f32], db: Option<&mut [f32]>, threaded: bool) {
    assert!(available() && fits(&s), "conv2d_fft: shape {s:?} or CPU not supported");
    s.check(x.len(), dw.len(), dy.len());
    if let Some(db) = &db {
        assert_eq!(db.len(), s.cout, "conv2d_fft: bias gradient length");
    }
    let (xin, yout) = (s.cin * S, s.cout * S);
    // SAFETY (both calls): available() was asserted; lengths match each chunk's shape.
    let parts: Vec<Part> = if s.n == 0 {
        Vec::new()
    } else if threaded && s.n > L {
        let chunk = chunk_len(s.n, WEIGHT_GRAD_CHUNKS).next_multiple_of(L);
        x.par_chunks(chunk * xin)
            .zip(dy.par_chunks(chunk * yout))
            .map(|(xc, dyc)| unsafe { weight_chunk(dyc, xc, Conv2dShape { n: xc.len() / xin, ..s }, false) })
            .collect()
    } else {
        vec![unsafe { weight_chunk(dy, x, s, true) }]
    };
    // SAFETY: available() was asserted.
    unsafe { finish_weight(parts, s, dw, db) };
}

/// Adds the chunks' lane sums in chunk order, then the lanes (a tree of 4 levels; a call
/// of one chunk of one block comes with its lanes added, by the same tree), then the
/// inverse DFT at the kernel's taps (f64, 8 channel pairs per vector); the chunks' buffers
/// go back to this thread's free list.
#[target_feature(enable = "avx512f")]
fn finish_weight(parts: Vec<Part>, s: Conv2dShape, dw: &mut [f32], db: Option<&mut [f32]>) {
    let npairs = s.cout * s.cin;
    let total = S * npairs;
    let (mut lanes, mut done, mut dbs) = (Vec::new(), None, Vec::new());
    for (sums, db) in parts {
        match sums {
            PartSums::Lanes(v) => lanes.push(v),
            PartSums::Sums(v) => done = Some(v),
        }
        dbs.push(db);
    }
    assert!(done.is_none() || (lanes.is_empty() && dbs.len() == 1), "conv2d_fft: lane sums of one part only");
    let sums = done.unwrap_or_else(|| {
        // the parts added per lane, in chunk order (one part: its vector as it is)
        let chunk_sum = |i: usize| match lanes.as_slice() {
            [p] => p[i],
            _ => lanes.iter().fold(_mm512_setzero_ps(), |v, p| _mm512_add_ps(v, p[i])),
        };
        // sums[t * npairs + pair]: the lanes of each vector added in a tree of 4 levels (the
        // depth `_mm512_reduce_add_ps` has), 16 vectors at a time (`lane_sums16`; `total` is
        // a multiple of 64)
        let mut sums = vec![0f32; total];
        for (i, out) in sums.chunks_exact_mut(L).enumerate() {
            let r: [__m512; L] = std::array::from_fn(|j| chunk_sum(i * L + j));
            // SAFETY: out holds 16 floats.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr(), lane_sums16(r)) };
        }
        sums
    });
    assert_eq!(sums.len(), total);
    // R(d) = 1/64 sum_k S(k) e^{2 pi i k.d / 8}: the f64 inverse transform of the scaled
    // slots; tap (a, e) is R at d = (a - p, e - p) mod 8
    let (k, p) = (s.k, s.k / 2);
    let mut pair0 = 0;
    while pair0 < npairs {
        let np8 = (npairs - pair0).min(8);
        let mut spec: [__m512d; S] = std::array::from_fn(|t| {
            let at = t * npairs + pair0;
            let v = if np8 == 8 {
                // SAFETY: at + 8 <= (t + 1) * npairs <= sums.len().
                _mm512_cvtps_pd(unsafe { _mm256_loadu_ps(sums.as_ptr().add(at)) })
            } else {
                let mut v = [0f64; 8];
                for (j, v) in v.iter_mut().enumerate().take(np8) {
                    *v = sums[at + j] as f64;
                }
                // SAFETY: 8 readable f64.
                unsafe { _mm512_loadu_pd(v.as_ptr()) }
            };
            _mm512_mul_pd(v, _mm512_set1_pd(slot_scale(t)))
        });
        vector64::ifft2d(&mut spec);
        for a in 0..k {
            for e in 0..k {
                let mut r = [0f64; 8];
                // SAFETY: 8 writable f64.
                unsafe { _mm512_storeu_pd(r.as_mut_ptr(), spec[((a + 8 - p) % 8) * 8 + (e + 8 - p) % 8]) };
                for (j, r) in r.iter().enumerate().take(np8) {
                    dw[(pair0 + j) * k * k + a * k + e] = *r as f32;
                }
            }
        }
        pair0 += np8;
    }
    if let Some(db) = db {
        for (o, d) in db.iter_mut().enumerate() {
            let mut v = _mm512_setzero_ps();
            for p in &dbs {
                v = _mm512_add_ps(v, p[o]);
            }
            *d = _mm512_reduce_add_ps(v);
        }
    }
    for v in lanes {
        recycle(v);
    }
}

/// Lane `j` of the result: the 16 lanes of `r[j]` added in a tree of adjacent pairs,
/// `((l0 + l1) + (l2 + l3)) + ...`, 4 levels. Each level adds the even lanes of two vectors
/// to their odd lanes (two permutes and one add per output vector: 30 permutes and 15 adds
/// for the 16 sums, against 64 shuffles for a 16x16 transpose and then the same tree).
#[inline]
#[target_feature(enable = "avx512f")]
fn lane_sums16(r: [__m512; L]) -> __m512 {
    // even lanes of (a, b) in order, then odd lanes: [a0 a2 .. a14 b0 b2 .. b14], [a1 .. b15]
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let pairs =
        |a: __m512, b: __m512| _mm512_add_ps(_mm512_permutex2var_ps(a, even, b), _mm512_permutex2var_ps(a, odd, b));
    // level 1: vector m holds the 8 pair sums of r[2m] then those of r[2m + 1]; each later
    // level halves the vectors and the sums per input vector, keeping the input order
    let l1: [__m512; 8] = std::array::from_fn(|m| pairs(r[2 * m], r[2 * m + 1]));
    let l2: [__m512; 4] = std::array::from_fn(|m| pairs(l1[2 * m], l1[2 * m + 1]));
    let l3: [__m512; 2] = std::array::from_fn(|m| pairs(l2[2 * m], l2[2 * m + 1]));
    pairs(l3[0], l3[1])
}

/// Per-lane partial sums `(S, db)` over the `s.n` samples of one chunk,
/// `S[t * cout * cin + o * cin + c] = sum_n X_c(t) conj(DY_o(t))` (complex on the pairs).
/// A block of `nb` groups of 16 samples is transformed into `X[t * vs + g * cin + c]` and
/// `D[t * ds + g * cout + o]` (strides padded by one vector, `vs = nb cin + 1`), so the
/// vectors of one slot, which every channel-pair tile of that slot reads, lie together.
#[target_feature(enable = "avx512f")]
unsafe fn weight_chunk(dy: &[f32], x: &[f32], s: Conv2dShape, alone: bool) -> Part {
    assert!(x.len() == s.n * s.cin * S && dy.len() == s.n * s.cout * S);
    let mut db = zeroed(s.cout);
    let groups = s.n.div_ceil(L);
    let per_group = (s.cin + s.cout) * S * std::mem::size_of::<__m512>();
    let nb = (WEIGHT_BLOCK_BYTES / per_group).clamp(1, groups.max(1));
    let mut sums = PartSums::new(s, alone, groups, nb);
    let (vs, ds) = (nb * s.cin + 1, nb * s.cout + 1);
    with_scratch((vs + ds) * S + S, |buf| {
        let (xb, rest) = buf.split_at_mut(vs * S);
        let (dbuf, tmp) = rest.split_at_mut(ds * S);
        let tmp = plane(tmp);
        let mut g0 = 0;
        while g0 < groups {
            let g1 = (g0 + nb).min(groups);
            for g in g0..g1 {
                let (n0, nl) = (g * L, (s.n - g * L).min(L));
                for c in 0..s.cin {
                    // SAFETY: planes (n0 + l, c), l < nl, inside x.
                    unsafe { load_planes(x.as_ptr().add((n0 * s.cin + c) * S), s.cin * S, nl, tmp) };
                    let at = (g - g0) * s.cin + c;
                    vector::fft2d_to(tmp, |t, v| xb[t * vs + at] = v);
                }
                for o in 0..s.cout {
                    // SAFETY: planes (n0 + l, o), l < nl, inside dy.
                    unsafe { load_planes(dy.as_ptr().add((n0 * s.cout + o) * S), s.cout * S, nl, tmp) };
                    let at = (g - g0) * s.cout + o;
                    vector::fft2d_to(tmp, |t, v| dbuf[t * ds + at] = v);
                    db[o] = _mm512_add_ps(db[o], dbuf[at]);
                }
            }
            weight_tiles(xb, dbuf, s, (vs, ds), g1 - g0, &mut sums.dest(g0));
            g0 = g1;
        }
    });
    (sums, db)
}

/// The weight gradient's per-lane accumulators `S[t][o][c]` for `s`: a recycled buffer the
/// first block of groups overwrites ([`Dest::Lanes`] with `first`), zeros when there is no
/// sample.
fn accumulators(s: Conv2dShape) -> Vec<__m512> {
    if s.n == 0 {
        return zeroed(S * s.cout * s.cin);
    }
    recycled(S * s.cout * s.cin)
}

/// `S[t][o][c] += sum_{g < ng} X[t][g][c] conj(D[t][g][o])` into `dest` (per lane, `=` for
/// the first block; or added over the lanes) for every slot and channel pair, from spectra at `xb[t * vs + g * cin + c]` and `d[t * ds + g * cout + o]`: register tiles
/// of up to 4 x 4 (real slots) or 4 x 2 (pairs) channel pairs, each streaming the `ng`
/// groups (per lane, the groups are added in order whatever the blocking).
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
fn weight_tiles(xb: &[__m512], d: &[__m512], s: Conv2dShape, strides: (usize, usize), ng: usize, dest: &mut Dest) {
    for t in 0..NR {
        let mut o0 = 0;
        while o0 < s.cout {
            let ob = (s.cout - o0).min(4);
            let mut c0 = 0;
            while c0 < s.cin {
                let cb = (s.cin - c0).min(4);
                wg_real_tiles(xb, d, s, strides, ng, t, o0, ob, c0, cb, dest);
                c0 += cb;
            }
            o0 += ob;
        }
    }
    for q in 0..NP {
        let mut o0 = 0;
        while o0 < s.cout {
            let ob = (s.cout - o0).min(4);
            let mut c0 = 0;
            while c0 < s.cin {
                let cb = (s.cin - c0).min(2);
                wg_pair_tiles(xb, d, s, strides, ng, NR + 2 * q, o0, ob, c0, cb, dest);
                c0 += cb;
            }
            o0 += ob;
        }
    }
}

/// Dispatches [`wg_real`] on the tile size `(ob, cb)`, both at most 4.
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
fn wg_real_tiles(
    xb: &[__m512],
    d: &[__m512],
    s: Conv2dShape,
    (vs, ds): (usize, usize),
    ng: usize,
    t: usize,
    o0: usize,
    ob: usize,
    c0: usize,
    cb: usize,
    dest: &mut Dest,
) {
    macro_rules! go {
        ($($o:literal),*; $($c:literal),*) => {
            go!(@o [$($o),*] [$($c),*])
        };
        (@o [$($o:literal),*] $cs:tt) => {
            match ob { $($o => go!(@c $o $cs),)* _ => unreachable!() }
        };
        (@c $o:literal [$($c:literal),*]) => {
            match cb { $($c => wg_real::<$o, $c>(xb, d, s, (vs, ds), ng, t, o0, c0, dest),)* _ => unreachable!() }
        };
    }
    go!(1, 2, 3, 4; 1, 2, 3, 4)
}

/// Dispatches [`wg_pair`] on the tile size `(ob <= 4, cb <= 2)`.
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
fn wg_pair_tiles(
    xb: &[__m512],
    d: &[__m512],
    s: Conv2dShape,
    (vs, ds): (usize, usize),
    ng: usize,
    t: usize,
    o0: usize,
    ob: usize,
    c0: usize,
    cb: usize,
    dest: &mut Dest,
) {
    match (ob, cb) {
        (1, 1) => wg_pair::<1, 1>(xb, d, s, (vs, ds), ng, t, o0, c0, dest),
        (1, _) => wg_pair::<1, 2>(xb, d, s, (vs, ds), ng, t, o0, c0, dest),
        (2, 1) => wg_pair::<2, 1>(xb, d, s, (vs, ds), ng, t, o0, c0, dest),
        (2, _) => wg_pair::<2, 2>(xb, d, s, (vs, ds), ng, t, o0, c0, dest),
        (3, 1) => wg_pair::<3, 1>(xb, d, s, (vs, ds), ng, t, o0, c0, dest),
        (3, _) => wg_pair::<3, 2>(xb, d, s, (vs, ds), ng, t, o0, c0, dest),
        (_, 1) => wg_pair::<4, 1>(xb, d, s, (vs, ds), ng, t, o0, c0, dest),
        _ => wg_pair::<4, 2>(xb, d, s, (vs, ds), ng, t, o0, c0, dest),
    }
}

/// `S[t][o][c] += sum_{g < ng} X[t][g][c] D[t][g][o]` for a real slot `t`.
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
fn wg_real<const O: usize, const C: usize>(
    xb: &[__m512],
    d: &[__m512],
    s: Conv2dShape,
    (vs, ds): (usize, usize),
    ng: usize,
    t: usize,
    o0: usize,
    c0: usize,
    dest: &mut Dest,
) {
    let at = |o: usize, c: usize| t * s.cout * s.cin + (o0 + o) * s.cin + c0 + c;
    let mut acc: [[__m512; C]; O] = std::array::from_fn(|o| std::array::from_fn(|c| dest.start(at(o, c))));
    for g in 0..ng {
        let xv: [__m512; C] = std::array::from_fn(|c| xb[t * vs + g * s.cin + c0 + c]);
        for o in 0..O {
            let dv = d[t * ds + g * s.cout + o0 + o];
            for c in 0..C {
                acc[o][c] = _mm512_fmadd_ps(dv, xv[c], acc[o][c]);
            }
        }
    }
    let (mut v, mut to) = ([_mm512_setzero_ps(); L], [0usize; L]);
    for o in 0..O {
        for c in 0..C {
            (v[o * C + c], to[o * C + c]) = (acc[o][c], at(o, c));
        }
    }
    dest.put(&v, &to, O * C);
}

/// `S[t..t+2][o][c] += sum_{g < ng} X[t][g][c] conj(D[t][g][o])` for the pair at slots
/// `t, t + 1`.
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
fn wg_pair<const O: usize, const C: usize>(
    xb: &[__m512],
    d: &[__m512],
    s: Conv2dShape,
    (vs, ds): (usize, usize),
    ng: usize,
    t: usize,
    o0: usize,
    c0: usize,
    dest: &mut Dest,
) {
    let np = s.cout * s.cin;
    let at = |o: usize, c: usize| t * np + (o0 + o) * s.cin + c0 + c;
    let mut ar: [[__m512; C]; O] = std::array::from_fn(|o| std::array::from_fn(|c| dest.start(at(o, c))));
    let mut ai: [[__m512; C]; O] = std::array::from_fn(|o| std::array::from_fn(|c| dest.start(at(o, c) + np)));
    assert!(xb.len() >= (t + 1) * vs + ng * s.cin && d.len() >= (t + 1) * ds + ng * s.cout);
    assert!(ng * s.cin <= vs && ng * s.cout <= ds);
    let (xp, dp) = (xb.as_ptr(), d.as_ptr());
    for g in 0..ng {
        // SAFETY: (t + 1) * vs + g cin + c0 + c < (t + 1) vs + ng cin (asserted), likewise for d.
        let xr: [__m512; C] = std::array::from_fn(|c| unsafe { *xp.add(t * vs + g * s.cin + c0 + c) });
        let xi: [__m512; C] = std::array::from_fn(|c| unsafe { *xp.add((t + 1) * vs + g * s.cin + c0 + c) });
        for o in 0..O {
            // SAFETY: as above.
            let (dr, di) =
                unsafe { (*dp.add(t * ds + g * s.cout + o0 + o), *dp.add((t + 1) * ds + g * s.cout + o0 + o)) };
            for c in 0..C {
                // X conj(D) = (xr dr + xi di) + i (xi dr - xr di)
                ar[o][c] = _mm512_fmadd_ps(xi[c], di, _mm512_fmadd_ps(xr[c], dr, ar[o][c]));
                ai[o][c] = _mm512_fnmadd_ps(xr[c], di, _mm512_fmadd_ps(xi[c], dr, ai[o][c]));
            }
        }
    }
    // O C <= 8: the real parts, then the imaginary parts
    let (mut v, mut to) = ([_mm512_setzero_ps(); L], [0usize; L]);
    for o in 0..O {
        for c in 0..C {
            let j = o * C + c;
            (v[j], to[j]) = (ar[o][c], at(o, c));
            (v[O * C + j], to[O * C + j]) = (ai[o][c], at(o, c) + np);
        }
    }
    dest.put(&v, &to, 2 * O * C);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector transpose against the plain one.
    #[test]
    fn transpose16_transposes() {
        if !super::super::cpu_features::avx512_available() {
            return;
        }
        let vals: Vec<f32> = (0..256).map(|v| v as f32).collect();
        // SAFETY: AVX-512F checked above; 256 readable floats.
        let out = unsafe {
            let mut r: [__m512; L] = std::array::from_fn(|i| _mm512_loadu_ps(vals.as_ptr().add(16 * i)));
            transpose16_for_test(&mut r);
            let mut out = [0f32; 256];
            for (i, v) in r.iter().enumerate() {
                _mm512_storeu_ps(out.as_mut_ptr().add(16 * i), *v);
            }
            out
        };
        for i in 0..16 {
            for j in 0..16 {
                assert_eq!(out[i * 16 + j], vals[j * 16 + i], "({i}, {j})");
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    fn transpose16_for_test(r: &mut [__m512; L]) {
        transpose16(r)
    }

    /// [`super::weight_transform`] as it was before the explicit 8-lane blocks: the matrix
    /// built per call, 16 pairs' f64 sums of fused multiply-adds over the taps in order.
    fn weight_transform_scalar(w: &[f32], s: &Conv2dShape) -> Vec<f32> {
        let (k, p) = (s.k, (s.k / 2) as isize);
        let (kk, np) = (s.k * s.k, s.cin * s.cout);
        let cs = unit_roots();
        let mut wf = vec![0f32; S * np];
        for t in 0..S {
            let ((k1, k2), imag) =
                if t < NR { (REAL_FREQ[t], false) } else { (slot_pair_freq((t - NR) / 2), (t - NR) % 2 == 1) };
            for o in 0..s.cout {
                for c in 0..s.cin {
                    let mut acc = 0f64;
                    for a in 0..k {
                        for e in 0..k {
                            let ph = (k1 as isize * (p - a as isize) + k2 as isize * (p - e as isize)).rem_euclid(8);
                            let (co, si) = cs[ph as usize];
                            let mj = slot_scale(t) * if imag { -si } else { co };
                            acc = mj.mul_add(w[(o * s.cin + c) * kk + a * k + e] as f64, acc);
                        }
                    }
                    wf[t * np + c * s.cout + o] = acc as f32;
                }
            }
        }
        wf
    }

    /// The vectorized spectral weights are the scalar sums' bits, for every kernel size and
    /// channel counts whose pairs fill 8-lane blocks or leave partial ones.
    #[test]
    fn spectral_weights_are_the_scalar_sums() {
        if !available() {
            return;
        }
        for k in [1, 3, 5, 7] {
            for (cin, cout) in [(1, 1), (1, 8), (8, 2), (3, 5), (8, 8), (2, 8), (8, 3), (7, 9)] {
                let s = Conv2dShape { n: 16, cin, cout, h: 8, w: 8, k };
                let w: Vec<f32> =
                    (0..s.weight_len()).map(|i| ((i * 7919 % 1009) as f32 - 504.0) / 97.0 + 1e-3 * i as f32).collect();
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&weight_transform(&w, &s)), bits(&weight_transform_scalar(&w, &s)), "{s:?}");
            }
        }
    }

    /// The cache of spectral weights hands out the transform of the weights asked for: a
    /// change in the last bit of one weight misses, the flipped kernel of the same weights
    /// is another entry, and going back hits the first entry (the same bits as an uncached
    /// transform every time).
    #[test]
    fn cached_spectral_weights_are_those_of_the_weights_given() {
        if !available() {
            return;
        }
        let s = Conv2dShape { n: 16, cin: 3, cout: 5, h: 8, w: 8, k: 3 };
        let st = Conv2dShape { cin: s.cout, cout: s.cin, ..s };
        let w1: Vec<f32> = (0..s.weight_len()).map(|i| ((i * 37 % 101) as f32 - 50.0) / 64.0).collect();
        let mut w2 = w1.clone();
        w2[17] = f32::from_bits(w2[17].to_bits() ^ 1);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        for w in [&w1, &w2, &w1, &w2] {
            let plain = weight_transform(w, &s);
            assert_eq!(bits(&cached_weight_transform(w, &s, false)), bits(&plain));
            let flipped = weight_transform(&flipped_weights(w, &s), &st);
            assert_ne!(bits(&flipped), bits(&plain));
            assert_eq!(bits(&cached_weight_transform(w, &s, true)), bits(&flipped));
        }
        assert_ne!(bits(&weight_transform(&w1, &s)), bits(&weight_transform(&w2, &s)));
    }

    /// The weight tiles' own lane sums (a call of one chunk of one block) give the bits of
    /// the per-lane accumulators added afterwards, for every tile size (1-9 channels each
    /// way) and partial groups; multi-block calls (8 -> 8 beyond 64 samples) take the
    /// per-lane path both ways.
    #[test]
    fn lane_sums_in_the_tiles_are_the_stored_lanes_added() {
        if !available() {
            return;
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut uniform = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        for (cin, cout, n) in
            [(1, 8, 64), (8, 1, 17), (8, 8, 64), (8, 8, 80), (8, 2, 40), (2, 8, 64), (3, 5, 9), (9, 7, 33)]
        {
            for k in [1, 3, 5] {
                let s = Conv2dShape { n, cin, cout, h: 8, w: 8, k };
                let x: Vec<f32> = (0..s.input_len()).map(|_| uniform()).collect();
                let dy: Vec<f32> = (0..s.output_len()).map(|_| uniform()).collect();
                let run = |alone: bool| {
                    let (mut dw, mut db) = (vec![0f32; s.weight_len()], vec![0f32; cout]);
                    // SAFETY: available() checked; lengths of the shape.
                    unsafe {
                        let part = weight_chunk(&dy, &x, s, alone);
                        let one_block = n.div_ceil(L) <= (64 / (cin + cout)).max(1);
                        assert_eq!(matches!(part.0, PartSums::Sums(_)), alone && one_block, "{s:?}");
                        finish_weight(vec![part], s, &mut dw, Some(&mut db));
                    }
                    (dw, db)
                };
                let (tiles, lanes) = (run(true), run(false));
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&tiles.0), bits(&lanes.0), "weights {s:?}");
                assert_eq!(bits(&tiles.1), bits(&lanes.1), "bias {s:?}");
                assert!(tiles.0.iter().any(|&v| v != 0.0), "{s:?}");
            }
        }
    }

    /// The forward pass in the lanes layout gives the NCHW pass's values bit for bit, with
    /// and without bias and LeakyReLU, and the fused backward pass its gradients (LeakyReLU,
    /// tanh, none), for the tutorial's shapes and k = 5.
    #[test]
    fn forward_in_the_lanes_layout_equals_the_nchw_one() {
        if !available() {
            return;
        }
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut uniform = |len: usize| crate::Tensor::<f32>::uniform(&[len], -1.0, 1.0, &mut rng).into_vec();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        for (cin, cout, n, k) in [(8, 8, 64, 3), (8, 3, 32, 3), (8, 2, 16, 3), (2, 8, 48, 5), (1, 8, 16, 3)] {
            let s = Conv2dShape { n, cin, cout, h: 8, w: 8, k };
            let x = uniform(s.input_len());
            let w: Vec<f32> = uniform(s.weight_len()).iter().map(|v| v / 4.0).collect();
            let b = uniform(cout);
            for (bias, leaky) in [(Some(&b[..]), Some(0.01f32)), (None, None)] {
                let mut y = vec![0f32; s.output_len()];
                forward(&x, &w, bias, s, &mut y, false, leaky);
                let mut yl = vec![0f32; s.output_len()];
                forward_lanes(&to_lanes(&x, n, cin, false), &w, bias, s, &mut yl, leaky);
                assert_eq!(bits(&to_lanes(&yl, n, cout, true)), bits(&y), "{s:?}");
            }
            // the fused backward pass, both gradients, with and without an activation
            let g = uniform(s.output_len());
            let mut y = vec![0f32; s.output_len()];
            forward(&x, &w, Some(&b), s, &mut y, false, Some(0.01));
            for act in [Some(ActGrad::Leaky(0.01)), Some(ActGrad::Tanh), None] {
                let (mut dx, mut dw, mut db) =
                    (vec![0f32; s.input_len()], vec![0f32; s.weight_len()], vec![0f32; cout]);
                backward_fused(&g, &y, act, &x, &w, s, Some(&mut dx), &mut dw, Some(&mut db));
                let (mut dxl, mut dwl, mut dbl) =
                    (vec![0f32; s.input_len()], vec![0f32; s.weight_len()], vec![0f32; cout]);
                let lanes = |a: &[f32], c| to_lanes(a, n, c, false);
                let (gl, yl, xl) = (lanes(&g, cout), lanes(&y, cout), lanes(&x, cin));
                backward_fused_lanes(&gl, &yl, act, &xl, &w, s, Some(&mut dxl), &mut dwl, Some(&mut dbl));
                assert_eq!(bits(&to_lanes(&dxl, n, cin, true)), bits(&dx), "dx {s:?} {act:?}");
                assert_eq!(bits(&dwl), bits(&dw), "dw {s:?} {act:?}");
                assert_eq!(bits(&dbl), bits(&db), "db {s:?} {act:?}");
                assert!(dw.iter().any(|&v| v != 0.0));
            }
        }
        let x: Vec<f32> = (0..32 * 2 * 64).map(|i| i as f32).collect();
        let l = to_lanes(&x, 32, 2, false);
        // sample 19 = lane 3 of group 1, channel 1, site 5
        assert_eq!(l[(3 * 64 + 5) * 16 + 3], x[(19 * 2 + 1) * 64 + 5]);
        assert_eq!(to_lanes(&l, 32, 2, true), x);
    }

    /// The AVX-512 transposes of `transpose_lanes` are the index copies of `to_lanes`, both
    /// ways (a swapped sample, site or channel breaks it).
    #[test]
    fn transpose_lanes_is_to_lanes() {
        if !available() {
            return;
        }
        for (n, c) in [(16, 1), (32, 3), (64, 8)] {
            let a: Vec<f32> = (0..n * c * S).map(|i| i as f32).collect();
            let mut fwd = vec![0f32; a.len()];
            transpose_lanes(&a, n, c, false, &mut fwd);
            assert_eq!(fwd, to_lanes(&a, n, c, false), "n = {n}, c = {c}");
            let mut back = vec![0f32; a.len()];
            transpose_lanes(&fwd, n, c, true, &mut back);
            assert_eq!(back, a, "n = {n}, c = {c}");
        }
    }
}
