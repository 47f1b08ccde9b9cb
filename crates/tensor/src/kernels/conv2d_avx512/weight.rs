//! Weight-gradient kernels: per-lane partial sums of (channel, tap) pairs in registers while
//! L1-sized blocks of samples stream through.

#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::{shifted, tap_idx, zeroed, Conv2dShape, Taps, L};

/// Per-lane partial sums `(dw, db)` over the `s.n` samples of one chunk.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn backward_weight_chunk(
    dy: &[f32],
    x: &[f32],
    s: Conv2dShape,
    taps: &Taps,
) -> (Vec<__m512>, Vec<__m512>) {
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
    let (at, tap) = (|u, t| g.dw_index(s, sc, u, t), |t| g.tap(kk, t));
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
pub(super) unsafe fn weight_block(xs: &[f32], dys: &[f32], sb: Conv2dShape, taps: &Taps, dw: &mut [__m512]) {
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

/// Bytes of `x` and `dy` per sample block of the weight gradient: 40 KiB of a 48 KiB L1
/// (a tile reads one plane of one side and all of the other, so its working set is
/// smaller). 24, 32, 40 and 64 KiB measured at 8 -> 8, batch 64: 50.5, 48.4, 47.7, 52.0 us.
pub(super) const SAMPLE_BLOCK_BYTES: usize = 40 << 10;

/// Which side of the weight gradient is rolled: `shifted` (`ns` planes per sample) and
/// the `other` side (`no` planes per sample); `flip` when `shifted` is `dy` (rolled back).
struct WeightGeom<'a> {
    shifted: &'a [f32],
    ns: usize,
    other: &'a [f32],
    no: usize,
    flip: bool,
}

impl WeightGeom<'_> {
    /// The `dw` index of (shifted plane `sc`, other plane `u`, tap `t`).
    #[inline]
    fn dw_index(&self, s: Conv2dShape, sc: usize, u: usize, t: usize) -> usize {
        let kk = s.k * s.k;
        if self.flip {
            (sc * s.cin + u) * kk + t
        } else {
            (u * s.cin + sc) * kk + t
        }
    }

    /// The tap whose shift rolls the `shifted` side for weight tap `t`: `t` itself, or,
    /// when `shifted` is `dy` (rolled back), the flipped tap.
    #[inline]
    fn tap(&self, kk: usize, t: usize) -> usize {
        if self.flip {
            kk - 1 - t
        } else {
            t
        }
    }
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
    let (at, tap) = (|u, t| g.dw_index(s, sc, u, t), |t| g.tap(kk, t));
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
