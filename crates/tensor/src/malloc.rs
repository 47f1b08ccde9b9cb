//! Allocator settings for training loops.
//!
//! Most op outputs come from [`crate::pool`], but buffers of lengths the pool does not
//! keep, and everything once the pool is full, still go through malloc; at batch 1024 a
//! hidden activation is 2 MiB. glibc serves blocks that large with `mmap` and returns them
//! with `munmap`, so every step would page-fault and zero them in the kernel (about a fifth
//! of a step's time before the pool, measured with perf). Raising the mmap and trim
//! thresholds keeps those blocks on the heap, where the next step reuses them.

/// Keeps large blocks on the heap (glibc: `M_MMAP_THRESHOLD` 256 MiB, `M_TRIM_THRESHOLD`
/// 1 GiB). Call once at program start; a no-op on other platforms. Returns whether the
/// settings were applied.
pub fn keep_large_blocks_on_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt is glibc's documented, thread-safe setter for allocator
        // parameters; it takes two ints and touches no memory of ours.
        unsafe { mallopt(M_MMAP_THRESHOLD, 256 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
