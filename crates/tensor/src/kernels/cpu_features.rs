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

/// The x86-64 CPU's vendor string (`"AuthenticAMD"`, `"GenuineIntel"`, ...) and display
/// family (base family, plus the extended family when the base is 15), from CPUID leaf 0
/// and 1; `None` elsewhere. AMD Zen 4 is family 25 (0x19), Zen 5 family 26 (0x1A).
pub fn vendor_family() -> Option<(String, u32)> {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: CPUID leaves 0 and 1 exist on every x86-64 CPU (the intrinsic is safe on
        // newer Rust, unsafe on older: hence the allow).
        #[allow(unused_unsafe)]
        let (l0, l1) = unsafe { (std::arch::x86_64::__cpuid(0), std::arch::x86_64::__cpuid(1)) };
        let vendor: Vec<u8> = [l0.ebx, l0.edx, l0.ecx].iter().flat_map(|r| r.to_le_bytes()).collect();
        let base = (l1.eax >> 8) & 0xF;
        let family = if base == 0xF { base + ((l1.eax >> 20) & 0xFF) } else { base };
        Some((String::from_utf8_lossy(&vendor).into_owned(), family))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// Whether this is an AMD CPU of family 25 (Zen 3 and Zen 4; the AVX-512 ones are Zen 4) or
/// later, where the fused FFT backward pass pays off from shards of 32 samples
/// (`conv2d::fft_fused_min_batch`).
pub fn amd_zen4_or_later() -> bool {
    static ZEN4: OnceLock<bool> = OnceLock::new();
    *ZEN4.get_or_init(|| matches!(vendor_family(), Some((v, f)) if v == "AuthenticAMD" && f >= 0x19))
}

/// Whether this is an AMD CPU of family 26 (Zen 5) or later: AVX-512 on full-width
/// datapaths, where the FFT conv kernels pay off from smaller batches than on Zen 4
/// (`conv2d::fft_min_batch`).
pub fn amd_zen5_or_later() -> bool {
    static ZEN5: OnceLock<bool> = OnceLock::new();
    *ZEN5.get_or_init(|| matches!(vendor_family(), Some((v, f)) if v == "AuthenticAMD" && f >= 0x1A))
}

#[cfg(test)]
mod tests {
    /// CPUID's vendor and family are what the kernel reports in /proc/cpuinfo (Linux x86-64).
    #[test]
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    fn vendor_family_matches_proc_cpuinfo() {
        let info = std::fs::read_to_string("/proc/cpuinfo").expect("/proc/cpuinfo");
        let field = |name: &str| {
            info.lines()
                .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| panic!("no {name} in /proc/cpuinfo"))
        };
        let (vendor, family) = super::vendor_family().expect("x86-64");
        assert_eq!(vendor, field("vendor_id"));
        assert_eq!(family.to_string(), field("cpu family"));
        assert_eq!(super::amd_zen5_or_later(), vendor == "AuthenticAMD" && family >= 26);
        assert_eq!(super::amd_zen4_or_later(), vendor == "AuthenticAMD" && family >= 25);
    }
}
