//! AVX-512 circular conv2d kernels for `f32` lattices exactly 8 sites wide (the
//! tutorial's 8x8 and any `h x 8` with `h` even), chosen at run time when the CPU has
//! AVX-512F. Same functions as [`super::conv2d::reference`], which the tests compare them
//! against.
//!
//! Why a second SIMD path: the workspace is built for x86-64-v3 (AVX2), so `wide`
//! compiles to 8-lane vectors. On the dev box (Sapphire Rapids class Xeon) a 16-lane FMA
//! loop runs at 175 GFLOP/s per core against 91 for 8 lanes, so the conv layers, most of a
//! training step, can run about twice as fast where AVX-512 is there, while the same
//! binary still runs on AVX2-only CPUs. `LATFLOW_NO_AVX512=1` turns the path off (to
//! compare, or to get the AVX2 rounding on an AVX-512 machine).
//!
//! Layout ("shifted planes", an in-register im2col): an `h x 8` plane is `h / 2` vectors
//! of 16 lanes, two lattice rows each. For tap `(a, e)` the plane rolled by
//! `(a - p, e - p)`, `xs[i][j] = x[(i + a - p) mod h][(j + e - p) mod 8]`, is one
//! two-source lane permutation (`vpermt2ps`) per vector: output rows `2v, 2v + 1` read
//! lattice rows `(2v + a - p) mod h` and `(2v + 1 + a - p) mod h`, which sit in (a half
//! of) two vectors, and the column roll is part of the same permutation. The shifted
//! vectors are made on the fly, in registers:
//!
//! - forward: `y[o] = b[o] + sum_{c,t} w[o,c,t] xs[c,t]`; register tiles of up to 8
//!   output channels x 2 vectors (or 4 x 4): each shifted vector feeds every output
//!   channel of the tile, so one permutation serves up to 8 FMAs. With fewer output than
//!   input channels (8 -> 2, 8 -> 1) the outputs are rolled instead:
//!   `y[o] = b[o] + sum_t roll_t(sum_c w[o,c,t] x[c])`;
//! - input gradient: the forward kernel on `dy` with the kernel flipped and its in/out
//!   channels swapped (as in [`super::conv2d_simd`]);
//! - weight gradient: `dw[o,c,t] = sum_{n,pix} dy[n,o] xs[n,c,t]`, or, when there are
//!   fewer output than input channels, `sum dys[n,o,-t] x[n,c]` (rolling `dy` back
//!   instead: fewer permutations). Per-lane partial sums stay in registers while the
//!   samples of a chunk stream through, and are added up at the end in a fixed order;
//!   threads over fixed batch chunks summed in chunk order, so results do not depend on
//!   the thread count.
//!
//! For a 3x3 kernel on 8x8 lattices (the tutorial's) the three taps of a kernel row share
//! their two source vectors (the row shift picks the sources, the column shift only the
//! permutation): forward tiles load the four vectors of a plane once per input channel and
//! permute all nine taps from them; weight-gradient tiles take a row of three taps (each
//! loaded vector feeds three FMAs); rolled outputs are formed a row at a time in registers.
//! On one thread, the backward pass of `y = act(conv(x))` runs block by block over
//! L1-sized sample blocks with `g act'(y)` applied on the fly ([`backward_fused`]).
//!
//! Files: `forward.rs` (forward and input-gradient tiles), `weight.rs` (weight-gradient
//! tiles and sample blocks), `fused.rs` (the one-thread backward pass), `lanes.rs` (the forward
//! kernel on tensors in the samples-as-lanes layout, used by `crate::conv_stack`); here the entry
//! points and the shared tap tables.

#![allow(unsafe_code)]

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::conv2d_shape::{flipped_weights, Conv2dShape};
use super::conv2d_simd::chunk_len;

/// Lanes of one `__m512` of `f32`.
const L: usize = 16;
/// The lattice width this path handles: two rows per vector.
const WIDTH: usize = 8;

pub use super::cpu_features::avx512_available as available;

/// Whether this path computes shape `s`: width 8, even height, at least one channel in
/// and out (the kernel is odd and fits the lattice, checked by the caller).
pub fn fits(s: &Conv2dShape) -> bool {
    s.w == WIDTH && s.h.is_multiple_of(2) && s.h >= 2 && s.cin > 0 && s.cout > 0
}

/// The two-source permutations of each tap: `idx[t]` maps output lane `l` (row `l / 8`
/// of the vector, column `l % 8`) to the lane of `[A | B]` holding its rolled source;
/// `src[t * nv + v] = (A, B)` are the source vectors of output vector `v`.
struct Taps {
    idx: Vec<[i32; L]>,
    src: Vec<(usize, usize)>,
}

/// A cached [`Taps`] and its `(h, k)`.
type TapsEntry = ((usize, usize), std::sync::Arc<Taps>);

impl Taps {
    /// The taps of `(h, k)`, built once per thread and shape (every conv call needs them).
    fn cached(h: usize, k: usize) -> std::sync::Arc<Taps> {
        thread_local! {
            static CACHE: std::cell::RefCell<Vec<TapsEntry>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if let Some((_, t)) = c.iter().find(|(key, _)| *key == (h, k)) {
                return t.clone();
            }
            let t = std::sync::Arc::new(Taps::new(h, k));
            c.push(((h, k), t.clone()));
            t
        })
    }

    fn new(h: usize, k: usize) -> Self {
        let (p, nv) = (k / 2, h / 2);
        let mut idx = Vec::with_capacity(k * k);
        let mut src = Vec::with_capacity(k * k * nv);
        for a in 0..k {
            for e in 0..k {
                // row shift a - p and column shift e - p, taken mod h and mod 8
                let dr = a + h - p;
                let dc = e + WIDTH - p;
                let mut t = [0i32; L];
                for (l, t) in t.iter_mut().enumerate() {
                    let (half, j) = (l / WIDTH, l % WIDTH);
                    // output row 2v + half reads lattice row (2v + half + dr) mod h, whose
                    // parity does not depend on v (h is even)
                    let row_parity = (half + dr) % 2;
                    *t = (L * half + WIDTH * row_parity + (j + dc) % WIDTH) as i32;
                }
                idx.push(t);
                for v in 0..nv {
                    let r0 = (2 * v + dr) % h;
                    let r1 = (2 * v + 1 + dr) % h;
                    src.push((r0 / 2, r1 / 2));
                }
            }
        }
        Taps { idx, src }
    }
}

/// The shifted vector `v` of tap `t` of the plane starting at `plane`.
///
/// # Safety
/// AVX-512F must be available; `plane` must point at `h * 8` readable floats, `v < h / 2`,
/// `t < k * k`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn shifted(plane: *const f32, taps: &Taps, nv: usize, t: usize, v: usize, idx: __m512i) -> __m512 {
    // SAFETY: src entries are < nv, so both loads lie inside the plane (caller's contract).
    unsafe {
        let (a, b) = *taps.src.get_unchecked(t * nv + v);
        _mm512_permutex2var_ps(_mm512_loadu_ps(plane.add(a * L)), idx, _mm512_loadu_ps(plane.add(b * L)))
    }
}

/// The permutation index of tap `t`.
#[inline]
#[target_feature(enable = "avx512f")]
fn tap_idx(taps: &Taps, t: usize) -> __m512i {
    // SAFETY: each entry is 16 i32 = 64 readable bytes.
    unsafe { _mm512_loadu_si512(taps.idx[t].as_ptr().cast()) }
}

/// Zeroed vectors (64-byte aligned by the type; the Winograd and FFT kernels use it too).
pub(super) fn zeroed(n: usize) -> Vec<__m512> {
    // SAFETY: all-zero bits are 16 zero floats.
    vec![unsafe { std::mem::zeroed::<__m512>() }; n]
}

/// Calls `$f::<O, R>($args)` for the runtime block sizes `($o, $r)` (O in 1..=8, R in
/// {1, 2, 4} with O * R <= 16).
macro_rules! blocks {
    ($f:ident, $o:expr, $r:expr, ($($args:expr),*)) => {
        match ($o, $r) {
            (1, 4) => $f::<1, 4>($($args),*),
            (2, 4) => $f::<2, 4>($($args),*),
            (3, 4) => $f::<3, 4>($($args),*),
            (4, 4) => $f::<4, 4>($($args),*),
            (1, 2) => $f::<1, 2>($($args),*),
            (2, 2) => $f::<2, 2>($($args),*),
            (3, 2) => $f::<3, 2>($($args),*),
            (4, 2) => $f::<4, 2>($($args),*),
            (5, 2) => $f::<5, 2>($($args),*),
            (6, 2) => $f::<6, 2>($($args),*),
            (7, 2) => $f::<7, 2>($($args),*),
            (8, 2) => $f::<8, 2>($($args),*),
            (1, _) => $f::<1, 1>($($args),*),
            (2, _) => $f::<2, 1>($($args),*),
            (3, _) => $f::<3, 1>($($args),*),
            (4, _) => $f::<4, 1>($($args),*),
            (5, _) => $f::<5, 1>($($args),*),
            (6, _) => $f::<6, 1>($($args),*),
            (7, _) => $f::<7, 1>($($args),*),
            _ => $f::<8, 1>($($args),*),
        }
    };
}

/// Block sizes for `left` channels and `vleft` vectors: up to 8 channels; 4 vectors when
/// the block has at most 4 channels, else 2 (at most 16 accumulators).
fn block(left: usize, vleft: usize) -> (usize, usize) {
    let o = left.min(8);
    let rmax = if o <= 4 { 4 } else { 2 };
    let r = if vleft >= rmax {
        rmax
    } else if vleft >= 2 {
        2
    } else {
        1
    };
    (o, r)
}

/// Calls `$f::<O>($args)` for the runtime block size `$o` in 1..=8.
macro_rules! rows {
    ($f:ident, $o:expr, ($($args:expr),*)) => {
        match $o {
            1 => $f::<1>($($args),*),
            2 => $f::<2>($($args),*),
            3 => $f::<3>($($args),*),
            4 => $f::<4>($($args),*),
            5 => $f::<5>($($args),*),
            6 => $f::<6>($($args),*),
            7 => $f::<7>($($args),*),
            _ => $f::<8>($($args),*),
        }
    };
}

mod forward;
mod fused;
pub mod lanes;
mod weight;

use forward::forward_chunk;
pub use fused::{backward_fused, ActGrad};
use weight::backward_weight_chunk;

/// LeakyReLU on 16 lanes: `v > 0 ? v : slope v` (NaN stays NaN), the values of
/// `Unary::LeakyRelu` (the direct, Winograd and FFT forward passes apply it as they store).
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn leaky16(v: __m512, slope: f32) -> __m512 {
    let pos = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, _mm512_setzero_ps());
    _mm512_mask_blend_ps(pos, _mm512_mul_ps(v, _mm512_set1_ps(slope)), v)
}

/// `g act'(y)` on 16 lanes from the activation's output `y` (`Unary::grad_from_output`'s
/// values, bit for bit: LeakyReLU `y > 0 ? g : slope g`, tanh `g (1 - y y)`).
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn act_grad16(g: __m512, y: __m512, act: ActGrad) -> __m512 {
    match act {
        ActGrad::Leaky(slope) => {
            let pos = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(y, _mm512_setzero_ps());
            _mm512_mask_blend_ps(pos, _mm512_mul_ps(_mm512_set1_ps(slope), g), g)
        }
        ActGrad::Tanh => _mm512_mul_ps(g, _mm512_sub_ps(_mm512_set1_ps(1.0), _mm512_mul_ps(y, y))),
    }
}

// ---------------------------------------------------------------------------------
// forward

/// Forward pass into `y` (overwritten); over the batch with rayon when `threaded`.
///
/// # Panics
/// If [`available`] or [`fits`] is false (the dispatcher checks both), or slice lengths
/// do not match `s`.
///
/// `leaky = Some(slope)` applies LeakyReLU (`y > 0 ? y : slope y`) to each sample's outputs
/// while they are in L1, instead of a pass over the whole output afterwards.
pub fn forward(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    s: Conv2dShape,
    y: &mut [f32],
    threaded: bool,
    leaky: Option<f32>,
) {
    assert!(available() && fits(&s), "conv2d_avx512: shape {s:?} or CPU not supported");
    s.check(x.len(), w.len(), y.len());
    if let Some(b) = b {
        assert_eq!(b.len(), s.cout, "conv2d_avx512: bias length");
    }
    let (xin, yout) = (s.cin * s.h * s.w, s.cout * s.h * s.w);
    if s.n == 0 {
        return;
    }
    let taps = Taps::cached(s.h, s.k);
    if threaded && s.n > 1 {
        let chunk = chunk_len(s.n, 4 * rayon::current_num_threads());
        x.par_chunks(chunk * xin).zip(y.par_chunks_mut(chunk * yout)).for_each(|(xc, yc)| {
            // SAFETY: available() was asserted; lengths match the chunk's shape.
            unsafe { forward_chunk(xc, w, b, Conv2dShape { n: xc.len() / xin, ..s }, &taps, yc, leaky) }
        });
    } else {
        // SAFETY: as above.
        unsafe { forward_chunk(x, w, b, s, &taps, y, leaky) }
    }
}

// ---------------------------------------------------------------------------------
// input gradient

/// Input gradient into `dx` (overwritten): the forward kernel on `dy` with
/// `w[o,c,a,e] -> w'[c,o,k-1-a,k-1-e]`.
///
/// # Panics
/// As [`forward`].
pub fn backward_input(dy: &[f32], w: &[f32], s: Conv2dShape, dx: &mut [f32], threaded: bool) {
    let wt = flipped_weights(w, &s);
    let st = Conv2dShape { cin: s.cout, cout: s.cin, ..s };
    forward(dy, &wt, None, st, dx, threaded, None);
}

// ---------------------------------------------------------------------------------
// weight gradient

/// Batch chunks of the threaded weight gradient, independent of the thread count.
const WEIGHT_GRAD_CHUNKS: usize = 8;

/// Weight (and bias) gradient into `dw` (and `db`), overwritten; over fixed batch chunks
/// with rayon when `threaded`.
///
/// # Panics
/// As [`forward`].
pub fn backward_weight(dy: &[f32], x: &[f32], s: Conv2dShape, dw: &mut [f32], db: Option<&mut [f32]>, threaded: bool) {
    assert!(available() && fits(&s), "conv2d_avx512: shape {s:?} or CPU not supported");
    s.check(x.len(), dw.len(), dy.len());
    let (xin, yout) = (s.cin * s.h * s.w, s.cout * s.h * s.w);
    let taps = Taps::cached(s.h, s.k);
    // SAFETY (both calls): available() was asserted; lengths match each chunk's shape.
    let parts: Vec<(Vec<__m512>, Vec<__m512>)> = if s.n == 0 {
        Vec::new()
    } else if threaded && s.n > 1 {
        let chunk = chunk_len(s.n, WEIGHT_GRAD_CHUNKS);
        x.par_chunks(chunk * xin)
            .zip(dy.par_chunks(chunk * yout))
            .map(|(xc, dyc)| unsafe { backward_weight_chunk(dyc, xc, Conv2dShape { n: xc.len() / xin, ..s }, &taps) })
            .collect()
    } else {
        vec![unsafe { backward_weight_chunk(dy, x, s, &taps) }]
    };
    // SAFETY: available() was asserted.
    unsafe {
        reduce_parts(&parts, |p| &p.0[..], dw);
        if let Some(db) = db {
            reduce_parts(&parts, |p| &p.1[..], db);
        }
    }
}

/// `out[i] = lanes(sum_p pick(p)[i])`: the chunks' lane vectors added in chunk order,
/// then the 16 lanes of the sum in `_mm512_reduce_add_ps`'s fixed order.
#[target_feature(enable = "avx512f")]
fn reduce_parts<P>(parts: &[P], pick: impl Fn(&P) -> &[__m512], out: &mut [f32]) {
    for (i, o) in out.iter_mut().enumerate() {
        let mut v = _mm512_setzero_ps();
        for p in parts {
            v = _mm512_add_ps(v, pick(p)[i]);
        }
        *o = _mm512_reduce_add_ps(v);
    }
}
