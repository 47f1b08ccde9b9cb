//! conv2d with circular (periodic) padding: NCHW, stride 1, odd square kernel `k`,
//! padding `k/2` wrapping around the lattice. Same function as PyTorch
//! `Conv2d(padding=k//2, padding_mode="circular")`, i.e. a cross-correlation:
//!
//! `y[n,o,i,j] = b[o] + sum_{c,a,e} w[o,c,a,e] x[n,c,(i+a-p) mod H,(j+e-p) mod W]`, p = k/2.
//!
//! Derivatives (same periodic indexing):
//! `dx[n,c,i,j] = sum_{o,a,e} w[o,c,a,e] dy[n,o,(i-a+p) mod H,(j-e+p) mod W]`,
//! `dw[o,c,a,e] = sum_{n,i,j} dy[n,o,i,j] x[n,c,(i+a-p) mod H,(j+e-p) mod W]`,
//! `db[o] = sum_{n,i,j} dy[n,o,i,j]`.
//!
//! The entry points dispatch to the fastest kernel for the shape; [`reference`](mod@reference) holds
//! the plain scalar loops every other kernel is tested against.

use std::any::TypeId;

use super::conv2d_simd as simd;
use crate::Float;

pub use super::conv2d_shape::{Conv2dShape, Pass};

/// Which CPU kernel a conv2d call runs (benchmarks and tests pick one; the plain entry
/// points [`forward`], [`backward_input`] and [`backward_weight`] pick for you).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The plain scalar loops of [`reference`](mod@reference).
    Scalar,
    /// `wide` SIMD kernels ([`crate::kernels::conv2d_simd`]), one thread.
    Simd,
    /// SIMD kernels with rayon over the batch (always splits when the batch has more than
    /// one sample).
    SimdThreaded,
    /// AVX-512 kernels ([`crate::kernels::conv2d_avx512`]) for `f32` lattices 8 sites wide
    /// with an even height, one thread. Only where [`Backend::available`] lists it.
    Avx512,
    /// The AVX-512 kernels with rayon over the batch.
    Avx512Threaded,
    /// Winograd F(2x2, 3x3) AVX-512 kernels ([`crate::kernels::conv2d_winograd`]) for `f32`
    /// lattices 8 wide with a height that is a multiple of 8 and a 3x3 kernel, one thread
    /// (2.25x fewer multiplications). Only where [`Backend::available`] lists it.
    Winograd,
    /// The Winograd kernels with rayon over the batch.
    WinogradThreaded,
    /// FFT AVX-512 kernels ([`crate::kernels::conv2d_fft`]) for `f32` 8x8 lattices and odd
    /// kernels up to 7x7, samples as lanes, one thread (124 multiply-adds per channel pair
    /// and sample against Winograd's 256). Only where [`Backend::available`] lists it.
    Fft,
    /// The FFT kernels with rayon over fixed chunks of the batch.
    FftThreaded,
}

impl Backend {
    /// The backends that can run shape `s` in element type `T` on this CPU: the scalar
    /// reference and the `wide` SIMD kernels always, the AVX-512 ones for `f32`
    /// lattices 8 wide when the CPU has AVX-512F (and `LATFLOW_NO_AVX512` is unset), the
    /// Winograd ones for `f32` lattices 8 wide, heights a multiple of 8 and 3x3 kernels on
    /// the same CPUs (unless `LATFLOW_NO_WINOGRAD` is set), the FFT ones for `f32` 8x8
    /// lattices with odd kernels up to 7 on the same CPUs (unless `LATFLOW_NO_FFT` is set).
    pub fn available<T: 'static>(s: &Conv2dShape) -> Vec<Backend> {
        let mut v = vec![Backend::Scalar, Backend::Simd, Backend::SimdThreaded];
        if avx512_fits::<T>(s) {
            v.extend([Backend::Avx512, Backend::Avx512Threaded]);
        }
        if winograd_fits::<T>(s) {
            v.extend([Backend::Winograd, Backend::WinogradThreaded]);
        }
        if fft_fits::<T>(s) {
            v.extend([Backend::Fft, Backend::FftThreaded]);
        }
        v
    }

    /// Short name for tables: `scalar`, `simd`, `simd+threads`, `avx512`, `avx512+threads`,
    /// `winograd`, `winograd+threads`, `fft`, `fft+threads`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Scalar => "scalar",
            Backend::Simd => "simd",
            Backend::SimdThreaded => "simd+threads",
            Backend::Avx512 => "avx512",
            Backend::Avx512Threaded => "avx512+threads",
            Backend::Winograd => "winograd",
            Backend::WinogradThreaded => "winograd+threads",
            Backend::Fft => "fft",
            Backend::FftThreaded => "fft+threads",
        }
    }
}

/// Whether the AVX-512 kernels run shape `s` in element type `T` on this CPU.
fn avx512_fits<T: 'static>(s: &Conv2dShape) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        TypeId::of::<T>() == TypeId::of::<f32>() && super::conv2d_avx512::fits(s) && super::conv2d_avx512::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = s;
        false
    }
}

/// Whether the Winograd kernels run shape `s` in element type `T` on this CPU.
fn winograd_fits<T: 'static>(s: &Conv2dShape) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        TypeId::of::<T>() == TypeId::of::<f32>()
            && super::conv2d_winograd::fits(s)
            && super::conv2d_winograd::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = s;
        false
    }
}

/// Whether the FFT kernels run shape `s` in element type `T` on this CPU.
fn fft_fits<T: 'static>(s: &Conv2dShape) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        TypeId::of::<T>() == TypeId::of::<f32>() && super::conv2d_fft::fits(s) && super::conv2d_fft::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = s;
        false
    }
}

/// Multiply-adds below which [`forward`], [`backward_input`] and [`backward_weight`]
/// stay on one thread: about 20 us of single-core SIMD work (2^20 MACs at ~70 GFLOP/s).
/// Below it, waking rayon's workers and splitting the batch costs a noticeable share
/// of the call (batch 64 of the tutorial's 1->8 and 8->2 layers stays on one thread,
/// 8->8 at batch 64 is split).
pub const THREAD_MIN_MACS: usize = 1 << 20;

/// The backend the plain forward entry point uses for shape `s` in element type `T`:
/// [`auto_backend_for`] with [`Pass::Forward`].
pub fn auto_backend<T: 'static>(s: &Conv2dShape) -> Backend {
    auto_backend_for::<T>(Pass::Forward, s)
}

/// Whether the plain entry points take the Winograd kernels for `pass` of `s` (where they
/// fit, [`Backend::available`]). A pass reads `a` channels and writes `b` (forward
/// `cin -> cout`, input gradient `cout -> cin`): Winograd when `a, b >= 3` and `a b >= 24`;
/// the weight gradient (pairs of `cin` and `cout`): when both are at least 8.
///
/// Measured 2026-11-30 21:00 UTC on the 2-core dev box (`lscpu`: AMD EPYC, Zen 4, AVX-512
/// as two 256-bit halves; shared, load average 3.6-4.1, so only one-thread ratios are
/// reliable: the other core was mostly busy) with `CONV2D_SUMMARY_ONLY=1 cargo bench
/// --bench conv2d -- f32/`, 8x8, 3x3; speedup = direct AVX-512 time / Winograd time in the
/// same run, one thread, batch 64 / 1024:
///
/// - forward 8 -> 8: 1.64x / 1.76x; input gradient 8 -> 8: 1.61x / 1.62x; weight
///   gradient 8 -> 8: 1.11x / 1.24x: Winograd;
/// - forward 8 -> 3: 1.27x / 1.34x; input gradient of 8 -> 3 (a 3 -> 8 pass): 1.21x /
///   1.13x: Winograd;
/// - forward 8 -> 2: 1.06x / 1.05x, 2 -> 8: 1.03x / 1.07x; input gradients of 8 -> 2 and
///   2 -> 8: 1.03x / 1.08x, 1.06x / 1.10x: within the noise of a shared machine, direct
///   kept;
/// - forward 1 -> 8: 0.65x / 0.83x; input gradient of 1 -> 8 (an 8 -> 1 pass, where the
///   direct kernel rolls the single output): 0.46x / 0.48x: direct;
/// - weight gradients with fewer than 8 channels on a side: 1 -> 8 0.42x / 0.50x,
///   8 -> 2 0.63x / 0.72x, 2 -> 8 0.66x / 0.73x, 8 -> 3 0.83x / 0.70x: direct (the direct
///   weight-gradient tiles share each loaded vector among three taps; with few channels on
///   a side the transforms cost more than the products save).
///
/// `LATFLOW_NO_WINOGRAD=1` turns the Winograd kernels off (they are then neither offered
/// nor picked).
fn winograd_preferred<T: 'static>(pass: Pass, s: &Conv2dShape) -> bool {
    let wanted = match pass {
        Pass::Forward | Pass::BackwardInput => s.cin.min(s.cout) >= 3 && s.cin * s.cout >= 24,
        Pass::BackwardWeight => s.cin.min(s.cout) >= 8,
    };
    wanted && winograd_fits::<T>(s)
}

/// Smallest batch `fft_preferred` hands to the FFT kernels (and, where
/// [`fft_fused_min_batch`] does not say otherwise, [`fft_fused_preferred`]):
/// 32 on AMD Zen 5 and later (`cpu_features::amd_zen5_or_later`), 64 elsewhere;
/// `LATFLOW_FFT_MIN_BATCH=N` sets it (for A/B runs).
///
/// A training step at batch 64 runs shards of 32 samples, one per thread: each shard then
/// computes the spectral weights itself (no other shard on its thread reuses them) for two
/// groups of 16 samples. On Zen 4 (AVX-512 on 256-bit halves) the step measured 0.89x
/// (phi4) and 0.88x (U(1)) of its time without the FFT kernels (2026-12-01 02:57 UTC, 6
/// alternating pairs), hence 64 there; at batch 1024 (16 shards of 64) it was about even
/// (see `docs/perf-conv2d.md`). On Zen 5 (`lscpu`: AMD EPYC, family 26; 2026-12-01 10:22
/// UTC, rounds A B B A x 3, `TRAIN_STEP_SUMMARY_ONLY=1 cargo bench --bench train_step`) the
/// batch-64 step with the FFT kernels from 32 samples measured 1.096x (phi4, 8.63 against
/// 9.46 ms) and 1.058x (U(1), 11.86 against 12.55 ms) of the step with 64, hence 32 there.
/// Intel AVX-512 machines keep 64 until measured.
pub fn fft_min_batch() -> usize {
    static MIN: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MIN.get_or_init(|| {
        batch_from_env("LATFLOW_FFT_MIN_BATCH", if super::cpu_features::amd_zen5_or_later() { 32 } else { 64 })
    })
}

/// Smallest batch [`fft_fused_preferred`] hands to the fused FFT backward pass: 32 on AMD
/// Zen 4 and later (`cpu_features::amd_zen4_or_later`), [`fft_min_batch`] elsewhere;
/// `LATFLOW_FFT_FUSED_MIN_BATCH=N` sets it (for A/B runs).
///
/// In a training step at batch 64 (shards of 32 samples) the fused pass computes the flipped
/// spectral weights once per layer and thread, as the forward FFT pass would, but replaces two
/// Winograd passes (input and weight gradient, `g act'(y)` formed in between) by one transform
/// of `g act'(y)`. On Zen 4 (`lscpu`: AMD EPYC, family 25 model 17; 2026-12-02 16:29 UTC,
/// `scripts/ab_train_step.sh WORKTREE WORKTREE:<fused from 32> 16 phi4/64,u1/64`) the batch-64
/// step measured 1.123x (phi^4, 25 of 32 rounds faster) and 1.181x (U(1), 27 of 32) of the
/// step with 64; the FFT forward pass from 32 as well measured 0.987x / 0.893x of that (10
/// rounds), and the FFT forward pass of the 8 -> 2 and 8 -> 3 layers alone 0.971x / 0.952x
/// (12 rounds): only the backward pass takes the FFT kernels from 32 there. On Zen 5 this is
/// [`fft_min_batch`] = 32 as before; Intel keeps [`fft_min_batch`] until measured.
pub fn fft_fused_min_batch() -> usize {
    static MIN: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MIN.get_or_init(|| {
        let default = if super::cpu_features::amd_zen4_or_later() { 32.min(fft_min_batch()) } else { fft_min_batch() };
        batch_from_env("LATFLOW_FFT_FUSED_MIN_BATCH", default)
    })
}

/// The batch size in the environment variable `var` (at least 1), else `default` (with a
/// warning when it is set but not a number).
fn batch_from_env(var: &str, default: usize) -> usize {
    match std::env::var(var) {
        Err(_) => default,
        Ok(v) => v.trim().parse::<usize>().map(|n| n.max(1)).unwrap_or_else(|_| {
            eprintln!("latflow: {var}={v:?} is not a batch size; using {default}");
            default
        }),
    }
}

/// Whether the plain entry points take the FFT kernels for `pass` of `s` (where they fit,
/// [`Backend::available`]): the forward pass and the input gradient when the pass reads at
/// least 8 channels and writes at least 2 (forward `cin -> cout`, input gradient
/// `cout -> cin`) and the batch has at least [`fft_min_batch`] samples; never the weight
/// gradient. [`auto_backend_for`] asks only from a rayon worker (a shard of a data-parallel
/// training step, on one thread), where the shards after a thread's first reuse the cached
/// spectral weights: the threaded FFT kernels measured 0.72x / 1.00x (forward 8 -> 8, batch
/// 64 / 1024) and 0.84x / 0.86x (input gradient) of the threaded Winograd ones (03:01 UTC
/// run, docs/perf-conv2d.md), and one-thread calls outside a worker (the small 8 -> 2 and
/// 8 -> 3 layers below [`THREAD_MIN_MACS`] at batch 64) recompute the spectral weights on
/// every step (the batch-64 step measured 0.89x / 0.93x with them on FFT, 03:17 UTC).
///
/// Measured 2026-12-01 02:47-02:54 UTC on the 2-core dev box (`lscpu`: AMD EPYC, Zen 4;
/// shared, load average 1.7-3.6, so ratios move by ~10% between runs) with
/// `CONV2D_SUMMARY_ONLY=1 cargo bench --bench conv2d -- f32/`, 8x8, 3x3, one thread; FFT
/// time against the backend picked before (Winograd W, direct AVX-512 D) in the same run,
/// batch 64 (the shard size of a training step; the spectral weights then come from the
/// per-thread cache, as for every shard after a thread's first) / 1024:
///
/// - forward 8 -> 8: 1.10x / 1.30x W; 8 -> 3: 1.08x / 1.12x W; 8 -> 2: 1.48x / 1.37x D;
/// - input gradient 8 -> 8: 0.92x / 1.34x W; of 2 -> 8 (an 8 -> 2 pass): 1.28x / 1.25x D;
///   of 3 -> 8 (8 -> 3): 1.05x / 1.01x W: FFT (one rule for both passes);
/// - forward 2 -> 8: 1.06x / 1.02x D, 1 -> 8: 0.68x / 0.71x D; input gradients of 8 -> 2
///   (2 -> 8) 1.00x / 1.11x D, of 1 -> 8 (8 -> 1) 0.50x / 0.56x D: direct kept;
/// - weight gradients at batch 64: 0.91x W at 8 -> 8, 0.82x / 0.69x / 0.88x D at 8 -> 2,
///   2 -> 8, 8 -> 3 (1.20x W at 8 -> 8 only from batch 1024): never.
///
/// `LATFLOW_NO_FFT=1` turns the FFT kernels off (they are then neither offered nor picked).
fn fft_preferred<T: 'static>(pass: Pass, s: &Conv2dShape) -> bool {
    let (reads, writes) = match pass {
        Pass::Forward => (s.cin, s.cout),
        Pass::BackwardInput => (s.cout, s.cin),
        Pass::BackwardWeight => return false,
    };
    reads >= 8 && writes >= 2 && s.n >= fft_min_batch() && fft_fits::<T>(s)
}

/// Whether [`backward_act`] takes the fused FFT backward pass
/// ([`super::conv2d_fft::backward_fused`]: `g act'(y)` formed as it is loaded, both gradients
/// from one transform of it) for `s`: on a rayon worker (a training shard, one thread), an
/// `f32` 8x8 lattice the FFT kernels fit, at least [`fft_fused_min_batch`] samples, an output of at
/// least 3 channels, an input of at least 2 and at least 16 channel pairs: the 8 -> 8 layers
/// of both models, U(1)'s 2 -> 8 and 8 -> 3; not phi^4's 1 -> 8 and 8 -> 2.
///
/// Measured 2026-12-01 on the 2-core dev box (`lscpu`: AMD EPYC, Zen 4; shared, load average
/// ~1.8) with `cargo bench --bench conv2d_backward`, 8x8, 3x3, LeakyReLU, one thread, median us
/// per call, what `backward_act` ran before (FFT or Winograd input gradient, Winograd or direct
/// weight gradient, or the direct kernels' own fused pass) against the fused FFT pass, batch
/// 64 / 128 / 256 (05:27 UTC, the last two rows 06:20 UTC):
///
/// - 8 -> 8: 80.9 / 151.5 / 305.7 against 69.3 / 129.3 / 238.9: 1.17x / 1.17x / 1.28x;
/// - 8 -> 3: 41.4 / 82.8 / 165.3 against 36.3 / 70.7 / 140.2: 1.13x / 1.16x / 1.17x;
/// - 8 -> 2: 30.4 / 60.4 / 121.9 against 31.4 / 61.6 / 118.3: even (the direct pass applies
///   `act'` on the fly too, and its input gradient reads 2 channels): not taken;
/// - 2 -> 8: 31.2 / 61.1 / 124.2 against 23.5 / 51.2 / 101.5: 1.33x / 1.19x / 1.22x;
/// - 1 -> 8: 18.2 / 37.9 / 78.0 against 18.3 / 41.5 / 82.1: not taken.
///
/// The training step (rounds A B B A, median ms/step): with 8 -> 3 fused, U(1) at batch 1024
/// 36.86 against 38.17 (1.035x, 3 rounds, 05:27-05:29 UTC); with 2 -> 8 fused as well, 36.49
/// against 37.81 and 36.95 against 37.92 (1.036x and 1.026x, two sets of 5 rounds, 06:25-06:30
/// UTC; phi^4, which has no such layer, 1.016x in the same set: the noise). 8 -> 2 fused as
/// well left phi^4 at 28.02 against 28.14.
pub fn fft_fused_preferred<T: 'static>(s: &Conv2dShape) -> bool {
    rayon::current_thread_index().is_some()
        && s.cout >= 3
        && s.cin >= 2
        && s.cin * s.cout >= 16
        && s.n >= fft_fused_min_batch()
        && fft_fits::<T>(s)
}

/// The backend the plain entry points use for `pass` of shape `s` in element type `T`:
/// FFT on a rayon worker where `fft_preferred` says so, else Winograd where `winograd_preferred` says so, else AVX-512 where it fits
/// ([`Backend::available`]), else the `wide` SIMD kernels; threaded over the batch from
/// [`THREAD_MIN_MACS`] multiply-adds on, unless called from a rayon worker thread.
pub fn auto_backend_for<T: 'static>(pass: Pass, s: &Conv2dShape) -> Backend {
    // Inside a rayon task (e.g. one shard of a data-parallel training step) the caller
    // already keeps the threads busy: splitting again only adds per-chunk overhead.
    let threaded = s.macs() >= THREAD_MIN_MACS && s.n > 1 && rayon::current_thread_index().is_none();
    if rayon::current_thread_index().is_some() && fft_preferred::<T>(pass, s) {
        return Backend::Fft;
    }
    if winograd_preferred::<T>(pass, s) {
        return if threaded { Backend::WinogradThreaded } else { Backend::Winograd };
    }
    match (avx512_fits::<T>(s), threaded) {
        (true, true) => Backend::Avx512Threaded,
        (true, false) => Backend::Avx512,
        (false, true) => Backend::SimdThreaded,
        (false, false) => Backend::Simd,
    }
}

/// The `f32` kernels of one family (the AVX-512, Winograd and FFT modules share these
/// signatures; the last argument of each is `threaded`).
#[cfg(target_arch = "x86_64")]
struct F32Kernels {
    forward: F32Forward,
    backward_input: fn(&[f32], &[f32], Conv2dShape, &mut [f32], bool),
    backward_weight: F32BackwardWeight,
}

/// `forward(x, w, b, s, y, threaded, leaky)` of an `f32` kernel family.
#[cfg(target_arch = "x86_64")]
type F32Forward = fn(&[f32], &[f32], Option<&[f32]>, Conv2dShape, &mut [f32], bool, Option<f32>);
/// `backward_fused(g, y, act, x, w, s, dx, dw, db)` of an `f32` kernel family (the
/// AVX-512 direct and the FFT ones): both gradients of `y = act(conv(x))` on one thread.
#[cfg(target_arch = "x86_64")]
type FusedBackward = fn(
    &[f32],
    &[f32],
    Option<super::conv2d_avx512::ActGrad>,
    &[f32],
    &[f32],
    Conv2dShape,
    Option<&mut [f32]>,
    &mut [f32],
    Option<&mut [f32]>,
);
/// `backward_weight(dy, x, s, dw, db, threaded)` of an `f32` kernel family.
#[cfg(target_arch = "x86_64")]
type F32BackwardWeight = fn(&[f32], &[f32], Conv2dShape, &mut [f32], Option<&mut [f32]>, bool);

/// `Some((kernels, threaded))` when `backend` is one of the `f32` AVX-512 families
/// (AVX-512, Winograd, FFT: the caller then runs its kernel), `None` otherwise.
///
/// # Panics
/// If such a backend is asked for where it does not fit ([`Backend::available`]).
#[cfg(target_arch = "x86_64")]
#[track_caller]
fn f32_kernels<T: 'static>(backend: Backend, s: &Conv2dShape) -> Option<(F32Kernels, bool)> {
    use super::{conv2d_avx512 as avx, conv2d_fft as fft, conv2d_winograd as wino};
    let (kernels, threaded, fits) = match backend {
        Backend::Avx512 | Backend::Avx512Threaded => (
            F32Kernels {
                forward: avx::forward,
                backward_input: avx::backward_input,
                backward_weight: avx::backward_weight,
            },
            backend == Backend::Avx512Threaded,
            avx512_fits::<T>(s),
        ),
        Backend::Winograd | Backend::WinogradThreaded => (
            F32Kernels {
                forward: wino::forward,
                backward_input: wino::backward_input,
                backward_weight: wino::backward_weight,
            },
            backend == Backend::WinogradThreaded,
            winograd_fits::<T>(s),
        ),
        Backend::Fft | Backend::FftThreaded => (
            F32Kernels {
                forward: fft::forward,
                backward_input: fft::backward_input,
                backward_weight: fft::backward_weight,
            },
            backend == Backend::FftThreaded,
            fft_fits::<T>(s),
        ),
        _ => return None,
    };
    assert!(fits, "conv2d: backend {backend:?} does not run {s:?} here (see Backend::available)");
    Some((kernels, threaded))
}

/// Forward pass into `y` (overwritten). `b`, when given, has `cout` entries.
///
/// # Panics
/// If the kernel is even or wider than the lattice, or a slice length does not match `s`.
#[track_caller]
pub fn forward<T: Float>(x: &[T], w: &[T], b: Option<&[T]>, s: Conv2dShape, y: &mut [T]) {
    forward_with(auto_backend::<T>(&s), x, w, b, s, y);
}

/// [`forward`] followed by LeakyReLU, `y > 0 ? y : slope y` (the values of
/// `Unary::LeakyRelu`): on the AVX-512 kernels applied to each sample's outputs while they
/// are in L1, elsewhere as a pass over `y` afterwards.
///
/// # Panics
/// As [`forward`].
#[track_caller]
pub fn forward_leaky<T: Float>(x: &[T], w: &[T], b: Option<&[T]>, s: Conv2dShape, y: &mut [T], slope: T) {
    forward_act(auto_backend::<T>(&s), x, w, b, s, y, Some(slope));
}

/// The activation derivative [`backward_act`] applies to the output gradient (from the
/// activation's output).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ActGrad<T> {
    /// LeakyReLU with this (positive) slope: `y > 0 ? g : slope g`.
    Leaky(T),
    /// tanh: `g (1 - y^2)`.
    Tanh,
}

/// The gradients [`backward_act`] returns: `dx` (when asked for), `dw`, `db`.
pub type ConvGrads<T> = (Option<Vec<T>>, Vec<T>, Vec<T>);

/// `g act'(y)` (or `g` without an activation) in a pool buffer.
fn act_grad<T: Float>(g: &[T], y: &[T], act: Option<ActGrad<T>>) -> Vec<T> {
    let mut gz = crate::pool::buffer(g.len());
    match act {
        None => gz.copy_from_slice(g),
        Some(ActGrad::Leaky(slope)) => {
            for ((d, &g), &y) in gz.iter_mut().zip(g).zip(y) {
                *d = if y > T::ZERO { g } else { slope * g };
            }
        }
        Some(ActGrad::Tanh) => {
            for ((d, &g), &y) in gz.iter_mut().zip(g).zip(y) {
                *d = g * (T::ONE - y * y);
            }
        }
    }
    gz
}

/// Both gradients of `y = act(conv(x))` from `g = dL/dy` in one call. Where
/// [`fft_fused_preferred`] says so (the 8 -> 8, 8 -> 3 and 2 -> 8 layers of a training shard), `g act'(y)` is
/// formed as it is loaded and transformed once for both gradients
/// ([`super::conv2d_fft::backward_fused`]). Otherwise, where the AVX-512
/// kernels run on one thread (a shard of a training step): block by block, with
/// `act'` applied on the fly ([`super::conv2d_avx512::backward_fused`]); `dx` only when
/// `want_dx`. Where a pass takes the Winograd or FFT kernels ([`auto_backend_for`]), `g act'(y)`
/// is formed once and both passes run on it, each on the backend picked for it. `None` (nothing allocated or
/// computed) elsewhere; the caller then forms `g act'(y)` and calls [`backward_input`] and
/// [`backward_weight`], which give the same values.
///
/// # Panics
/// As [`backward_weight`].
#[allow(clippy::too_many_arguments)]
pub fn backward_act<T: Float>(
    g: &[T],
    y: &[T],
    act: Option<ActGrad<T>>,
    x: &[T],
    w: &[T],
    s: Conv2dShape,
    want_dx: bool,
) -> Option<ConvGrads<T>> {
    #[cfg(target_arch = "x86_64")]
    let (bi, bw) = (auto_backend_for::<T>(Pass::BackwardInput, &s), auto_backend_for::<T>(Pass::BackwardWeight, &s));
    // a fused pass of one of the f32 families (the same signature): the FFT one where
    // `fft_fused_preferred` says so, the direct AVX-512 one where both passes run on it
    #[cfg(target_arch = "x86_64")]
    let fused: Option<FusedBackward> = if fft_fused_preferred::<T>(&s) {
        Some(super::conv2d_fft::backward_fused)
    } else if bw == Backend::Avx512 && (bi == Backend::Avx512 || !want_dx) {
        Some(super::conv2d_avx512::backward_fused)
    } else {
        None
    };
    #[cfg(target_arch = "x86_64")]
    if let Some(fused) = fused {
        use super::conv2d_avx512::ActGrad as A;
        let act = act.map(|a| match a {
            ActGrad::Leaky(slope) => A::Leaky(slope.to_f64() as f32), // exact: T is f32 here
            ActGrad::Tanh => A::Tanh,
        });
        let mut dx = want_dx.then(|| crate::pool::buffer(s.input_len()));
        let (mut dw, mut db) = (vec![T::ZERO; s.weight_len()], vec![T::ZERO; s.cout]);
        fused(
            cast(g).unwrap(),
            cast(y).unwrap(),
            act,
            cast(x).unwrap(),
            cast(w).unwrap(),
            s,
            dx.as_deref_mut().map(|d| cast_mut(d).unwrap()),
            cast_mut(&mut dw).unwrap(),
            Some(cast_mut(&mut db).unwrap()),
        );
        return Some((dx, dw, db));
    }
    // one thread, and a pass that runs on the Winograd or FFT kernels: `g act'(y)` once, then
    // both passes on it
    #[cfg(target_arch = "x86_64")]
    let one_thread = |b: Backend| matches!(b, Backend::Avx512 | Backend::Winograd | Backend::Fft);
    #[cfg(target_arch = "x86_64")]
    let transformed = |b: Backend| matches!(b, Backend::Winograd | Backend::Fft);
    #[cfg(target_arch = "x86_64")]
    if one_thread(bw) && (!want_dx || one_thread(bi)) && (transformed(bw) || (want_dx && transformed(bi))) {
        let gz = act_grad(g, y, act);
        let dx = want_dx.then(|| {
            let mut dx = crate::pool::buffer(s.input_len());
            backward_input_with(bi, &gz, w, s, &mut dx);
            dx
        });
        let (mut dw, mut db) = (vec![T::ZERO; s.weight_len()], vec![T::ZERO; s.cout]);
        backward_weight_with(bw, &gz, x, s, &mut dw, Some(&mut db));
        return Some((dx, dw, db));
    }
    let _ = (g, y, act, x, w, s, want_dx);
    None
}

/// Gradient with respect to the input, into `dx` (overwritten).
///
/// # Panics
/// As [`forward`].
#[track_caller]
pub fn backward_input<T: Float>(dy: &[T], w: &[T], s: Conv2dShape, dx: &mut [T]) {
    backward_input_with(auto_backend_for::<T>(Pass::BackwardInput, &s), dy, w, s, dx);
}

/// Gradients with respect to weight and (optionally) bias, into `dw` and `db`
/// (overwritten).
///
/// # Panics
/// As [`forward`], or if `db` does not have `cout` entries.
#[track_caller]
pub fn backward_weight<T: Float>(dy: &[T], x: &[T], s: Conv2dShape, dw: &mut [T], db: Option<&mut [T]>) {
    backward_weight_with(auto_backend_for::<T>(Pass::BackwardWeight, &s), dy, x, s, dw, db);
}

/// `s` as a slice of `U` when `T` is `U`.
pub(crate) fn cast<T: 'static, U: 'static>(s: &[T]) -> Option<&[U]> {
    if TypeId::of::<T>() == TypeId::of::<U>() {
        // SAFETY: T and U are the same type (equal TypeIds), so the pointer, length and
        // lifetime describe the same valid slice.
        Some(unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<U>(), s.len()) })
    } else {
        None
    }
}

/// `s` as a mutable slice of `U` when `T` is `U`.
pub(crate) fn cast_mut<T: 'static, U: 'static>(s: &mut [T]) -> Option<&mut [U]> {
    if TypeId::of::<T>() == TypeId::of::<U>() {
        // SAFETY: T and U are the same type (equal TypeIds); the new slice takes over the
        // unique borrow of `s` for the same lifetime.
        Some(unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<U>(), s.len()) })
    } else {
        None
    }
}

/// Runs `$body` with `$u` the concrete SIMD element type when `$t` is `f32` or `f64`;
/// otherwise runs `$fallback`.
macro_rules! with_simd_type {
    ($t:ty, $u:ident => $body:block else $fallback:block) => {
        if TypeId::of::<$t>() == TypeId::of::<f32>() {
            type $u = f32;
            $body
        } else if TypeId::of::<$t>() == TypeId::of::<f64>() {
            type $u = f64;
            $body
        } else {
            $fallback
        }
    };
}

/// [`forward`] on a chosen backend.
///
/// # Panics
/// As [`forward`].
#[track_caller]
pub fn forward_with<T: Float>(backend: Backend, x: &[T], w: &[T], b: Option<&[T]>, s: Conv2dShape, y: &mut [T]) {
    forward_act(backend, x, w, b, s, y, None);
}

/// [`forward_with`], then LeakyReLU with `leaky = Some(slope)`: inside the AVX-512 kernels
/// (per sample, in L1), as a pass over `y` on the other backends.
#[track_caller]
fn forward_act<T: Float>(
    backend: Backend,
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    s: Conv2dShape,
    y: &mut [T],
    leaky: Option<T>,
) {
    s.check(x.len(), w.len(), y.len());
    if let Some(b) = b {
        assert_eq!(b.len(), s.cout, "conv2d: bias length for {s:?}");
    }
    #[cfg(target_arch = "x86_64")]
    if let Some((k, threaded)) = f32_kernels::<T>(backend, &s) {
        let b = b.map(|b| cast::<T, f32>(b).unwrap());
        let leaky = leaky.map(|sl| sl.to_f64() as f32); // exact: T is f32 here
        return (k.forward)(cast(x).unwrap(), cast(w).unwrap(), b, s, cast_mut(y).unwrap(), threaded, leaky);
    }
    if backend == Backend::Scalar {
        reference::forward(x, w, b, s, y);
    } else {
        let threaded = backend == Backend::SimdThreaded;
        with_simd_type!(T, U => {
            let b = b.map(|b| cast::<T, U>(b).unwrap());
            <U as simd::Entry>::forward(cast(x).unwrap(), cast(w).unwrap(), b, s, cast_mut(y).unwrap(), threaded);
        } else {
            reference::forward(x, w, b, s, y);
        })
    }
    if let Some(slope) = leaky {
        for v in y.iter_mut() {
            if *v <= T::ZERO {
                *v = slope * *v;
            }
        }
    }
}

/// [`backward_input`] on a chosen backend.
///
/// # Panics
/// As [`forward`].
#[track_caller]
pub fn backward_input_with<T: Float>(backend: Backend, dy: &[T], w: &[T], s: Conv2dShape, dx: &mut [T]) {
    s.check(dx.len(), w.len(), dy.len());
    if backend == Backend::Scalar {
        return reference::backward_input(dy, w, s, dx);
    }
    #[cfg(target_arch = "x86_64")]
    if let Some((k, threaded)) = f32_kernels::<T>(backend, &s) {
        return (k.backward_input)(cast(dy).unwrap(), cast(w).unwrap(), s, cast_mut(dx).unwrap(), threaded);
    }
    let threaded = backend == Backend::SimdThreaded;
    with_simd_type!(T, U => {
        <U as simd::Entry>::backward_input(cast(dy).unwrap(), cast(w).unwrap(), s, cast_mut(dx).unwrap(), threaded);
    } else {
        reference::backward_input(dy, w, s, dx);
    })
}

/// [`backward_weight`] on a chosen backend.
///
/// # Panics
/// As [`backward_weight`].
#[track_caller]
pub fn backward_weight_with<T: Float>(
    backend: Backend,
    dy: &[T],
    x: &[T],
    s: Conv2dShape,
    dw: &mut [T],
    db: Option<&mut [T]>,
) {
    s.check(x.len(), dw.len(), dy.len());
    if let Some(db) = &db {
        assert_eq!(db.len(), s.cout, "conv2d: bias gradient length for {s:?}");
    }
    if backend == Backend::Scalar {
        return reference::backward_weight(dy, x, s, dw, db);
    }
    #[cfg(target_arch = "x86_64")]
    if let Some((k, threaded)) = f32_kernels::<T>(backend, &s) {
        let db = db.map(|db| cast_mut::<T, f32>(db).unwrap());
        return (k.backward_weight)(cast(dy).unwrap(), cast(x).unwrap(), s, cast_mut(dw).unwrap(), db, threaded);
    }
    let threaded = backend == Backend::SimdThreaded;
    with_simd_type!(T, U => {
        let db = db.map(|db| cast_mut::<T, U>(db).unwrap());
        <U as simd::Entry>::backward_weight(cast(dy).unwrap(), cast(x).unwrap(), s, cast_mut(dw).unwrap(), db, threaded);
    } else {
        reference::backward_weight(dy, x, s, dw, db);
    })
}

/// Plain scalar loops: the definition every optimized kernel is tested against.
pub mod reference {
    use super::Conv2dShape;
    use crate::Float;

    /// Scalar forward pass (see the module docs for the formula).
    pub fn forward<T: Float>(x: &[T], w: &[T], b: Option<&[T]>, s: Conv2dShape, y: &mut [T]) {
        let (hw, p, k) = (s.h * s.w, s.k / 2, s.k);
        for n in 0..s.n {
            for o in 0..s.cout {
                let yo = &mut y[(n * s.cout + o) * hw..][..hw];
                let bias = b.map_or(T::ZERO, |b| b[o]);
                for i in 0..s.h {
                    for j in 0..s.w {
                        let mut acc = bias;
                        for c in 0..s.cin {
                            let xc = &x[(n * s.cin + c) * hw..][..hw];
                            for a in 0..k {
                                let ii = (i + s.h + a - p) % s.h;
                                for e in 0..k {
                                    let jj = (j + s.w + e - p) % s.w;
                                    acc += w[((o * s.cin + c) * k + a) * k + e] * xc[ii * s.w + jj];
                                }
                            }
                        }
                        yo[i * s.w + j] = acc;
                    }
                }
            }
        }
    }

    /// Scalar input gradient.
    pub fn backward_input<T: Float>(dy: &[T], w: &[T], s: Conv2dShape, dx: &mut [T]) {
        let (hw, p, k) = (s.h * s.w, s.k / 2, s.k);
        for n in 0..s.n {
            for c in 0..s.cin {
                let dxc = &mut dx[(n * s.cin + c) * hw..][..hw];
                for i in 0..s.h {
                    for j in 0..s.w {
                        let mut acc = T::ZERO;
                        for o in 0..s.cout {
                            let dyo = &dy[(n * s.cout + o) * hw..][..hw];
                            for a in 0..k {
                                let ii = (i + s.h + p - a) % s.h;
                                for e in 0..k {
                                    let jj = (j + s.w + p - e) % s.w;
                                    acc += w[((o * s.cin + c) * k + a) * k + e] * dyo[ii * s.w + jj];
                                }
                            }
                        }
                        dxc[i * s.w + j] = acc;
                    }
                }
            }
        }
    }

    /// Scalar weight and bias gradients.
    pub fn backward_weight<T: Float>(dy: &[T], x: &[T], s: Conv2dShape, dw: &mut [T], db: Option<&mut [T]>) {
        let (hw, p, k) = (s.h * s.w, s.k / 2, s.k);
        for o in 0..s.cout {
            for c in 0..s.cin {
                for a in 0..k {
                    for e in 0..k {
                        let mut acc = T::ZERO;
                        for n in 0..s.n {
                            let dyo = &dy[(n * s.cout + o) * hw..][..hw];
                            let xc = &x[(n * s.cin + c) * hw..][..hw];
                            for i in 0..s.h {
                                let ii = (i + s.h + a - p) % s.h;
                                for j in 0..s.w {
                                    let jj = (j + s.w + e - p) % s.w;
                                    acc += dyo[i * s.w + j] * xc[ii * s.w + jj];
                                }
                            }
                        }
                        dw[((o * s.cin + c) * k + a) * k + e] = acc;
                    }
                }
            }
        }
        if let Some(db) = db {
            for o in 0..s.cout {
                let mut acc = T::ZERO;
                for n in 0..s.n {
                    acc += dy[(n * s.cout + o) * hw..][..hw].iter().copied().sum::<T>();
                }
                db[o] = acc;
            }
        }
    }
}
