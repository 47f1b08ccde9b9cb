//! Peak FMA rate of this machine: a tight loop of independent fused multiply-adds on
//! `wide` f32x8 / f64x4 vectors (through `latflow_tensor::kernels::simd::SimdFloat`;
//! 12 chains, enough to cover the FMA latency on two ports),
//! on one thread and on every core at once; and, where the CPU has AVX-512F, the same loop
//! on 16-lane `__m512` registers. The ceilings the conv2d benches compare to.

use std::hint::black_box;
use std::time::Instant;

use latflow_tensor::kernels::simd::SimdFloat;

/// Independent accumulator chains per thread.
const CHAINS: usize = 12;

/// Runs `iters` rounds of `CHAINS` FMAs; returns a value the optimizer cannot drop.
#[inline(never)]
fn fma_loop<T: SimdFloat>(iters: usize, seed: f64) -> f64 {
    let m = T::splat(black_box(T::from_f64(0.999_999)));
    let a = T::splat(black_box(T::from_f64(1e-7)));
    let mut acc = [T::splat(T::ZERO); CHAINS];
    for (i, v) in acc.iter_mut().enumerate() {
        *v = T::splat(T::from_f64(seed + i as f64));
    }
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = T::mul_add(*v, m, a);
        }
    }
    acc.iter().fold(0.0, |s, v| s + T::reduce_add(*v).to_f64())
}

/// Measured peak rates in GFLOP/s (one FMA = 2 flops per lane).
#[derive(Clone, Copy, Debug)]
pub struct Peak {
    /// f32 (f32x8), one thread.
    pub f32_one: f64,
    /// f32 (f32x8), all cores.
    pub f32_all: f64,
    /// f64 (f64x4), one thread.
    pub f64_one: f64,
    /// f64 (f64x4), all cores.
    pub f64_all: f64,
    /// f32 on 16-lane AVX-512 registers, one thread (`None` without AVX-512F).
    pub avx512_one: Option<f64>,
    /// f32 on 16-lane AVX-512 registers, all cores.
    pub avx512_all: Option<f64>,
    /// Threads used for the `all` figures.
    pub threads: usize,
}

/// [`fma_loop`] on `__m512` registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fma_loop_avx512_inner(iters: usize, seed: f64) -> f64 {
    use std::arch::x86_64::*;
    let m = _mm512_set1_ps(black_box(0.999_999));
    let a = _mm512_set1_ps(black_box(1e-7));
    let mut acc = [_mm512_setzero_ps(); CHAINS];
    for (i, v) in acc.iter_mut().enumerate() {
        *v = _mm512_set1_ps((seed + i as f64) as f32);
    }
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, m, a);
        }
    }
    acc.iter().fold(0.0, |s, v| s + _mm512_reduce_add_ps(*v) as f64)
}

#[cfg(target_arch = "x86_64")]
#[inline(never)]
fn fma_loop_avx512(iters: usize, seed: f64) -> f64 {
    assert!(std::arch::is_x86_feature_detected!("avx512f"));
    // SAFETY: AVX-512F is present (asserted).
    unsafe { fma_loop_avx512_inner(iters, seed) }
}

fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// One thread's FMA loop: `(iters, seed) -> checksum`.
type LoopFn = fn(usize, f64) -> f64;

/// Best of `reps` timings of `threads` threads each running `iters` rounds. Short runs,
/// best of many: on a shared machine most short runs get whole cores.
fn rate(threads: usize, iters: usize, lanes: usize, reps: usize, f: LoopFn) -> f64 {
    let flops = (threads * iters * CHAINS * lanes * 2) as f64;
    let mut best = 0.0f64;
    for _ in 0..reps {
        let t = Instant::now();
        std::thread::scope(|s| {
            for i in 0..threads {
                s.spawn(move || black_box(f(iters, i as f64)));
            }
        });
        best = best.max(flops / t.elapsed().as_secs_f64() / 1e9);
    }
    best
}

/// Measures the peak FMA rates (best of 40 runs of a few milliseconds each).
pub fn measure() -> Peak {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let iters = 400_000;
    let (f32f, f64f): (LoopFn, LoopFn) = (fma_loop::<f32>, fma_loop::<f64>);
    Peak {
        f32_one: rate(1, iters, 8, 40, f32f),
        f32_all: rate(threads, iters, 8, 40, f32f),
        f64_one: rate(1, iters, 4, 40, f64f),
        f64_all: rate(threads, iters, 4, 40, f64f),
        #[cfg(target_arch = "x86_64")]
        avx512_one: has_avx512().then(|| rate(1, iters, 16, 40, fma_loop_avx512)),
        #[cfg(target_arch = "x86_64")]
        avx512_all: has_avx512().then(|| rate(threads, iters, 16, 40, fma_loop_avx512)),
        #[cfg(not(target_arch = "x86_64"))]
        avx512_one: None,
        #[cfg(not(target_arch = "x86_64"))]
        avx512_all: None,
        threads,
    }
}

/// Prints the peak rates.
pub fn print(p: &Peak) {
    println!("peak FMA rate (wide f32x8 / f64x4, {CHAINS} chains per thread):");
    println!("  f32: {:7.1} GFLOP/s on 1 thread, {:7.1} GFLOP/s on {} threads", p.f32_one, p.f32_all, p.threads);
    println!("  f64: {:7.1} GFLOP/s on 1 thread, {:7.1} GFLOP/s on {} threads", p.f64_one, p.f64_all, p.threads);
    if let (Some(one), Some(all)) = (p.avx512_one, p.avx512_all) {
        println!(
            "  f32 on AVX-512 (16 lanes): {one:7.1} GFLOP/s on 1 thread, {all:7.1} GFLOP/s on {} threads",
            p.threads
        );
    }
}
