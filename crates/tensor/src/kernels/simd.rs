//! The element type -> SIMD vector mapping the CPU kernels are written against:
//! `f32` -> [`wide::f32x8`], `f64` -> [`wide::f64x4`]. With the workspace's
//! `target-cpu=x86-64-v3` both are one AVX2 register and `mul_add` is one FMA.

use std::ops::{Add, Mul};

use wide::{f32x8, f64x4};

use crate::Float;

/// A [`Float`] with a SIMD vector type of [`SimdFloat::LANES`] lanes.
pub trait SimdFloat: Float {
    /// The vector type (`f32x8` or `f64x4`).
    type V: Copy + Send + Sync + Add<Output = Self::V> + Mul<Output = Self::V>;
    /// Lanes per vector: 8 for `f32`, 4 for `f64`.
    const LANES: usize;
    /// All lanes equal to `x`.
    fn splat(x: Self) -> Self::V;
    /// `a * b + c` per lane (one FMA where the CPU has it; may round once or twice).
    fn mul_add(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// Sum of the lanes.
    fn reduce_add(v: Self::V) -> Self;
    /// The lanes as an array slice written into `out[..LANES]`.
    ///
    /// # Panics
    /// If `out` is shorter than `LANES`.
    fn write_lanes(v: Self::V, out: &mut [Self]);
    /// Loads `LANES` values from `s[..LANES]`.
    ///
    /// # Panics
    /// If `s` is shorter than `LANES`.
    fn load(s: &[Self]) -> Self::V;
    /// Loads `LANES` values starting at `p` (no alignment needed).
    ///
    /// # Safety
    /// `p..p + LANES` must be readable.
    unsafe fn load_ptr(p: *const Self) -> Self::V;
    /// Stores the lanes to `p..p + LANES` (no alignment needed).
    ///
    /// # Safety
    /// `p..p + LANES` must be writable.
    unsafe fn store_ptr(p: *mut Self, v: Self::V);
}

macro_rules! impl_simd {
    ($t:ident, $v:ident, $lanes:expr) => {
        impl SimdFloat for $t {
            type V = $v;
            const LANES: usize = $lanes;
            #[inline(always)]
            fn splat(x: Self) -> $v {
                $v::splat(x)
            }
            #[inline(always)]
            fn mul_add(a: $v, b: $v, c: $v) -> $v {
                a.mul_add(b, c)
            }
            #[inline(always)]
            fn reduce_add(v: $v) -> Self {
                // Fixed order (lane 0 first) so results do not depend on the shuffle tree.
                v.to_array().iter().fold(0.0, |s, &x| s + x)
            }
            #[inline(always)]
            fn write_lanes(v: $v, out: &mut [Self]) {
                out[..$lanes].copy_from_slice(&v.to_array());
            }
            #[inline(always)]
            fn load(s: &[Self]) -> $v {
                let a: [$t; $lanes] = s[..$lanes].try_into().unwrap();
                $v::from(a)
            }
            #[inline(always)]
            unsafe fn load_ptr(p: *const Self) -> $v {
                // SAFETY: the caller guarantees `p..p+LANES` is readable; the vector type
                // is plain data (bytemuck::Pod), so an unaligned read of its bytes is valid.
                unsafe { p.cast::<$v>().read_unaligned() }
            }
            #[inline(always)]
            unsafe fn store_ptr(p: *mut Self, v: $v) {
                // SAFETY: the caller guarantees `p..p+LANES` is writable; unaligned write of
                // plain data.
                unsafe { p.cast::<$v>().write_unaligned(v) }
            }
        }
    };
}
impl_simd!(f32, f32x8, 8);
impl_simd!(f64, f64x4, 4);
