//! CPU features chosen at run time.

use std::sync::OnceLock;

/// Whether the CPU has AVX-512F and `LATFLOW_NO_AVX512` is unset (checked once): the
/// AVX-512 conv kernels and vector math run only then.
pub fn avx512_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::env::var_os("LATFLOW_NO_AVX512").is_none() && std::arch::is_x86_feature_detected!("avx512f")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}
