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

#![allow(unsafe_code)]

use std::arch::x86_64::*;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::conv2d::Conv2dShape;
use super::conv2d_simd::chunk_len;

/// Lanes of one `__m512` of `f32`.
const L: usize = 16;
/// The lattice width this path handles: two rows per vector.
const WIDTH: usize = 8;

/// Whether the CPU has AVX-512F and `LATFLOW_NO_AVX512` is unset (checked once).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::env::var_os("LATFLOW_NO_AVX512").is_none() && std::arch::is_x86_feature_detected!("avx512f")
    })
}

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

/// Zeroed vectors (64-byte aligned by the type).
fn zeroed(n: usize) -> Vec<__m512> {
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

#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn forward_chunk(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    s: Conv2dShape,
    taps: &Taps,
    y: &mut [f32],
    leaky: Option<f32>,
) {
    let (hw, nv) = (s.h * s.w, s.h / 2);
    assert!(x.len() == s.n * s.cin * hw && y.len() == s.n * s.cout * hw);
    // Fewer outputs than inputs: roll the outputs (cout * k * k * nv permutations per
    // sample) instead of the inputs (cin * k * k * nv).
    let roll_outputs = s.cout < s.cin;
    let mut zbuf = zeroed(if roll_outputs { 4 * nv } else { 0 });
    for n in 0..s.n {
        let xn = &x[n * s.cin * hw..][..s.cin * hw];
        let yn = &mut y[n * s.cout * hw..][..s.cout * hw];
        // SAFETY: the slices hold one sample of the chunk's shape; zbuf holds 4 * nv vectors.
        unsafe { forward_sample(xn, w, b, s, taps, roll_outputs, &mut zbuf, yn) };
        if let Some(slope) = leaky {
            leaky_relu_in_place(yn, slope);
        }
    }
}

/// `y = max-like LeakyReLU(y)`: `y > 0 ? y : slope y` (NaN stays NaN), the values of
/// `Unary::LeakyRelu`.
#[target_feature(enable = "avx512f")]
fn leaky_relu_in_place(y: &mut [f32], slope: f32) {
    let sl = _mm512_set1_ps(slope);
    let mut chunks = y.chunks_exact_mut(L);
    for c in &mut chunks {
        // SAFETY: c holds 16 floats.
        unsafe {
            let v = _mm512_loadu_ps(c.as_ptr());
            let pos = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, _mm512_setzero_ps());
            _mm512_storeu_ps(c.as_mut_ptr(), _mm512_mask_blend_ps(pos, _mm512_mul_ps(v, sl), v));
        }
    }
    for v in chunks.into_remainder() {
        if *v <= 0.0 {
            *v *= slope;
        }
    }
}

/// One sample's outputs (every tile of its output channels).
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn forward_sample(
    xn: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    s: Conv2dShape,
    taps: &Taps,
    roll_outputs: bool,
    zbuf: &mut [__m512],
    yn: &mut [f32],
) {
    let nv = s.h / 2;
    if roll_outputs && s.k == 3 && nv == 4 {
        let mut o0 = 0;
        while o0 < s.cout {
            let ob = (s.cout - o0).min(2);
            // SAFETY: o0 + ob <= cout; slices hold one sample; k = 3, h = 8.
            unsafe {
                if ob == 2 {
                    forward_roll_rows::<2>(xn, w, b, s, taps, o0, yn)
                } else {
                    forward_roll_rows::<1>(xn, w, b, s, taps, o0, yn)
                }
            }
            o0 += ob;
        }
        return;
    }
    if roll_outputs {
        let mut o0 = 0;
        while o0 < s.cout {
            let ob = (s.cout - o0).min(4);
            // SAFETY: o0 + ob <= cout; slices hold one sample; zbuf holds 4 * nv vectors.
            unsafe {
                match ob {
                    4 => forward_roll_outputs::<4>(xn, w, b, s, taps, o0, zbuf, yn),
                    3 => forward_roll_outputs::<3>(xn, w, b, s, taps, o0, zbuf, yn),
                    2 => forward_roll_outputs::<2>(xn, w, b, s, taps, o0, zbuf, yn),
                    _ => forward_roll_outputs::<1>(xn, w, b, s, taps, o0, zbuf, yn),
                }
            }
            o0 += ob;
        }
        return;
    }
    if s.k == 3 && nv == 4 {
        let mut o0 = 0;
        while o0 < s.cout {
            let ob = (s.cout - o0).min(8);
            for v0 in [0, 2] {
                // SAFETY: o0 + ob <= cout, v0 + 2 <= nv = 4; slices hold one sample; k = 3.
                unsafe { rows!(forward_rows_tile, ob, (xn, w, b, s, taps, o0, v0, yn)) };
            }
            o0 += ob;
        }
        return;
    }
    let mut o0 = 0;
    while o0 < s.cout {
        let mut v0 = 0;
        let ob = block(s.cout - o0, nv).0;
        while v0 < nv {
            let (ob, rb) = block(s.cout - o0, nv - v0);
            // SAFETY: o0 + ob <= cout, v0 + rb <= nv; slices hold one sample.
            unsafe { blocks!(forward_tile, ob, rb, (xn, w, b, s, taps, o0, v0, yn)) };
            v0 += rb;
        }
        o0 += ob;
    }
}

/// Output channels `o0..o0+O`, vectors `v0..v0+R` of one sample.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn forward_tile<const O: usize, const R: usize>(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    s: Conv2dShape,
    taps: &Taps,
    o0: usize,
    v0: usize,
    y: &mut [f32],
) {
    let (hw, kk, nv) = (s.h * s.w, s.k * s.k, s.h / 2);
    assert!(v0 + R <= nv && o0 + O <= s.cout && x.len() >= s.cin * hw && w.len() >= s.cout * s.cin * kk);
    assert!(y.len() >= s.cout * hw && taps.idx.len() == kk && taps.src.len() == kk * nv);
    let mut acc = [[_mm512_setzero_ps(); R]; O];
    if let Some(b) = b {
        for o in 0..O {
            acc[o] = [_mm512_set1_ps(b[o0 + o]); R];
        }
    }
    let (xb, wb) = (x.as_ptr(), w.as_ptr());
    for c in 0..s.cin {
        // SAFETY: plane c of the sample lies inside x (asserted).
        let plane = unsafe { xb.add(c * hw) };
        for t in 0..kk {
            let idx = tap_idx(taps, t);
            let mut xv = [_mm512_setzero_ps(); R];
            for r in 0..R {
                // SAFETY: v0 + r < nv, t < kk.
                xv[r] = unsafe { shifted(plane, taps, nv, t, v0 + r, idx) };
            }
            for o in 0..O {
                // SAFETY: ((o0 + o) * cin + c) * kk + t < cout * cin * kk (asserted).
                let wv = _mm512_set1_ps(unsafe { *wb.add(((o0 + o) * s.cin + c) * kk + t) });
                for r in 0..R {
                    acc[o][r] = _mm512_fmadd_ps(wv, xv[r], acc[o][r]);
                }
            }
        }
    }
    let yb = y.as_mut_ptr();
    for o in 0..O {
        for r in 0..R {
            // SAFETY: (o0 + o) * hw + (v0 + r) * 16 + 16 <= cout * hw <= y.len().
            unsafe { _mm512_storeu_ps(yb.add((o0 + o) * hw + (v0 + r) * L), acc[o][r]) };
        }
    }
}

/// [`forward_tile`] with `R = 2` for a 3x3 kernel on an 8x8 lattice (4 vectors per
/// plane): the shifted vectors of all nine taps of output vectors `v0, v0 + 1` are
/// permutations of the four plane vectors `v0 - 1 .. v0 + 2` (mod 4), loaded once per input
/// channel (instead of two per tap and vector). Output vector `v` of kernel row `a` reads
/// vectors `(v - 1, v)`, `(v, v)`, `(v, v + 1)` for `a = 0, 1, 2` ([`Taps::new`]).
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn forward_rows_tile<const O: usize>(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    s: Conv2dShape,
    taps: &Taps,
    o0: usize,
    v0: usize,
    y: &mut [f32],
) {
    const K: usize = 3;
    const NV: usize = 4;
    const R: usize = 2;
    let (hw, kk) = (s.h * s.w, K * K);
    assert!(s.k == K && s.h == 2 * NV && v0 + R <= NV && o0 + O <= s.cout && taps.idx.len() == kk);
    assert!(x.len() >= s.cin * hw && w.len() >= s.cout * s.cin * kk && y.len() >= s.cout * hw);
    let mut acc = [[_mm512_setzero_ps(); R]; O];
    if let Some(b) = b {
        for o in 0..O {
            acc[o] = [_mm512_set1_ps(b[o0 + o]); R];
        }
    }
    let (xb, wb) = (x.as_ptr(), w.as_ptr());
    for c in 0..s.cin {
        // xr[j] = plane vector (v0 + j - 1) mod 4
        let mut xr = [_mm512_setzero_ps(); NV];
        for (j, xr) in xr.iter_mut().enumerate() {
            // SAFETY: c < cin and the vector index is < 4: inside the sample (asserted).
            *xr = unsafe { _mm512_loadu_ps(xb.add(c * hw + ((v0 + j + NV - 1) % NV) * L)) };
        }
        for a in 0..K {
            for e in 0..K {
                let t = a * K + e;
                let idx = tap_idx(taps, t);
                let mut xs = [_mm512_setzero_ps(); R];
                for r in 0..R {
                    // output vector v0 + r: sources xr[r + (a > 0)], xr[r + 1 + (a == 2)]
                    let (ja, jb) = (r + usize::from(a > 0), r + 1 + usize::from(a == 2));
                    debug_assert_eq!(taps.src[t * NV + v0 + r], ((v0 + ja + NV - 1) % NV, (v0 + jb + NV - 1) % NV));
                    xs[r] = _mm512_permutex2var_ps(xr[ja], idx, xr[jb]);
                }
                for o in 0..O {
                    // SAFETY: ((o0 + o) * cin + c) * kk + t < cout * cin * kk (asserted).
                    let wv = _mm512_set1_ps(unsafe { *wb.add(((o0 + o) * s.cin + c) * kk + t) });
                    for r in 0..R {
                        acc[o][r] = _mm512_fmadd_ps(wv, xs[r], acc[o][r]);
                    }
                }
            }
        }
    }
    let yb = y.as_mut_ptr();
    for o in 0..O {
        for r in 0..R {
            // SAFETY: (o0 + o) * hw + (v0 + r) * 16 + 16 <= cout * hw (asserted).
            unsafe { _mm512_storeu_ps(yb.add((o0 + o) * hw + (v0 + r) * L), acc[o][r]) };
        }
    }
}

/// Output channels `o0..o0+O` of one sample as `y[o] = b[o] + sum_t roll_t(z[o,t])` with
/// `z[o,t] = sum_c w[o,c,t] x[c]`: the channel sums first (no permutations), then one
/// permutation per output vector and tap.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn forward_roll_outputs<const O: usize>(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    s: Conv2dShape,
    taps: &Taps,
    o0: usize,
    zbuf: &mut [__m512],
    y: &mut [f32],
) {
    let (hw, kk, nv) = (s.h * s.w, s.k * s.k, s.h / 2);
    assert!(o0 + O <= s.cout && x.len() >= s.cin * hw && w.len() >= s.cout * s.cin * kk);
    assert!(y.len() >= s.cout * hw && zbuf.len() >= O * nv && taps.src.len() == kk * nv);
    let (xb, wb, yb) = (x.as_ptr(), w.as_ptr(), y.as_mut_ptr());
    for o in 0..O {
        let bias = _mm512_set1_ps(b.map_or(0.0, |b| b[o0 + o]));
        for v in 0..nv {
            // SAFETY: (o0 + o) * hw + v * 16 + 16 <= cout * hw (asserted).
            unsafe { _mm512_storeu_ps(yb.add((o0 + o) * hw + v * L), bias) };
        }
    }
    for t in 0..kk {
        let mut v0 = 0;
        while v0 < nv {
            if nv - v0 >= 4 {
                // SAFETY: v0 + 4 <= nv.
                unsafe { channel_sums::<O, 4>(xb, wb, s.cin, kk, hw, o0, t, v0, nv, zbuf) };
                v0 += 4;
            } else {
                // SAFETY: v0 < nv.
                unsafe { channel_sums::<O, 1>(xb, wb, s.cin, kk, hw, o0, t, v0, nv, zbuf) };
                v0 += 1;
            }
        }
        let idx = tap_idx(taps, t);
        for o in 0..O {
            for v in 0..nv {
                let (a, c) = taps.src[t * nv + v];
                let z = _mm512_permutex2var_ps(zbuf[o * nv + a], idx, zbuf[o * nv + c]);
                // SAFETY: (o0 + o) * hw + v * 16 + 16 <= cout * hw (asserted).
                unsafe {
                    let p = yb.add((o0 + o) * hw + v * L);
                    _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), z));
                }
            }
        }
    }
}

/// [`forward_roll_outputs`] for a 3x3 kernel on an 8x8 lattice (4 vectors per plane),
/// one kernel row `a` at a time: `z[e][o][v] = sum_c w[o0 + o, c, (a, e)] x[c][v]` for the
/// row's three taps, in registers (each `x` vector loaded once for three taps), then
/// `y[o][v] += sum_e roll_(a, e)(z[e][o])[v]`, with the row's source vectors known at compile
/// time: output vector `v` reads vectors `(v - 1, v)` for `a = 0`, `(v, v)` for `a = 1` and
/// `(v, v + 1)` for `a = 2` (mod 4; [`Taps::new`] for `h = 8`, `k = 3`).
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn forward_roll_rows<const O: usize>(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    s: Conv2dShape,
    taps: &Taps,
    o0: usize,
    y: &mut [f32],
) {
    const K: usize = 3;
    const NV: usize = 4;
    let (hw, kk) = (s.h * s.w, K * K);
    assert!(s.k == K && s.h == 2 * NV && o0 + O <= s.cout && taps.idx.len() == kk);
    assert!(x.len() >= s.cin * hw && w.len() >= s.cout * s.cin * kk && y.len() >= s.cout * hw);
    let (xb, wb) = (x.as_ptr(), w.as_ptr());
    let mut yacc = [[_mm512_setzero_ps(); NV]; O];
    for (o, ya) in yacc.iter_mut().enumerate() {
        *ya = [_mm512_set1_ps(b.map_or(0.0, |b| b[o0 + o])); NV];
    }
    for a in 0..K {
        let mut z = [[[_mm512_setzero_ps(); NV]; O]; K];
        for c in 0..s.cin {
            let mut xv = [_mm512_setzero_ps(); NV];
            for (v, xv) in xv.iter_mut().enumerate() {
                // SAFETY: c < cin, v < 4: inside the sample's planes (asserted).
                *xv = unsafe { _mm512_loadu_ps(xb.add(c * hw + v * L)) };
            }
            for o in 0..O {
                for e in 0..K {
                    // SAFETY: ((o0 + o) * cin + c) * kk + 3a + e < cout * cin * kk (asserted).
                    let wv = _mm512_set1_ps(unsafe { *wb.add(((o0 + o) * s.cin + c) * kk + a * K + e) });
                    for v in 0..NV {
                        z[e][o][v] = _mm512_fmadd_ps(wv, xv[v], z[e][o][v]);
                    }
                }
            }
        }
        for e in 0..K {
            let idx = tap_idx(taps, a * K + e);
            for v in 0..NV {
                let ia = (v + NV - usize::from(a == 0)) % NV;
                let ib = (v + usize::from(a == 2)) % NV;
                debug_assert_eq!(taps.src[(a * K + e) * NV + v], (ia, ib));
                for o in 0..O {
                    yacc[o][v] = _mm512_add_ps(yacc[o][v], _mm512_permutex2var_ps(z[e][o][ia], idx, z[e][o][ib]));
                }
            }
        }
    }
    let yb = y.as_mut_ptr();
    for (o, ya) in yacc.iter().enumerate() {
        for (v, yv) in ya.iter().enumerate() {
            // SAFETY: (o0 + o) * hw + v * 16 + 16 <= cout * hw (asserted).
            unsafe { _mm512_storeu_ps(yb.add((o0 + o) * hw + v * L), *yv) };
        }
    }
}

/// `zbuf[o * nv + v] = sum_c w[o0 + o, c, t] x[c][v]` for `v in v0..v0+R`.
///
/// # Safety
/// AVX-512F must be available; `x` points at `cin` planes of `hw = nv * 16` floats, `w` at
/// `(o0 + O) * cin * kk` weights; `v0 + R <= nv`, `zbuf` holds `O * nv` vectors.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn channel_sums<const O: usize, const R: usize>(
    x: *const f32,
    w: *const f32,
    cin: usize,
    kk: usize,
    hw: usize,
    o0: usize,
    t: usize,
    v0: usize,
    nv: usize,
    zbuf: &mut [__m512],
) {
    let mut acc = [[_mm512_setzero_ps(); R]; O];
    for c in 0..cin {
        let mut xv = [_mm512_setzero_ps(); R];
        for r in 0..R {
            // SAFETY: the caller's contract.
            xv[r] = unsafe { _mm512_loadu_ps(x.add(c * hw + (v0 + r) * L)) };
        }
        for o in 0..O {
            // SAFETY: the caller's contract.
            let wv = _mm512_set1_ps(unsafe { *w.add(((o0 + o) * cin + c) * kk + t) });
            for r in 0..R {
                acc[o][r] = _mm512_fmadd_ps(wv, xv[r], acc[o][r]);
            }
        }
    }
    for o in 0..O {
        for r in 0..R {
            zbuf[o * nv + v0 + r] = acc[o][r];
        }
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
    let wt = super::conv2d::flipped_weights(w, &s);
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
        reduce_parts(&parts, |p| &p.0, dw);
        if let Some(db) = db {
            reduce_parts(&parts, |p| &p.1, db);
        }
    }
}

/// `out[i] = lanes(sum_p pick(p)[i])`: the chunks' lane vectors added in chunk order,
/// then the 16 lanes of the sum in `_mm512_reduce_add_ps`'s fixed order.
#[target_feature(enable = "avx512f")]
fn reduce_parts<P>(parts: &[P], pick: impl Fn(&P) -> &Vec<__m512>, out: &mut [f32]) {
    for (i, o) in out.iter_mut().enumerate() {
        let mut v = _mm512_setzero_ps();
        for p in parts {
            v = _mm512_add_ps(v, pick(p)[i]);
        }
        *o = _mm512_reduce_add_ps(v);
    }
}

/// Per-lane partial sums `(dw, db)` over the `s.n` samples of one chunk.
#[target_feature(enable = "avx512f")]
unsafe fn backward_weight_chunk(dy: &[f32], x: &[f32], s: Conv2dShape, taps: &Taps) -> (Vec<__m512>, Vec<__m512>) {
    let (hw, kk, nv) = (s.h * s.w, s.k * s.k, s.h / 2);
    assert!(x.len() == s.n * s.cin * hw && dy.len() == s.n * s.cout * hw);
    let mut dw = zeroed(s.cout * s.cin * kk);
    let mut db = zeroed(s.cout);
    for n in 0..s.n {
        for (o, d) in db.iter_mut().enumerate() {
            for v in 0..nv {
                // SAFETY: ((n * cout + o) * nv + v) * 16 + 16 <= dy.len().
                *d = _mm512_add_ps(*d, unsafe { _mm512_loadu_ps(dy.as_ptr().add(((n * s.cout + o) * nv + v) * L)) });
            }
        }
    }
    // Blocks of samples small enough to stay in L1 while every (plane, tap) block
    // streams through them.
    let per_sample = (s.cin + s.cout) * hw * std::mem::size_of::<f32>();
    let nb = (SAMPLE_BLOCK_BYTES / per_sample).clamp(1, s.n.max(1));
    let mut n0 = 0;
    while n0 < s.n {
        let n1 = (n0 + nb).min(s.n);
        let (xs, dys) = (&x[n0 * s.cin * hw..n1 * s.cin * hw], &dy[n0 * s.cout * hw..n1 * s.cout * hw]);
        // SAFETY: the slices hold n1 - n0 samples of shape s.
        unsafe { weight_block(xs, dys, Conv2dShape { n: n1 - n0, ..s }, taps, &mut dw) };
        n0 = n1;
    }

    (dw, db)
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
use rows;

/// [`weight_tile`] for a 3x3 kernel, over the three taps `(a, 0..3)` of kernel row `a`:
/// their shifted vectors are permutations of the same two source vectors (the row shift
/// picks the sources, the column shift only the permutation), so each sample vector is
/// loaded once for three taps and every `other` vector feeds three FMAs.
#[target_feature(enable = "avx512f")]
unsafe fn weight_row_tile<const O: usize>(
    g: &WeightGeom,
    s: Conv2dShape,
    taps: &Taps,
    sc: usize,
    u0: usize,
    a: usize,
    dw: &mut [__m512],
) {
    const K: usize = 3;
    let (hw, kk, nv) = (s.h * s.w, K * K, s.h / 2);
    assert!(s.k == K && a < K && sc < g.ns && u0 + O <= g.no && dw.len() == s.cout * s.cin * kk);
    assert!(g.shifted.len() >= s.n * g.ns * hw && g.other.len() >= s.n * g.no * hw && taps.src.len() == kk * nv);
    let at = |u: usize, t: usize| {
        if g.flip {
            (sc * s.cin + u) * kk + t
        } else {
            (u * s.cin + sc) * kk + t
        }
    };
    let tap = |t: usize| if g.flip { kk - 1 - t } else { t };
    let mut acc = [[_mm512_setzero_ps(); K]; O];
    let mut idx = [_mm512_setzero_si512(); K];
    for e in 0..K {
        idx[e] = tap_idx(taps, tap(a * K + e));
        for u in 0..O {
            acc[u][e] = dw[at(u0 + u, a * K + e)];
        }
    }
    // the source vectors of row a (the same for its three taps)
    let src = &taps.src[tap(a * K) * nv..][..nv];
    let (sb, ob) = (g.shifted.as_ptr(), g.other.as_ptr());
    for n in 0..s.n {
        // SAFETY: plane sc of sample n lies inside `shifted` (asserted).
        let plane = unsafe { sb.add((n * g.ns + sc) * hw) };
        for (v, &(ia, ib)) in src.iter().enumerate() {
            // SAFETY: source indices are < nv, inside the plane.
            let (va, vb) = unsafe { (_mm512_loadu_ps(plane.add(ia * L)), _mm512_loadu_ps(plane.add(ib * L))) };
            let xs = [
                _mm512_permutex2var_ps(va, idx[0], vb),
                _mm512_permutex2var_ps(va, idx[1], vb),
                _mm512_permutex2var_ps(va, idx[2], vb),
            ];
            for u in 0..O {
                // SAFETY: ((n * no + u0 + u) * nv + v) * 16 + 16 <= other.len() (asserted).
                let ov = unsafe { _mm512_loadu_ps(ob.add(((n * g.no + u0 + u) * nv + v) * L)) };
                for e in 0..K {
                    acc[u][e] = _mm512_fmadd_ps(ov, xs[e], acc[u][e]);
                }
            }
        }
    }
    for u in 0..O {
        for e in 0..K {
            dw[at(u0 + u, a * K + e)] = acc[u][e];
        }
    }
}

/// Adds one L1-sized block of samples (`sb.n` of them) to the per-lane weight-gradient
/// sums `dw`: every (rolled plane, output block, kernel row or tap block) tile streams the
/// block once.
#[target_feature(enable = "avx512f")]
unsafe fn weight_block(xs: &[f32], dys: &[f32], sb: Conv2dShape, taps: &Taps, dw: &mut [__m512]) {
    let kk = sb.k * sb.k;
    // Roll the side with fewer channels: x (taps as they are) or dy (taps flipped).
    let g = if sb.cin <= sb.cout {
        WeightGeom { shifted: xs, ns: sb.cin, other: dys, no: sb.cout, flip: false }
    } else {
        WeightGeom { shifted: dys, ns: sb.cout, other: xs, no: sb.cin, flip: true }
    };
    for sc in 0..g.ns {
        if sb.k == 3 {
            // the three taps of a kernel row share their source vectors: one tile per row
            let mut o0 = 0;
            while o0 < g.no {
                let ob = (g.no - o0).min(8);
                for a in 0..3 {
                    // SAFETY: sc < ns, o0 + ob <= no, a < k = 3; slices hold sb.n samples.
                    unsafe { rows!(weight_row_tile, ob, (&g, sb, taps, sc, o0, a, dw)) };
                }
                o0 += ob;
            }
            continue;
        }
        let mut o0 = 0;
        while o0 < g.no {
            let ob = g.no - o0;
            let (ob, tb) = if ob >= 8 {
                (8, 2)
            } else if ob > 4 {
                (ob, 2)
            } else {
                (ob, 4)
            };
            let mut t0 = 0;
            while t0 < kk {
                let tb = if kk - t0 >= tb { tb } else { 1 };
                // SAFETY: sc < ns, o0 + ob <= no, t0 + tb <= kk; slices hold sb.n samples.
                unsafe { blocks!(weight_tile, ob, tb, (&g, sb, taps, sc, o0, t0, dw)) };
                t0 += tb;
            }
            o0 += ob;
        }
    }
}

/// The activation whose derivative [`backward_fused`] applies to the output gradient,
/// from the activation's output `y` (as `Unary::grad_from_output`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ActGrad {
    /// `y > 0 ? g : slope g`.
    Leaky(f32),
    /// `g (1 - y^2)`.
    Tanh,
}

/// Both gradients of a conv whose output went through an activation, on one thread, one
/// L1-sized block of samples at a time: `gz = g act'(y)` into a block scratch, then the
/// block's input gradient (the forward kernel on `gz` with the flipped kernel) and its
/// weight-gradient tiles, while `gz` is in L1 (instead of a pass writing `gz` for the
/// whole batch and two kernels reading it back). Bit for bit the values of
/// `grad_from_output`, [`backward_input`] and [`backward_weight`] on one thread.
///
/// # Panics
/// As [`backward_weight`], or if `y` and `g` differ in length.
#[allow(clippy::too_many_arguments)]
pub fn backward_fused(
    g: &[f32],
    y: &[f32],
    act: Option<ActGrad>,
    x: &[f32],
    w: &[f32],
    s: Conv2dShape,
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    assert!(available() && fits(&s), "conv2d_avx512: shape {s:?} or CPU not supported");
    s.check(x.len(), dw.len(), g.len());
    assert!(act.is_none() || y.len() == g.len(), "conv2d_avx512: activation output length");
    if let Some(dx) = &dx {
        assert_eq!(dx.len(), s.input_len(), "conv2d_avx512: input gradient length");
    }
    if let Some(db) = &db {
        assert_eq!(db.len(), s.cout, "conv2d_avx512: bias gradient length");
    }
    // SAFETY: AVX-512F is available and the lengths match s (asserted).
    unsafe { fused_impl(g, y, act, x, w, s, dx, dw, db) }
}

/// [`backward_fused`] after its checks.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn fused_impl(
    g: &[f32],
    y: &[f32],
    act: Option<ActGrad>,
    x: &[f32],
    w: &[f32],
    s: Conv2dShape,
    mut dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    let (hw, kk, nv) = (s.h * s.w, s.k * s.k, s.h / 2);
    let (xin, yout) = (s.cin * hw, s.cout * hw);
    let taps = Taps::cached(s.h, s.k);
    let wt = super::conv2d::flipped_weights(w, &s);
    let st = Conv2dShape { cin: s.cout, cout: s.cin, ..s };
    let roll_in = st.cout < st.cin;
    let mut zbuf = zeroed(if roll_in { 4 * nv } else { 0 });
    let (mut dwp, mut dbp) = (zeroed(s.cout * s.cin * kk), zeroed(s.cout));
    let per_sample = (s.cin + s.cout) * hw * std::mem::size_of::<f32>();
    let nb = (SAMPLE_BLOCK_BYTES / per_sample).clamp(1, s.n.max(1));
    let mut gz = vec![0.0f32; if act.is_some() { nb * yout } else { 0 }];
    let mut n0 = 0;
    while n0 < s.n {
        let n1 = (n0 + nb).min(s.n);
        let gb = &g[n0 * yout..n1 * yout];
        let gzb: &[f32] = match act {
            None => gb,
            Some(a) => {
                let out = &mut gz[..(n1 - n0) * yout];
                // SAFETY: AVX-512F was asserted; equal lengths.
                unsafe { act_grad(a, &y[n0 * yout..n1 * yout], gb, out) };
                out
            }
        };
        for n in 0..n1 - n0 {
            for (o, d) in dbp.iter_mut().enumerate() {
                // in a register across the vectors (the same additions in the same order)
                let mut acc = *d;
                for v in 0..nv {
                    // SAFETY: ((n * cout + o) * nv + v) * 16 + 16 <= gzb.len().
                    acc = _mm512_add_ps(acc, unsafe {
                        _mm512_loadu_ps(gzb.as_ptr().add(((n * s.cout + o) * nv + v) * L))
                    });
                }
                *d = acc;
            }
            if let Some(dx) = dx.as_deref_mut() {
                let dxn = &mut dx[(n0 + n) * xin..(n0 + n + 1) * xin];
                // SAFETY: one sample of the transposed shape st; zbuf holds 4 * nv vectors.
                unsafe {
                    forward_sample(&gzb[n * yout..(n + 1) * yout], &wt, None, st, &taps, roll_in, &mut zbuf, dxn)
                };
            }
        }
        let xs = &x[n0 * xin..n1 * xin];
        // SAFETY: the slices hold n1 - n0 samples of shape s.
        unsafe { weight_block(xs, gzb, Conv2dShape { n: n1 - n0, ..s }, &taps, &mut dwp) };
        n0 = n1;
    }
    let parts = [(dwp, dbp)];
    reduce_parts(&parts, |p| &p.0, dw);
    if let Some(db) = db {
        reduce_parts(&parts, |p| &p.1, db);
    }
}

/// `out = g act'(y)` in the order of `Unary::grad_from_output`.
#[target_feature(enable = "avx512f")]
unsafe fn act_grad(act: ActGrad, y: &[f32], g: &[f32], out: &mut [f32]) {
    let n = out.len() / L * L;
    for i in (0..n).step_by(L) {
        // SAFETY: i + 16 <= n <= the three lengths (equal).
        unsafe {
            let (yv, gv) = (_mm512_loadu_ps(y.as_ptr().add(i)), _mm512_loadu_ps(g.as_ptr().add(i)));
            let r = match act {
                ActGrad::Leaky(slope) => {
                    let pos = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(yv, _mm512_setzero_ps());
                    _mm512_mask_blend_ps(pos, _mm512_mul_ps(_mm512_set1_ps(slope), gv), gv)
                }
                ActGrad::Tanh => _mm512_mul_ps(gv, _mm512_sub_ps(_mm512_set1_ps(1.0), _mm512_mul_ps(yv, yv))),
            };
            _mm512_storeu_ps(out.as_mut_ptr().add(i), r);
        }
    }
    for i in n..out.len() {
        out[i] = match act {
            ActGrad::Leaky(slope) => {
                if y[i] > 0.0 {
                    g[i]
                } else {
                    slope * g[i]
                }
            }
            ActGrad::Tanh => g[i] * (1.0 - y[i] * y[i]),
        };
    }
}

/// Bytes of `x` and `dy` per sample block of the weight gradient: 40 KiB of a 48 KiB L1
/// (a tile reads one plane of one side and all of the other, so its working set is
/// smaller). 24, 32, 40 and 64 KiB measured at 8 -> 8, batch 64: 50.5, 48.4, 47.7, 52.0 us.
const SAMPLE_BLOCK_BYTES: usize = 40 << 10;

/// Which side of the weight gradient is rolled: `shifted` (`ns` planes per sample) and
/// the `other` side (`no` planes per sample); `flip` when `shifted` is `dy` (rolled back).
struct WeightGeom<'a> {
    shifted: &'a [f32],
    ns: usize,
    other: &'a [f32],
    no: usize,
    flip: bool,
}

/// Adds `sum_{n, v} other[n][u][v] * shifted[n][sc](tap t)[v]` to the lane sums of the
/// weight entries of planes `u in u0..u0+O` and taps `t in t0..t0+T`, accumulating in
/// registers over all samples of the chunk.
#[target_feature(enable = "avx512f")]
unsafe fn weight_tile<const O: usize, const T: usize>(
    g: &WeightGeom,
    s: Conv2dShape,
    taps: &Taps,
    sc: usize,
    u0: usize,
    t0: usize,
    dw: &mut [__m512],
) {
    let (hw, kk, nv) = (s.h * s.w, s.k * s.k, s.h / 2);
    assert!(sc < g.ns && u0 + O <= g.no && t0 + T <= kk && dw.len() == s.cout * s.cin * kk);
    assert!(g.shifted.len() >= s.n * g.ns * hw && g.other.len() >= s.n * g.no * hw);
    // dw index of (shifted plane sc, other plane u, tap t)
    let at = |u: usize, t: usize| {
        if g.flip {
            (sc * s.cin + u) * kk + t
        } else {
            (u * s.cin + sc) * kk + t
        }
    };
    // dy rolled back by tap t is the shift of the flipped tap
    let tap = |t: usize| if g.flip { kk - 1 - t } else { t };
    let mut acc = [[_mm512_setzero_ps(); T]; O];
    for u in 0..O {
        for j in 0..T {
            acc[u][j] = dw[at(u0 + u, t0 + j)];
        }
    }
    let mut idx = [_mm512_setzero_si512(); T];
    for j in 0..T {
        idx[j] = tap_idx(taps, tap(t0 + j));
    }
    let (sb, ob) = (g.shifted.as_ptr(), g.other.as_ptr());
    for n in 0..s.n {
        // SAFETY: plane sc of sample n lies inside `shifted` (asserted).
        let plane = unsafe { sb.add((n * g.ns + sc) * hw) };
        for v in 0..nv {
            let mut xs = [_mm512_setzero_ps(); T];
            for j in 0..T {
                // SAFETY: v < nv, tap < kk.
                xs[j] = unsafe { shifted(plane, taps, nv, tap(t0 + j), v, idx[j]) };
            }
            for u in 0..O {
                // SAFETY: ((n * no + u0 + u) * nv + v) * 16 + 16 <= other.len() (asserted).
                let ov = unsafe { _mm512_loadu_ps(ob.add(((n * g.no + u0 + u) * nv + v) * L)) };
                for j in 0..T {
                    acc[u][j] = _mm512_fmadd_ps(ov, xs[j], acc[u][j]);
                }
            }
        }
    }
    for u in 0..O {
        for j in 0..T {
            dw[at(u0 + u, t0 + j)] = acc[u][j];
        }
    }
}
