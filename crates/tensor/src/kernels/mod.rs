//! CPU kernels. Each optimized kernel has a plain scalar reference next to it that the
//! tests compare against.

pub mod conv2d;
#[cfg(target_arch = "x86_64")]
pub mod conv2d_avx512;
#[cfg(target_arch = "x86_64")]
pub mod conv2d_fft;
pub mod conv2d_shape;
pub mod conv2d_simd;
#[cfg(target_arch = "x86_64")]
pub mod conv2d_winograd;
pub mod conv2d_winograd_scalar;
pub mod cpu_features;
pub mod layout;
pub mod matmul;
pub mod simd;
pub mod vmath;
