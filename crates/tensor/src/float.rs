//! The scalar types the engine is generic over: `f32` (training, sampling) and `f64`
//! (gradient audits, physics reference values).

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Rem, Sub, SubAssign};

/// A floating-point element type: `f32` or `f64`.
///
/// Only what the kernels and backward rules need; conversions go through `f64` so
/// constants can be written once (`T::from_f64(0.5)`).
pub trait Float:
    crate::pool::PoolAccess
    + Copy
    + Send
    + Sync
    + Debug
    + Display
    + Default
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Rem<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
    + 'static
{
    /// Additive identity.
    const ZERO: Self;
    /// Multiplicative identity.
    const ONE: Self;
    /// Machine epsilon of the type.
    const EPSILON: Self;
    /// Name used in tables and checkpoints ("f32", "f64").
    const NAME: &'static str;
    /// Lossy conversion from `f64`.
    fn from_f64(x: f64) -> Self;
    /// Conversion to `f64`.
    fn to_f64(self) -> f64;
    /// e^x.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// Sine.
    fn sin(self) -> Self;
    /// Cosine.
    fn cos(self) -> Self;
    /// Tangent.
    fn tan(self) -> Self;
    /// Arc tangent, in (-pi/2, pi/2).
    fn atan(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// Absolute value.
    fn abs(self) -> Self;
    /// Integer power.
    fn powi(self, n: i32) -> Self;
    /// Larger of two values (NaN-ignoring as `f64::max`).
    fn max(self, other: Self) -> Self;
    /// Smaller of two values.
    fn min(self, other: Self) -> Self;
    /// Euclidean remainder, in [0, m) for m > 0.
    fn rem_euclid(self, m: Self) -> Self;
    /// `(self.rem_euclid(m), true)` for `-m < self < 2m` (then `m > 0`), by selects alone
    /// so that loops over it vectorize; `(_, false)` otherwise (NaN included), where the
    /// caller takes [`Float::rem_euclid`]. Bit for bit: `fmod(x, m)` is `x` for `|x| < m`
    /// (plus `m`, rounded, when negative) and `x - m`, exact (Sterbenz), for `m <= x < 2m`.
    #[inline(always)]
    fn wrap_near(self, m: Self) -> (Self, bool) {
        let a = if self < Self::ZERO { self + m } else { self };
        (if a >= m { a - m } else { a }, self > -m && self < m + m)
    }
    /// Whether the value is neither NaN nor infinite.
    fn is_finite(self) -> bool;
    /// `y[i] = exp(x[i])`; `f32` uses an 8-lane SIMD kernel ([`crate::kernels::vmath`]),
    /// `f64` the scalar libm function (audits want its last bit).
    fn exp_slice(x: &[Self], y: &mut [Self]) {
        map_slice(x, y, Self::exp)
    }
    /// `y[i] = tanh(x[i])`; SIMD for `f32` as [`Float::exp_slice`].
    fn tanh_slice(x: &[Self], y: &mut [Self]) {
        map_slice(x, y, Self::tanh)
    }
    /// `y[i] = sin(x[i])`; SIMD for `f32` as [`Float::exp_slice`].
    fn sin_slice(x: &[Self], y: &mut [Self]) {
        map_slice(x, y, Self::sin)
    }
    /// `y[i] = cos(x[i])`; SIMD for `f32` as [`Float::exp_slice`].
    fn cos_slice(x: &[Self], y: &mut [Self]) {
        map_slice(x, y, Self::cos)
    }
    /// `y[i] = tan(x[i])`; SIMD for `f32` as [`Float::exp_slice`].
    fn tan_slice(x: &[Self], y: &mut [Self]) {
        map_slice(x, y, Self::tan)
    }
    /// `y[i] = atan(x[i])`; SIMD for `f32` as [`Float::exp_slice`].
    fn atan_slice(x: &[Self], y: &mut [Self]) {
        map_slice(x, y, Self::atan)
    }
    /// `y[i] = ln(x[i])`; SIMD for `f32` as [`Float::exp_slice`].
    fn ln_slice(x: &[Self], y: &mut [Self]) {
        map_slice(x, y, Self::ln)
    }
    /// `s[i] = sin(x[i])`, `c[i] = cos(x[i])`: the values of [`Float::sin_slice`] and
    /// [`Float::cos_slice`], for `f32` from one SIMD range reduction.
    fn sin_cos_slice(x: &[Self], s: &mut [Self], c: &mut [Self]) {
        Self::sin_slice(x, s);
        Self::cos_slice(x, c);
    }
}

/// `y[i] = f(x[i])`: the scalar default of the `*_slice` methods.
fn map_slice<T: Copy>(x: &[T], y: &mut [T], f: impl Fn(T) -> T) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = f(v);
    }
}

macro_rules! impl_float {
    ($t:ident $(, $extra:item)*) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const EPSILON: Self = $t::EPSILON;
            const NAME: &'static str = stringify!($t);
            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn exp(self) -> Self {
                $t::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                $t::ln(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                $t::tanh(self)
            }
            #[inline(always)]
            fn sin(self) -> Self {
                $t::sin(self)
            }
            #[inline(always)]
            fn cos(self) -> Self {
                $t::cos(self)
            }
            #[inline(always)]
            fn tan(self) -> Self {
                $t::tan(self)
            }
            #[inline(always)]
            fn atan(self) -> Self {
                $t::atan(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                $t::sqrt(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                $t::abs(self)
            }
            #[inline(always)]
            fn powi(self, n: i32) -> Self {
                $t::powi(self, n)
            }
            #[inline(always)]
            fn max(self, other: Self) -> Self {
                $t::max(self, other)
            }
            #[inline(always)]
            fn min(self, other: Self) -> Self {
                $t::min(self, other)
            }
            #[inline(always)]
            fn rem_euclid(self, m: Self) -> Self {
                let (r, near) = self.wrap_near(m);
                if near {
                    return r;
                }
                // |x| < 16m: fmod by long division, subtracting 8m, 4m, 2m, m where they fit;
                // each difference is exact (Sterbenz), so this is fmod's exact remainder
                // (libm's loops bit by bit and is slow)
                if m > 0.0 && self.abs() < 16.0 * m {
                    let mut r = self.abs();
                    let mut j = 8.0 * m;
                    while j >= m {
                        if r >= j {
                            r -= j;
                        }
                        j *= 0.5;
                    }
                    let r = if self < 0.0 { -r } else { r };
                    let r = if r < 0.0 { r + m } else { r };
                    return if r >= m { r - m } else { r };
                }
                let r = $t::rem_euclid(self, m);
                // rem_euclid can round up to exactly m for tiny negative inputs.
                if r >= m {
                    r - m
                } else {
                    r
                }
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                $t::is_finite(self)
            }
            $($extra)*
        }
    };
}
impl_float!(
    f32,
    fn exp_slice(x: &[f32], y: &mut [f32]) {
        crate::kernels::vmath::exp_f32(x, y)
    },
    fn tanh_slice(x: &[f32], y: &mut [f32]) {
        crate::kernels::vmath::tanh_f32(x, y)
    },
    fn sin_slice(x: &[f32], y: &mut [f32]) {
        crate::kernels::vmath::sin_f32(x, y)
    },
    fn cos_slice(x: &[f32], y: &mut [f32]) {
        crate::kernels::vmath::cos_f32(x, y)
    },
    fn tan_slice(x: &[f32], y: &mut [f32]) {
        crate::kernels::vmath::tan_f32(x, y)
    },
    fn atan_slice(x: &[f32], y: &mut [f32]) {
        crate::kernels::vmath::atan_f32(x, y)
    },
    fn ln_slice(x: &[f32], y: &mut [f32]) {
        crate::kernels::vmath::ln_f32(x, y)
    },
    fn sin_cos_slice(x: &[f32], s: &mut [f32], c: &mut [f32]) {
        crate::kernels::vmath::sin_cos_f32(x, s, c)
    }
);
impl_float!(f64);

#[cfg(test)]
mod tests {
    use super::Float;

    /// The definition the fast paths of `Float::rem_euclid` must reproduce bit for bit.
    fn slow<T: Float + std::ops::Rem<Output = T>>(x: T, m: T) -> T {
        let r = x % m;
        let r = if r < T::ZERO { r + m.abs() } else { r };
        if r >= m {
            r - m
        } else {
            r
        }
    }

    fn check<T: Float + std::ops::Rem<Output = T>>(xs: &[f64], m: f64) {
        let m = T::from_f64(m);
        for &x in xs {
            let x = T::from_f64(x);
            let (fast, want) = (x.rem_euclid(m), slow(x, m));
            assert!(
                fast.to_f64().to_bits() == want.to_f64().to_bits()
                    || (fast.to_f64().is_nan() && want.to_f64().is_nan()),
                "rem_euclid({x}, {m}): {fast} vs {want}"
            );
        }
    }

    #[test]
    fn rem_euclid_fast_paths_match_fmod_bit_for_bit() {
        let tau = std::f64::consts::TAU;
        let mut xs = vec![0.0, -0.0, 1e-30, -1e-30, -1e-8, f64::NAN, f64::INFINITY, -f64::INFINITY, 1e30, -1e30];
        for k in -40..=40 {
            let base = k as f64 * tau / 4.0;
            for d in [-1e-6, -1e-12, 0.0, 1e-12, 1e-6, 0.3] {
                xs.push(base + d);
            }
        }
        for i in 0..4000 {
            xs.push((i as f64 * 0.618_033_988_749_9).fract() * 6.0 * tau - 2.0 * tau);
            xs.push((i as f64 * 0.754_877_666_246_7).fract() * 40.0 * tau - 20.0 * tau);
        }
        for k in -17..=17 {
            for d in [-1e-6, 0.0, 1e-6] {
                xs.push(k as f64 * tau + d);
                xs.push(k as f64 * 1.5 + d);
            }
        }
        for m in [tau, 1.5, 1.0, 0.1] {
            check::<f32>(&xs, m);
            check::<f64>(&xs, m);
        }
    }
}
