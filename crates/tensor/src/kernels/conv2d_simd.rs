//! SIMD (`wide`) and batch-threaded (`rayon`) circular conv2d kernels; same functions
//! as [`super::conv2d::reference`], which the tests compare them against.
//!
//! Layout trick ("pixels in lanes"): each input plane is copied once into a circularly
//! padded plane of `(h + 2p)` rows whose row stride is `nblk * LANES + 2p` (`nblk`
//! column blocks of `LANES` pixels). The tap `(a, e)` of output row `i`, column block
//! `jb` is then one unaligned vector load at padded row `i + a`, column `jb * LANES + e`:
//! no index arithmetic modulo the lattice in the inner loops. Lanes past the lattice
//! width compute values that are never stored (forward) or multiply zeros (weight
//! gradient), so any `h, w >= k` works; an 8-wide lattice is exactly one f32x8 per row.
//!
//! - forward: register tiles of `O` output channels x `R` rows; each tap loads `R`
//!   input vectors and `O` broadcast weights for `O * R` FMAs.
//! - input gradient: the forward kernel run on `dy` with the kernel flipped and its
//!   in/out channels swapped: `dx[c] = sum_o w[o,c,k-1-a,k-1-e] (*) dy[o]`.
//! - weight gradient: for each `(o, c)` the `k x k` tap sums live in registers while a
//!   block of samples streams through; `R` rows of `dy` are held in registers and each
//!   padded input row is loaded once per tap column.
//! - threads: rayon over contiguous chunks of the batch; the weight gradient sums the
//!   per-chunk partials in chunk order, so results do not depend on scheduling.

use rayon::prelude::*;

use super::conv2d_shape::{flipped_weights, Conv2dShape};
use super::simd::SimdFloat;

/// The kernels' entry points for `f32` and `f64`, compiled once, in this crate.
///
/// [`super::conv2d`]'s functions are generic over the element type, so every crate that
/// trains or audits a flow instantiates them; were they to call the generic kernels below
/// directly, each such crate (every example, test binary and the `latflow` binary) would
/// also compile its own copy of their unrolled register tiles, the slowest code in the
/// workspace to optimize: 166 KB of the 385 KB of machine code that the `phi4` example
/// compiled itself (2026-12-01). These methods are not generic, so they are compiled here
/// and only called from downstream.
pub(crate) trait Entry: SimdFloat {
    /// [`forward`].
    fn forward(x: &[Self], w: &[Self], b: Option<&[Self]>, s: Conv2dShape, y: &mut [Self], threaded: bool);
    /// [`backward_input`].
    fn backward_input(dy: &[Self], w: &[Self], s: Conv2dShape, dx: &mut [Self], threaded: bool);
    /// [`backward_weight`].
    fn backward_weight(
        dy: &[Self],
        x: &[Self],
        s: Conv2dShape,
        dw: &mut [Self],
        db: Option<&mut [Self]>,
        threaded: bool,
    );
}

macro_rules! entry_impl {
    ($t:ty) => {
        impl Entry for $t {
            #[inline(never)]
            fn forward(x: &[$t], w: &[$t], b: Option<&[$t]>, s: Conv2dShape, y: &mut [$t], threaded: bool) {
                forward(x, w, b, s, y, threaded)
            }
            #[inline(never)]
            fn backward_input(dy: &[$t], w: &[$t], s: Conv2dShape, dx: &mut [$t], threaded: bool) {
                backward_input(dy, w, s, dx, threaded)
            }
            #[inline(never)]
            fn backward_weight(
                dy: &[$t],
                x: &[$t],
                s: Conv2dShape,
                dw: &mut [$t],
                db: Option<&mut [$t]>,
                threaded: bool,
            ) {
                backward_weight(dy, x, s, dw, db, threaded)
            }
        }
    };
}
entry_impl!(f32);
entry_impl!(f64);

/// Geometry of the padded planes for one shape.
#[derive(Clone, Copy, Debug)]
struct Geom {
    h: usize,
    w: usize,
    k: usize,
    p: usize,
    /// Column blocks of `LANES` pixels per row.
    nblk: usize,
    /// Row stride of a padded input plane: `nblk * LANES + 2p`, rounded up to whole
    /// cache lines.
    rs: usize,
    /// Stride of a padded input plane: `(h + 2p) * rs`.
    ps: usize,
    /// Row stride of an output-shaped (unpadded) plane in vector blocks: `nblk * LANES`.
    ys: usize,
}

impl Geom {
    fn new<T: SimdFloat>(s: &Conv2dShape) -> Self {
        let p = s.k / 2;
        let nblk = s.w.div_ceil(T::LANES);
        // rows start on a cache line, so an 8-wide row (plus halo) never splits a load
        let rs = (nblk * T::LANES + 2 * p).next_multiple_of(CACHE_LINE / std::mem::size_of::<T>());
        Geom { h: s.h, w: s.w, k: s.k, p, nblk, rs, ps: (s.h + 2 * p) * rs, ys: nblk * T::LANES }
    }
}

/// Bytes per cache line; padded planes are aligned to it.
const CACHE_LINE: usize = 64;

/// A zeroed scratch buffer of `len` elements that starts on a cache line.
struct Scratch<T> {
    buf: Vec<T>,
    off: usize,
    len: usize,
}

impl<T: SimdFloat> Scratch<T> {
    fn new(len: usize) -> Self {
        let extra = CACHE_LINE / std::mem::size_of::<T>();
        let buf = vec![T::ZERO; len + extra];
        let off = buf.as_ptr().align_offset(CACHE_LINE).min(extra);
        Scratch { buf, off, len }
    }
    fn get(&mut self) -> &mut [T] {
        &mut self.buf[self.off..self.off + self.len]
    }
}

/// Copies `planes` planes of `h x w` from `src` into circularly padded planes in `dst`
/// (see the module docs): `dst[c][t][q] = src[c][(t - p) mod h][(q - p) mod w]`.
#[inline(always)]
fn pad_planes<T: SimdFloat>(src: &[T], planes: usize, g: &Geom, dst: &mut [T]) {
    let (h, w, p, rs, ps) = (g.h, g.w, g.p, g.rs, g.ps);
    // only the first nblk * LANES + 2p columns of a padded row are ever read
    let used = g.ys + 2 * p;
    if w == T::LANES {
        // fast path: a lattice row is one vector
        let l = T::LANES;
        for c in 0..planes {
            let s = &src[c * h * l..][..h * l];
            let d = &mut dst[c * ps..][..ps];
            let mut i = (h - p) % h;
            for t in 0..h + 2 * p {
                let row: &[T] = &s[i * l..][..l];
                let dr = &mut d[t * rs..][..l + 2 * p];
                T::write_lanes(T::load(row), &mut dr[p..p + l]);
                for q in 0..p {
                    dr[q] = row[l - p + q];
                    dr[p + l + q] = row[q];
                }
                i = if i + 1 == h { 0 } else { i + 1 };
            }
        }
        return;
    }
    for c in 0..planes {
        let s = &src[c * h * w..][..h * w];
        let d = &mut dst[c * ps..][..ps];
        // padded row t holds lattice row (t - p) mod h
        let mut i = (h - p) % h;
        for t in 0..h + 2 * p {
            let row = &s[i * w..][..w];
            let dr = &mut d[t * rs..][..used];
            copy_lanes(row, &mut dr[p..p + w]);
            for q in 0..p {
                dr[q] = row[w - p + q];
            }
            // columns past the lattice wrap around: (q - p) mod w = 0, 1, ..., w - 1, 0, ...
            let mut j = 0;
            for d in &mut dr[p + w..] {
                *d = row[j];
                j = if j + 1 == w { 0 } else { j + 1 };
            }
            i = if i + 1 == h { 0 } else { i + 1 };
        }
    }
}

/// `dst.copy_from_slice(src)` in whole vectors (no `memcpy` call for short rows).
#[inline(always)]
fn copy_lanes<T: SimdFloat>(src: &[T], dst: &mut [T]) {
    let (n, l) = (src.len(), T::LANES);
    assert_eq!(n, dst.len());
    let mut j = 0;
    while j + l <= n {
        T::write_lanes(T::load(&src[j..]), &mut dst[j..]);
        j += l;
    }
    while j < n {
        dst[j] = src[j];
        j += 1;
    }
}

/// Batch chunks of the threaded weight gradient, independent of the thread count.
const WEIGHT_GRAD_CHUNKS: usize = 8;

/// Chunk length (in samples) for `parts` roughly equal parts of a batch of `n`.
pub(crate) fn chunk_len(n: usize, parts: usize) -> usize {
    n.div_ceil(parts.max(1)).max(1)
}

// ---------------------------------------------------------------------------------
// forward

/// Forward pass, SIMD; over the batch with rayon when `threaded`. Shapes are checked by
/// the caller ([`super::conv2d::forward_with`]).
pub(crate) fn forward<T: SimdFloat>(x: &[T], w: &[T], b: Option<&[T]>, s: Conv2dShape, y: &mut [T], threaded: bool) {
    let (xin, yout) = (s.cin * s.h * s.w, s.cout * s.h * s.w);
    if s.n == 0 || yout == 0 {
        return;
    }
    if xin == 0 {
        // no input channels: y is the bias
        for yo in y.chunks_mut(s.h * s.w).enumerate() {
            let bo = b.map_or(T::ZERO, |b| b[yo.0 % s.cout]);
            yo.1.fill(bo);
        }
        return;
    }
    if threaded && s.n > 1 {
        // a few chunks per thread so a busy core does not hold everyone up
        let chunk = chunk_len(s.n, 4 * rayon::current_num_threads());
        x.par_chunks(chunk * xin).zip(y.par_chunks_mut(chunk * yout)).for_each(|(xc, yc)| {
            forward_chunk(xc, w, b, Conv2dShape { n: xc.len() / xin, ..s }, yc);
        });
    } else {
        forward_chunk(x, w, b, s, y);
    }
}

/// Forward pass over the `s.n` samples of `x`, one thread.
fn forward_chunk<T: SimdFloat>(x: &[T], w: &[T], b: Option<&[T]>, s: Conv2dShape, y: &mut [T]) {
    // Each arm is a copy of the loops with the kernel size a constant.
    match s.k {
        1 => forward_chunk_k(x, w, b, s, y, 1),
        3 => forward_chunk_k(x, w, b, s, y, 3),
        5 => forward_chunk_k(x, w, b, s, y, 5),
        k => forward_chunk_k(x, w, b, s, y, k),
    }
}

#[inline(always)]
fn forward_chunk_k<T: SimdFloat>(x: &[T], w: &[T], b: Option<&[T]>, s: Conv2dShape, y: &mut [T], k: usize) {
    let g = Geom { k, p: k / 2, ..Geom::new::<T>(&s) };
    let hw = s.h * s.w;
    let mut scratch = Scratch::new(s.cin * g.ps);
    let xp = scratch.get();
    for n in 0..s.n {
        pad_planes(&x[n * s.cin * hw..][..s.cin * hw], s.cin, &g, xp);
        let yn = &mut y[n * s.cout * hw..][..s.cout * hw];
        let mut o0 = 0;
        while o0 + 4 <= s.cout {
            forward_oblock::<T, 4, 2>(xp, w, b, s.cin, o0, &g, yn);
            o0 += 4;
        }
        match s.cout - o0 {
            3 => forward_oblock::<T, 3, 3>(xp, w, b, s.cin, o0, &g, yn),
            2 => forward_oblock::<T, 2, 4>(xp, w, b, s.cin, o0, &g, yn),
            1 => forward_oblock::<T, 1, 8>(xp, w, b, s.cin, o0, &g, yn),
            _ => {}
        }
    }
}

/// Output channels `o0..o0+O` of one sample: tiles of `R` rows, then single rows.
#[inline(always)]
fn forward_oblock<T: SimdFloat, const O: usize, const R: usize>(
    xp: &[T],
    w: &[T],
    b: Option<&[T]>,
    cin: usize,
    o0: usize,
    g: &Geom,
    y: &mut [T],
) {
    let mut bias = [T::ZERO; O];
    if let Some(b) = b {
        bias.copy_from_slice(&b[o0..o0 + O]);
    }
    let mut i0 = 0;
    while i0 + R <= g.h {
        for jb in 0..g.nblk {
            forward_tile::<T, O, R>(xp, w, &bias, cin, o0, i0, jb * T::LANES, g, y);
        }
        i0 += R;
    }
    while i0 < g.h {
        for jb in 0..g.nblk {
            forward_tile::<T, O, 1>(xp, w, &bias, cin, o0, i0, jb * T::LANES, g, y);
        }
        i0 += 1;
    }
}

/// One register tile: output channels `o0..o0+O`, rows `i0..i0+R`, columns
/// `col0..col0+LANES` (clipped to the lattice when stored).
#[inline(always)]
fn forward_tile<T: SimdFloat, const O: usize, const R: usize>(
    xp: &[T],
    w: &[T],
    bias: &[T; O],
    cin: usize,
    o0: usize,
    i0: usize,
    col0: usize,
    g: &Geom,
    y: &mut [T],
) {
    let (k, rs, ps) = (g.k, g.rs, g.ps);
    let kk = k * k;
    // Largest offsets read below: padded row i0 + R - 1 + k - 1 <= h + 2p - 1 and column
    // col0 + k - 1 + LANES <= rs, in plane cin - 1; weight ((o0 + O - 1) cin + cin - 1) kk + kk - 1.
    assert!(i0 + R <= g.h && col0 + T::LANES <= g.ys && k == 2 * g.p + 1);
    assert!(xp.len() >= cin * ps && w.len() >= (o0 + O) * cin * kk);
    let (xb, wb) = (xp.as_ptr(), w.as_ptr());
    let mut acc = [[T::splat(T::ZERO); R]; O];
    for o in 0..O {
        acc[o] = [T::splat(bias[o]); R];
    }
    for c in 0..cin {
        for a in 0..k {
            for e in 0..k {
                let mut xv = [T::splat(T::ZERO); R];
                for r in 0..R {
                    // SAFETY: c < cin, i0 + r + a <= h + 2p - 1 and col0 + e + LANES <= rs
                    // (asserted above), so the LANES values lie inside plane c of xp.
                    xv[r] = unsafe { T::load_ptr(xb.add(c * ps + (i0 + r + a) * rs + col0 + e)) };
                }
                for o in 0..O {
                    // SAFETY: the index is below (o0 + O) * cin * kk <= w.len() (asserted).
                    let wv = T::splat(unsafe { *wb.add(((o0 + o) * cin + c) * kk + a * k + e) });
                    for r in 0..R {
                        acc[o][r] = T::mul_add(wv, xv[r], acc[o][r]);
                    }
                }
            }
        }
    }
    let (h, wd) = (g.h, g.w);
    for o in 0..O {
        for r in 0..R {
            let at = ((o0 + o) * h + i0 + r) * wd + col0;
            if col0 + T::LANES <= wd {
                T::write_lanes(acc[o][r], &mut y[at..at + T::LANES]);
            } else {
                let mut tmp = [T::ZERO; 8];
                T::write_lanes(acc[o][r], &mut tmp);
                y[at..at + wd - col0].copy_from_slice(&tmp[..wd - col0]);
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// input gradient

/// Input gradient: the forward kernel on `dy` with `w[o,c,a,e] -> w'[c,o,k-1-a,k-1-e]`.
pub(crate) fn backward_input<T: SimdFloat>(dy: &[T], w: &[T], s: Conv2dShape, dx: &mut [T], threaded: bool) {
    let wt = flipped_weights(w, &s);
    let st = Conv2dShape { cin: s.cout, cout: s.cin, ..s };
    forward(dy, &wt, None, st, dx, threaded);
}

// ---------------------------------------------------------------------------------
// weight gradient

/// Per-chunk partial sums of the weight and bias gradients, still in vector lanes.
struct Partial<V> {
    dw: Vec<V>,
    db: Vec<V>,
}

/// Weight (and bias) gradient, SIMD; over the batch with rayon when `threaded`.
pub(crate) fn backward_weight<T: SimdFloat>(
    dy: &[T],
    x: &[T],
    s: Conv2dShape,
    dw: &mut [T],
    db: Option<&mut [T]>,
    threaded: bool,
) {
    let (xin, yout) = (s.cin * s.h * s.w, s.cout * s.h * s.w);
    let parts: Vec<Partial<T::V>> = if s.n == 0 || yout == 0 {
        Vec::new()
    } else if xin == 0 {
        vec![backward_weight_chunk(dy, x, s)]
    } else if threaded && s.n > 1 {
        // A fixed number of chunks (not one per thread): the partial sums, and so the
        // rounding of dw, are the same whatever the pool size, so seeded runs repeat
        // bit for bit on any machine.
        let chunk = chunk_len(s.n, WEIGHT_GRAD_CHUNKS);
        x.par_chunks(chunk * xin)
            .zip(dy.par_chunks(chunk * yout))
            .map(|(xc, dyc)| backward_weight_chunk(dyc, xc, Conv2dShape { n: xc.len() / xin, ..s }))
            .collect()
    } else {
        vec![backward_weight_chunk(dy, x, s)]
    };
    // sum lanes, then chunks, in a fixed order
    for (i, d) in dw.iter_mut().enumerate() {
        *d = parts.iter().fold(T::ZERO, |acc, p| acc + T::reduce_add(p.dw[i]));
    }
    if let Some(db) = db {
        for (o, d) in db.iter_mut().enumerate() {
            *d = parts.iter().fold(T::ZERO, |acc, p| acc + T::reduce_add(p.db[o]));
        }
    }
}

/// Samples whose padded inputs are kept together while each `(o, c)` pair's tap sums
/// stay in registers.
const BW_BLOCK: usize = 4;

fn backward_weight_chunk<T: SimdFloat>(dy: &[T], x: &[T], s: Conv2dShape) -> Partial<T::V> {
    match s.k {
        1 => backward_weight_chunk_k(dy, x, s, 1),
        3 => backward_weight_chunk_k(dy, x, s, 3),
        5 => backward_weight_chunk_k(dy, x, s, 5),
        k => backward_weight_chunk_k(dy, x, s, k),
    }
}

#[inline(always)]
fn backward_weight_chunk_k<T: SimdFloat>(dy: &[T], x: &[T], s: Conv2dShape, k: usize) -> Partial<T::V> {
    let g = Geom { k, p: k / 2, ..Geom::new::<T>(&s) };
    let (hw, kk, l) = (s.h * s.w, k * k, T::LANES);
    let zero = T::splat(T::ZERO);
    let mut part = Partial { dw: vec![zero; s.cout * s.cin * kk], db: vec![zero; s.cout] };
    // dy planes with row stride `ys` (a copy with zero tail lanes unless w % LANES == 0)
    let yplane = g.h * g.ys;
    let direct = s.w.is_multiple_of(l);
    let mut dyscratch = Scratch::new(if direct { 0 } else { BW_BLOCK * s.cout * yplane });
    let dybuf = dyscratch.get();
    let mut xscratch = Scratch::new(BW_BLOCK * s.cin * g.ps);
    let xp = xscratch.get();
    let mut n0 = 0;
    while n0 < s.n {
        let nb = BW_BLOCK.min(s.n - n0);
        let xs = &x[n0 * s.cin * hw..][..nb * s.cin * hw];
        pad_planes(xs, nb * s.cin, &g, xp);
        let dys = &dy[n0 * s.cout * hw..][..nb * s.cout * hw];
        let dyv: &[T] = if direct {
            dys
        } else {
            for (pl, src) in dys.chunks(hw).enumerate() {
                for i in 0..s.h {
                    copy_lanes(&src[i * s.w..][..s.w], &mut dybuf[pl * yplane + i * g.ys..][..s.w]);
                }
            }
            &*dybuf
        };
        // bias: plain vector sums of the dy planes (tail lanes are zero)
        for t in 0..nb {
            for o in 0..s.cout {
                let pl = &dyv[(t * s.cout + o) * yplane..][..yplane];
                let mut acc = part.db[o];
                for v in pl.chunks_exact(l) {
                    acc = acc + T::load(v);
                }
                part.db[o] = acc;
            }
        }
        for o in 0..s.cout {
            for c in 0..s.cin {
                let acc = &mut part.dw[(o * s.cin + c) * kk..][..kk];
                weight_taps(acc, xp, dyv, nb, s.cin, s.cout, c, o, &g);
            }
        }
        n0 += nb;
    }
    part
}

/// Adds the `k x k` tap sums of pair `(o, c)` over the `nb` samples of a block to `acc`.
#[inline(always)]
fn weight_taps<T: SimdFloat>(
    acc: &mut [T::V],
    xp: &[T],
    dyv: &[T],
    nb: usize,
    cin: usize,
    cout: usize,
    c: usize,
    o: usize,
    g: &Geom,
) {
    let yplane = g.h * g.ys;
    let plane = |t: usize| (&xp[(t * cin + c) * g.ps..][..g.ps], &dyv[(t * cout + o) * yplane..][..yplane]);
    match g.k {
        3 => {
            let mut a3 = load_taps::<T, 3, 3>(acc, 0);
            for t in 0..nb {
                let (xc, dyo) = plane(t);
                taps_rows::<T, 3, 3, 4>(&mut a3, 0, xc, dyo, g);
            }
            store_taps::<T, 3, 3>(acc, 0, &a3);
        }
        5 => {
            for a0 in [0, 2] {
                let mut a5 = load_taps::<T, 2, 5>(acc, a0);
                for t in 0..nb {
                    let (xc, dyo) = plane(t);
                    taps_rows::<T, 2, 5, 2>(&mut a5, a0, xc, dyo, g);
                }
                store_taps::<T, 2, 5>(acc, a0, &a5);
            }
            let mut a5 = load_taps::<T, 1, 5>(acc, 4);
            for t in 0..nb {
                let (xc, dyo) = plane(t);
                taps_rows::<T, 1, 5, 4>(&mut a5, 4, xc, dyo, g);
            }
            store_taps::<T, 1, 5>(acc, 4, &a5);
        }
        1 => {
            let mut a1 = load_taps::<T, 1, 1>(acc, 0);
            for t in 0..nb {
                let (xc, dyo) = plane(t);
                taps_rows::<T, 1, 1, 4>(&mut a1, 0, xc, dyo, g);
            }
            store_taps::<T, 1, 1>(acc, 0, &a1);
        }
        k => {
            // any other odd k: one tap at a time
            for a in 0..k {
                for e in 0..k {
                    let mut sum = acc[a * k + e];
                    for t in 0..nb {
                        let (xc, dyo) = plane(t);
                        for i in 0..g.h {
                            for jb in 0..g.nblk {
                                let col0 = jb * T::LANES;
                                let d = T::load(&dyo[i * g.ys + col0..]);
                                let xv = T::load(&xc[(i + a) * g.rs + col0 + e..]);
                                sum = T::mul_add(d, xv, sum);
                            }
                        }
                    }
                    acc[a * k + e] = sum;
                }
            }
        }
    }
}

#[inline(always)]
fn load_taps<T: SimdFloat, const NA: usize, const K: usize>(acc: &[T::V], a0: usize) -> [[T::V; K]; NA] {
    let mut out = [[T::splat(T::ZERO); K]; NA];
    for a in 0..NA {
        out[a].copy_from_slice(&acc[(a0 + a) * K..][..K]);
    }
    out
}

#[inline(always)]
fn store_taps<T: SimdFloat, const NA: usize, const K: usize>(acc: &mut [T::V], a0: usize, v: &[[T::V; K]; NA]) {
    for a in 0..NA {
        acc[(a0 + a) * K..][..K].copy_from_slice(&v[a]);
    }
}

/// Tap rows `a0..a0+NA` (all `K` columns) of one `(o, c)` pair for one sample:
/// `acc[a][e] += sum_{i, j} dy[i, j] xp[i + a0 + a, j + e]`, in tiles of `R` rows.
#[inline(always)]
fn taps_rows<T: SimdFloat, const NA: usize, const K: usize, const R: usize>(
    acc: &mut [[T::V; K]; NA],
    a0: usize,
    xc: &[T],
    dyo: &[T],
    g: &Geom,
) {
    let mut i0 = 0;
    while i0 + R <= g.h {
        for jb in 0..g.nblk {
            taps_tile::<T, NA, K, R>(acc, a0, i0, jb * T::LANES, xc, dyo, g);
        }
        i0 += R;
    }
    while i0 < g.h {
        for jb in 0..g.nblk {
            taps_tile::<T, NA, K, 1>(acc, a0, i0, jb * T::LANES, xc, dyo, g);
        }
        i0 += 1;
    }
}

#[inline(always)]
fn taps_tile<T: SimdFloat, const NA: usize, const K: usize, const R: usize>(
    acc: &mut [[T::V; K]; NA],
    a0: usize,
    i0: usize,
    col0: usize,
    xc: &[T],
    dyo: &[T],
    g: &Geom,
) {
    // Largest reads: dy row i0 + R - 1 < h, columns col0 + LANES <= ys; padded row
    // i0 + R - 1 + a0 + NA - 1 <= h - 1 + k - 1, column col0 + K - 1 + LANES <= rs.
    assert!(i0 + R <= g.h && a0 + NA <= g.k && K == g.k && col0 + T::LANES <= g.ys);
    assert!(xc.len() >= g.ps && dyo.len() >= g.h * g.ys);
    let (xb, db) = (xc.as_ptr(), dyo.as_ptr());
    let mut dv = [T::splat(T::ZERO); R];
    for r in 0..R {
        // SAFETY: row i0 + r < h and col0 + LANES <= ys (asserted), inside the dy plane.
        dv[r] = unsafe { T::load_ptr(db.add((i0 + r) * g.ys + col0)) };
    }
    // padded row i0 + a0 + t feeds output row i0 + r through tap row a = t - r
    for t in 0..R + NA - 1 {
        for e in 0..K {
            // SAFETY: i0 + a0 + t <= i0 + R - 1 + a0 + NA - 1 <= h + 2p - 1 and
            // col0 + e + LANES <= rs (asserted), inside the padded plane.
            let xv = unsafe { T::load_ptr(xb.add((i0 + a0 + t) * g.rs + col0 + e)) };
            for a in 0..NA {
                if t >= a && t - a < R {
                    acc[a][e] = T::mul_add(dv[t - a], xv, acc[a][e]);
                }
            }
        }
    }
}
