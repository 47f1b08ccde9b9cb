//! Vectorized `exp`, `tanh`, `sin`, `cos`, `tan`, `atan` and `ln` for `f32` slices (8
//! lanes, AVX2 with the workspace's target level), used by the elementwise ops in
//! training (the trigonometric ones by the U(1) flows). Accuracy is stated and tested
//! against libm on dense grids: relative error below [`VMATH_F32_REL_TOL`] (`sin`, `cos`:
//! absolute error below [`VMATH_F32_TRIG_ABS_TOL`] for `|x| <= 100`; `tan`: error below
//! that times `1 + tan^2`, its condition near the poles).
//!
//! - `exp`: `wide`'s Cody-Waite reduction + degree-5 polynomial, valid for
//!   `|x| < 87.3`; above, `exp(x/2)^2` (overflowing to +inf past 88.72); below -87.3 the
//!   result is flushed to 0 (exact values there are below 1.21e-38); NaN stays NaN.
//! - `tanh` (Cephes `tanhf`): for `|x| < 0.625`, `x + x^3 P(x^2)`; otherwise
//!   `1 - 2 / (e^{2|x|} + 1)` with the sign restored; `|x|` is clamped at 10, beyond
//!   which `tanh` rounds to 1 in f32.
//! - `sin`, `cos`, `tan`, `atan`, `ln`: `wide`'s implementations (Agner Fog's vector class
//!   library / Cephes: a three-part Cody-Waite reduction by pi/2 and minimax polynomials;
//!   `tan = sin / cos`).
//!
//! Where the CPU has AVX-512F, `exp`, `tanh`, `sin`, `cos` and `sin_cos` run on 16 lanes
//! with the same operations in the same order, so the values do not depend on the path
//! (tested bit for bit; `LATFLOW_NO_AVX512=1` turns it off).

use wide::{f32x8, CmpEq, CmpGt, CmpLt};

/// Largest relative error of [`exp_f32`], [`tanh_f32`], [`atan_f32`] and [`ln_f32`]
/// against libm, as tested.
pub const VMATH_F32_REL_TOL: f32 = 4e-7;
/// Largest absolute error of [`sin_f32`] and [`cos_f32`] against the correctly rounded
/// value for `|x| <= 100`, as tested (1 ulp of 1; measured: 6.0e-8).
pub const VMATH_F32_TRIG_ABS_TOL: f32 = 1.2e-7;

#[inline(always)]
fn exp8(x: f32x8) -> f32x8 {
    let z = x.exp();
    // above 87 (rare): exp(x/2)^2, computed only when a lane needs it
    let big = x.cmp_gt(f32x8::splat(87.0));
    let z = if big.any() {
        let half = (x * f32x8::splat(0.5)).exp();
        big.blend(half * half, z)
    } else {
        z
    };
    let z = x.cmp_eq(f32x8::splat(f32::INFINITY)).blend(x, z);
    x.is_nan().blend(x, z)
}

#[inline(always)]
fn tanh8(x: f32x8) -> f32x8 {
    let ax = x.abs().min(f32x8::splat(10.0));
    // large branch: 1 - 2 / (e^{2|x|} + 1)
    let e = (ax + ax).exp();
    let big = f32x8::ONE - f32x8::splat(2.0) / (e + f32x8::ONE);
    // small branch (Cephes tanhf)
    let z = ax * ax;
    let p = f32x8::splat(-5.704_988_7e-3);
    let p = p.mul_add(z, f32x8::splat(2.063_909e-2));
    let p = p.mul_add(z, f32x8::splat(-5.373_971_6e-2));
    let p = p.mul_add(z, f32x8::splat(1.333_144_2e-1));
    let p = p.mul_add(z, f32x8::splat(-3.333_328e-1));
    let small = (p * z).mul_add(ax, ax);
    let r = ax.cmp_lt(f32x8::splat(0.625)).blend(small, big);
    let r = x.cmp_lt(f32x8::ZERO).blend(-r, r);
    x.is_nan().blend(x, r)
}

fn map8(x: &[f32], y: &mut [f32], f: impl Fn(f32x8) -> f32x8) {
    assert_eq!(x.len(), y.len(), "vmath: input {} vs output {}", x.len(), y.len());
    let mut xc = x.chunks_exact(8);
    let mut yc = y.chunks_exact_mut(8);
    for (xs, ys) in (&mut xc).zip(&mut yc) {
        let v = f(f32x8::from(<[f32; 8]>::try_from(xs).expect("chunk of 8")));
        ys.copy_from_slice(&v.to_array());
    }
    let (xr, yr) = (xc.remainder(), yc.into_remainder());
    if !xr.is_empty() {
        let mut buf = [0.0f32; 8];
        buf[..xr.len()].copy_from_slice(xr);
        let v = f(f32x8::from(buf)).to_array();
        yr.copy_from_slice(&v[..yr.len()]);
    }
}

/// How many leading elements of a slice of `len` the 16-lane AVX-512 functions take: the
/// whole vectors of 16 where the CPU has AVX-512F, else none.
fn avx512_prefix(len: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        return len / 16 * 16;
    }
    let _ = len;
    0
}

/// `y[i] = f(x[i])`: the whole vectors of 16 on AVX-512 (`avx512::$wide16`, the same
/// values) where the CPU has it, the rest on 8 lanes (`$lanes8`).
macro_rules! map_lanes {
    ($x:expr, $y:expr, $wide16:ident, $lanes8:expr) => {{
        let (x, y): (&[f32], &mut [f32]) = ($x, $y);
        assert_eq!(x.len(), y.len(), "vmath: input {} vs output {}", x.len(), y.len());
        let n = avx512_prefix(x.len());
        #[cfg(target_arch = "x86_64")]
        if n > 0 {
            // SAFETY: n > 0 only where AVX-512F is available; both slices hold n elements.
            unsafe { avx512::$wide16(&x[..n], &mut y[..n]) };
        }
        map8(&x[n..], &mut y[n..], $lanes8)
    }};
}

/// `y[i] = exp(x[i])`. Where the CPU has AVX-512F, 16 lanes at a time with the same
/// operations (bit for bit the 8-lane values, tested).
///
/// # Panics
/// If the lengths differ.
pub fn exp_f32(x: &[f32], y: &mut [f32]) {
    map_lanes!(x, y, exp_slice, exp8)
}

/// `y[i] = tanh(x[i])`, 16 lanes at a time where the CPU has AVX-512F (as [`exp_f32`]).
///
/// # Panics
/// If the lengths differ.
pub fn tanh_f32(x: &[f32], y: &mut [f32]) {
    map_lanes!(x, y, tanh_slice, tanh8)
}

/// `exp`, `tanh`, `sin` and `cos` on 16-lane AVX-512 registers: `wide`'s f32x8 algorithms (and
/// [`exp8`] / [`tanh8`] around them) operation for operation — the same roundings, FMAs
/// and constants — so every lane gets the 8-lane value bit for bit, at about half the
/// instructions per element. Chosen at run time like the AVX-512 conv kernels
/// (`LATFLOW_NO_AVX512=1` turns it off).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512 {
    use std::arch::x86_64::*;

    pub(super) use crate::kernels::cpu_features::avx512_available as available;

    /// `wide::f32x8::exp`: Cody-Waite reduction by ln 2, degree-5 polynomial (Estrin
    /// form), scale by `2^r` through the exponent bits; 0 outside `|x| < 87.3` or for
    /// non-finite `x`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn wide_exp(x: __m512) -> __m512 {
        let s = _mm512_set1_ps;
        let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
            x,
            s(std::f32::consts::LOG2_E),
        ));
        let xr = _mm512_fnmadd_ps(r, s(0.693_359_4), x);
        let xr = _mm512_fnmadd_ps(r, s(-2.121_944_4e-4), xr);
        let x2 = _mm512_mul_ps(xr, xr);
        let x4 = _mm512_mul_ps(x2, x2);
        let (p0, p1, p2, p3, p4, p5) =
            (1.0f32 / 2.0, 1.0f32 / 6.0, 1.0f32 / 24.0, 1.0f32 / 120.0, 1.0f32 / 720.0, 1.0f32 / 5040.0);
        let lo = _mm512_fmadd_ps(s(p1), xr, s(p0));
        let hi = _mm512_fmadd_ps(_mm512_fmadd_ps(s(p5), xr, s(p4)), x4, lo);
        let z = _mm512_fmadd_ps(_mm512_fmadd_ps(s(p3), xr, s(p2)), x2, hi);
        let z = _mm512_fmadd_ps(z, x2, xr);
        let n2 =
            _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_castps_si512(_mm512_add_ps(r, s(127.0 + 8_388_608.0)))));
        let z = _mm512_mul_ps(_mm512_add_ps(z, s(1.0)), n2);
        let ax = _mm512_abs_ps(x);
        let in_range =
            _mm512_cmp_ps_mask::<_CMP_LT_OQ>(ax, s(87.3)) & _mm512_cmp_ps_mask::<_CMP_LT_OQ>(ax, s(f32::INFINITY));
        _mm512_mask_blend_ps(in_range, _mm512_setzero_ps(), z)
    }

    /// [`super::exp8`] on 16 lanes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) fn exp16(x: __m512) -> __m512 {
        let z = wide_exp(x);
        let big = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, _mm512_set1_ps(87.0));
        let z = if big != 0 {
            let half = wide_exp(_mm512_mul_ps(x, _mm512_set1_ps(0.5)));
            _mm512_mask_blend_ps(big, z, _mm512_mul_ps(half, half))
        } else {
            z
        };
        let z = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(x, _mm512_set1_ps(f32::INFINITY)), z, x);
        _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x), z, x)
    }

    /// [`super::tanh8`] on 16 lanes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) fn tanh16(x: __m512) -> __m512 {
        let s = _mm512_set1_ps;
        let ax = _mm512_min_ps(_mm512_abs_ps(x), s(10.0));
        let e = wide_exp(_mm512_add_ps(ax, ax));
        let big = _mm512_sub_ps(s(1.0), _mm512_div_ps(s(2.0), _mm512_add_ps(e, s(1.0))));
        let z = _mm512_mul_ps(ax, ax);
        let p = _mm512_fmadd_ps(s(-5.704_988_7e-3), z, s(2.063_909e-2));
        let p = _mm512_fmadd_ps(p, z, s(-5.373_971_6e-2));
        let p = _mm512_fmadd_ps(p, z, s(1.333_144_2e-1));
        let p = _mm512_fmadd_ps(p, z, s(-3.333_328e-1));
        let small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), ax, ax);
        let r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(ax, s(0.625)), big, small);
        let neg = _mm512_sub_ps(_mm512_setzero_ps(), r);
        let r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_setzero_ps()), r, neg);
        _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x), r, x)
    }

    /// `wide::f32x8::sin_cos` on 16 lanes (Agner Fog's vector class library: quadrant by
    /// rounding `|x| 2/pi`, three-part Cody-Waite reduction, minimax polynomials, signs from
    /// the quadrant bits), operation for operation.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) fn sin_cos16(x: __m512) -> (__m512, __m512) {
        let s = _mm512_set1_ps;
        let i = _mm512_set1_epi32;
        let xa = _mm512_abs_ps(x);
        let y = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
            xa,
            s(2.0 / std::f32::consts::PI),
        ));
        // wide's round_int: NaN lanes converted as 0, lanes >= 2^31 flipped to i32::MAX
        let non_nan = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(y, y), y);
        let big = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(y, s(2_147_483_648.0));
        let q = _mm512_mask_xor_epi32(_mm512_cvtps_epi32(non_nan), big, _mm512_cvtps_epi32(non_nan), i(-1));
        let r = _mm512_fnmadd_ps(y, s(0.785_156_25f32 * 2.0), xa);
        let r = _mm512_fnmadd_ps(y, s(2.418_756_5e-4f32 * 2.0), r);
        let r = _mm512_fnmadd_ps(y, s(3.774_895e-8f32 * 2.0), r);
        let r2 = _mm512_mul_ps(r, r);
        let r4 = _mm512_mul_ps(r2, r2);
        let ps = _mm512_fmadd_ps(r4, s(-1.951_529_6e-4), _mm512_fmadd_ps(r2, s(8.332_161e-3), s(-1.666_665_5e-1)));
        let sn = _mm512_add_ps(_mm512_mul_ps(ps, _mm512_mul_ps(r, r2)), r);
        let pc = _mm512_fmadd_ps(r4, s(2.443_315_7e-5), _mm512_fmadd_ps(r2, s(-1.388_731_6e-3), s(4.166_664_6e-2)));
        let cs = _mm512_add_ps(_mm512_mul_ps(pc, _mm512_mul_ps(r2, r2)), _mm512_fnmadd_ps(s(0.5), r2, s(1.0)));
        let swap = _mm512_test_epi32_mask(q, i(1));
        let overflow =
            _mm512_cmpgt_epi32_mask(q, i(0x200_0000)) & _mm512_cmp_ps_mask::<_CMP_LT_OQ>(xa, s(f32::INFINITY));
        let sn = _mm512_mask_blend_ps(overflow, sn, s(0.0));
        let cs = _mm512_mask_blend_ps(overflow, cs, s(1.0));
        let sin1 = _mm512_mask_blend_ps(swap, sn, cs);
        let sign_sin = _mm512_xor_si512(_mm512_slli_epi32::<30>(q), _mm512_castps_si512(x));
        let sin1 =
            _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(sin1), _mm512_and_si512(sign_sin, i(i32::MIN))));
        let cos1 = _mm512_mask_blend_ps(swap, cs, sn);
        let sign_cos = _mm512_slli_epi32::<30>(_mm512_and_si512(_mm512_add_epi32(q, i(1)), i(2)));
        let cos1 = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(cos1), sign_cos));
        (sin1, cos1)
    }

    /// `s[i], c[i] = sin_cos(x[i])` over whole vectors of 16.
    ///
    /// # Safety
    /// AVX-512F must be available; the three lengths equal, a multiple of 16.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn sin_cos_slice(x: &[f32], sn: &mut [f32], cs: &mut [f32]) {
        for ((xs, ss), cc) in x.chunks_exact(16).zip(sn.chunks_exact_mut(16)).zip(cs.chunks_exact_mut(16)) {
            // SAFETY: 16 floats each.
            unsafe {
                let (a, b) = sin_cos16(_mm512_loadu_ps(xs.as_ptr()));
                _mm512_storeu_ps(ss.as_mut_ptr(), a);
                _mm512_storeu_ps(cc.as_mut_ptr(), b);
            }
        }
    }

    /// `$name(x, y)`: `y[i] = $f(x[i])` over whole vectors of 16 (one function per `$f`, so
    /// that it inlines).
    macro_rules! map16 {
        ($name:ident, $f:ident) => {
            /// # Safety
            /// AVX-512F must be available; `x.len() == y.len()`, a multiple of 16.
            #[target_feature(enable = "avx512f")]
            pub(super) unsafe fn $name(x: &[f32], y: &mut [f32]) {
                for (xs, ys) in x.chunks_exact(16).zip(y.chunks_exact_mut(16)) {
                    // SAFETY: 16 floats each.
                    unsafe { _mm512_storeu_ps(ys.as_mut_ptr(), $f(_mm512_loadu_ps(xs.as_ptr()))) };
                }
            }
        };
    }
    map16!(exp_slice, exp16);
    map16!(tanh_slice, tanh16);
    map16!(sin_slice, sin16);
    map16!(cos_slice, cos16);

    /// The sine half of [`sin_cos16`] (wide's `sin`).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn sin16(x: __m512) -> __m512 {
        sin_cos16(x).0
    }

    /// The cosine half of [`sin_cos16`] (wide's `cos`).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn cos16(x: __m512) -> __m512 {
        sin_cos16(x).1
    }
}

/// `y[i] = sin(x[i])`.
///
/// # Panics
/// If the lengths differ.
pub fn sin_f32(x: &[f32], y: &mut [f32]) {
    map_lanes!(x, y, sin_slice, |v| v.sin())
}

/// `y[i] = cos(x[i])`.
///
/// # Panics
/// If the lengths differ.
pub fn cos_f32(x: &[f32], y: &mut [f32]) {
    map_lanes!(x, y, cos_slice, |v| v.cos())
}

/// `s[i] = sin(x[i])` and `c[i] = cos(x[i])` from one range reduction (`wide`'s
/// `sin` and `cos` are the two halves of its `sin_cos`, so the values are theirs).
///
/// # Panics
/// If the lengths differ.
pub fn sin_cos_f32(x: &[f32], s: &mut [f32], c: &mut [f32]) {
    assert!(x.len() == s.len() && x.len() == c.len(), "vmath: sin_cos lengths {} {} {}", x.len(), s.len(), c.len());
    let n = avx512_prefix(x.len());
    #[cfg(target_arch = "x86_64")]
    if n > 0 {
        // SAFETY: n > 0 only where AVX-512F is available; the three slices hold n elements.
        unsafe { avx512::sin_cos_slice(&x[..n], &mut s[..n], &mut c[..n]) };
    }
    let (x, s, c) = (&x[n..], &mut s[n..], &mut c[n..]);
    let mut xc = x.chunks_exact(8);
    let (mut sc, mut cc) = (s.chunks_exact_mut(8), c.chunks_exact_mut(8));
    for ((xs, ss), cs) in (&mut xc).zip(&mut sc).zip(&mut cc) {
        let (sv, cv) = f32x8::from(<[f32; 8]>::try_from(xs).expect("chunk of 8")).sin_cos();
        ss.copy_from_slice(&sv.to_array());
        cs.copy_from_slice(&cv.to_array());
    }
    let (xr, sr, cr) = (xc.remainder(), sc.into_remainder(), cc.into_remainder());
    if !xr.is_empty() {
        let mut buf = [0.0f32; 8];
        buf[..xr.len()].copy_from_slice(xr);
        let (sv, cv) = f32x8::from(buf).sin_cos();
        sr.copy_from_slice(&sv.to_array()[..xr.len()]);
        cr.copy_from_slice(&cv.to_array()[..xr.len()]);
    }
}

/// `y[i] = tan(x[i])` (as `sin / cos`).
///
/// # Panics
/// If the lengths differ.
pub fn tan_f32(x: &[f32], y: &mut [f32]) {
    map8(x, y, |v| v.tan())
}

/// `y[i] = atan(x[i])`.
///
/// # Panics
/// If the lengths differ.
pub fn atan_f32(x: &[f32], y: &mut [f32]) {
    map8(x, y, |v| v.atan())
}

/// `y[i] = ln(x[i])`.
///
/// # Panics
/// If the lengths differ.
pub fn ln_f32(x: &[f32], y: &mut [f32]) {
    map8(x, y, |v| v.ln())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f32, b: f32) -> f32 {
        if a == b {
            0.0
        } else {
            ((a - b) / b.abs().max(f32::MIN_POSITIVE)).abs()
        }
    }

    #[test]
    fn exp_matches_libm_on_a_dense_grid() {
        let x: Vec<f32> = (0..200_001).map(|i| -87.0 + 176.0 * i as f32 / 200_000.0).collect();
        let mut y = vec![0.0; x.len()];
        exp_f32(&x, &mut y);
        let worst = x.iter().zip(&y).map(|(&x, &y)| rel(y, x.exp())).fold(0.0, f32::max);
        assert!(worst < VMATH_F32_REL_TOL, "exp worst relative error {worst}");
        // below -87.3 the result is flushed to zero: absolute error below exp(-87.3) = 1.203e-38
        let x: Vec<f32> = (0..1000).map(|i| -87.31 - 20.0 * i as f32 / 1000.0).collect();
        let mut y = vec![0.0; x.len()];
        exp_f32(&x, &mut y);
        let bad: Vec<_> = x.iter().zip(&y).filter(|(&x, &y)| (y - x.exp()).abs() > 1.21e-38).take(3).collect();
        assert!(bad.is_empty(), "{bad:?}");
    }

    #[test]
    fn tanh_matches_libm_on_a_dense_grid() {
        let mut x: Vec<f32> = (0..200_001).map(|i| -12.0 + 24.0 * i as f32 / 200_000.0).collect();
        x.extend([1e-30, -1e-20, 1e-6, 0.624_999, 0.625, 0.625_001, 0.0, -0.0]);
        let mut y = vec![0.0; x.len()];
        tanh_f32(&x, &mut y);
        let worst = x.iter().zip(&y).map(|(&x, &y)| rel(y, x.tanh())).fold(0.0, f32::max);
        assert!(worst < VMATH_F32_REL_TOL, "tanh worst relative error {worst}");
    }

    fn grid(lo: f32, hi: f32, n: usize) -> Vec<f32> {
        (0..=n).map(|i| lo + (hi - lo) * i as f32 / n as f32).collect()
    }

    #[test]
    fn sin_cos_equals_sin_and_cos() {
        let x: Vec<f32> = (0..1003).map(|i| (i as f32 - 500.0) * 0.173).collect();
        let (mut s, mut c, mut s1, mut c1) = (vec![0.0; 1003], vec![0.0; 1003], vec![0.0; 1003], vec![0.0; 1003]);
        sin_cos_f32(&x, &mut s, &mut c);
        sin_f32(&x, &mut s1);
        cos_f32(&x, &mut c1);
        assert_eq!((s, c), (s1, c1));
    }

    /// The 16-lane AVX-512 exp, tanh and sin_cos give the 8-lane values bit for bit (dense grid,
    /// both branches of each, the x > 87 path, specials).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx512_exp_tanh_and_sin_cos_equal_the_8_lane_values() {
        if !avx512::available() {
            return;
        }
        let mut x: Vec<f32> = (0..200_000).map(|i| (i as f32 - 100_000.0) * 1e-3).collect();
        x.extend([0.0, -0.0, 1e-30, -1e-30, 87.0, 87.2, 87.4, 88.5, 89.0, -87.4, -104.0, 0.625, -0.625]);
        x.extend([f32::INFINITY, f32::NEG_INFINITY, f32::NAN, f32::MAX, f32::MIN, f32::MIN_POSITIVE]);
        while !x.len().is_multiple_of(16) {
            x.push(0.5);
        }
        // sin_cos: against the 8-lane path (x beyond 2^31 and the overflow branch too)
        let mut xt = x.clone();
        xt.extend([1e8, -3e9, 5.4e7, 1.7e38, -2.1e9, 123_456.79, 1e-40]);
        while !xt.len().is_multiple_of(16) {
            xt.push(-0.3);
        }
        let (mut s16, mut c16) = (vec![0.0f32; xt.len()], vec![0.0f32; xt.len()]);
        // SAFETY: AVX-512F is available (checked); lengths are a multiple of 16.
        unsafe { avx512::sin_cos_slice(&xt, &mut s16, &mut c16) };
        for (i, chunk) in xt.chunks(8).enumerate() {
            let (sv, cv) = f32x8::from(<[f32; 8]>::try_from(chunk).unwrap()).sin_cos();
            for l in 0..8 {
                let (a, b, p, q) = (s16[8 * i + l], sv.to_array()[l], c16[8 * i + l], cv.to_array()[l]);
                let same = |u: f32, v: f32| u.to_bits() == v.to_bits() || (u.is_nan() && v.is_nan());
                assert!(same(a, b) && same(p, q), "sin_cos({}): ({a}, {p}) vs ({b}, {q})", chunk[l]);
            }
        }
        for (name, wide16, lanes8) in [
            ("exp", avx512::exp_slice as unsafe fn(&[f32], &mut [f32]), exp8 as fn(f32x8) -> f32x8),
            ("tanh", avx512::tanh_slice, tanh8),
        ] {
            let (mut a, mut b) = (vec![0.0f32; x.len()], vec![0.0f32; x.len()]);
            // SAFETY: AVX-512F is available (checked); lengths are a multiple of 16.
            unsafe { wide16(&x, &mut a) };
            map8(&x, &mut b, lanes8);
            for (i, (p, q)) in a.iter().zip(&b).enumerate() {
                assert!(p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan()), "{name}({}): {p} vs {q}", x[i]);
            }
        }
    }

    #[test]
    fn sin_cos_tan_match_libm_on_a_dense_grid() {
        let mut x = grid(-100.0, 100.0, 400_000);
        x.extend([0.0, -0.0, 1e-30, std::f32::consts::PI, std::f32::consts::FRAC_PI_2, 2.0 * std::f32::consts::PI]);
        let (mut s, mut c, mut t) = (vec![0.0; x.len()], vec![0.0; x.len()], vec![0.0; x.len()]);
        sin_f32(&x, &mut s);
        cos_f32(&x, &mut c);
        tan_f32(&x, &mut t);
        // libm in f64, rounded: the reference is the correctly rounded f32 value
        let worst = |y: &[f32], f: fn(f64) -> f64| {
            x.iter().zip(y).map(|(&x, &y)| (y as f64 - f(x as f64) as f32 as f64).abs()).fold(0.0, f64::max)
        };
        let (ws, wc) = (worst(&s, f64::sin), worst(&c, f64::cos));
        assert!(ws < VMATH_F32_TRIG_ABS_TOL as f64 && wc < VMATH_F32_TRIG_ABS_TOL as f64, "sin {ws:e}, cos {wc:e}");
        // tan: error relative to its condition 1 + tan^2
        let wt = x
            .iter()
            .zip(&t)
            .map(|(&x, &y)| {
                let want = (x as f64).tan();
                (y as f64 - want).abs() / (1.0 + want * want)
            })
            .fold(0.0, f64::max);
        assert!(wt < 2.0 * VMATH_F32_TRIG_ABS_TOL as f64, "tan {wt:e}");
    }

    #[test]
    fn atan_and_ln_match_libm() {
        let mut x = grid(-50.0, 50.0, 200_000);
        x.extend([1e-30, -1e-20, 1e20, -1e30, 0.0]);
        let mut y = vec![0.0; x.len()];
        atan_f32(&x, &mut y);
        let worst = x.iter().zip(&y).map(|(&x, &y)| rel(y, x.atan())).fold(0.0, f32::max);
        assert!(worst < VMATH_F32_REL_TOL, "atan worst relative error {worst}");
        // ln on a geometric grid over 1e-30 .. 1e30, away from 1 (where ln is ~0) and at 1
        let x: Vec<f32> = (0..=200_000).map(|i| 10f32.powf(-30.0 + 60.0 * i as f32 / 200_000.0)).collect();
        let mut y = vec![0.0; x.len()];
        ln_f32(&x, &mut y);
        let worst = x
            .iter()
            .zip(&y)
            .map(|(&x, &y)| (y as f64 - (x as f64).ln()).abs() / (x as f64).ln().abs().max(1.0))
            .fold(0.0, f64::max);
        assert!(worst < VMATH_F32_REL_TOL as f64, "ln worst error {worst:e}");
        let mut one = [0.0f32];
        ln_f32(&[1.0], &mut one);
        assert_eq!(one[0], 0.0);
    }

    #[test]
    fn special_values_and_odd_lengths() {
        let x = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 100.0, -100.0, 0.5, 1.5];
        let mut e = [0.0; 7];
        exp_f32(&x, &mut e);
        assert!(e[0].is_nan() && e[1] == f32::INFINITY && e[2] == 0.0 && e[3] == f32::INFINITY && e[4] == 0.0);
        let mut t = [0.0; 7];
        tanh_f32(&x, &mut t);
        assert!(t[0].is_nan() && t[1] == 1.0 && t[2] == -1.0 && t[3] == 1.0 && t[4] == -1.0);
        assert!(rel(t[5], 0.5f32.tanh()) < VMATH_F32_REL_TOL && rel(t[6], 1.5f32.tanh()) < VMATH_F32_REL_TOL);
    }
}
