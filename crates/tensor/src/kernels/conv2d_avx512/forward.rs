//! Forward kernels (and the input gradient's, which is a forward pass with the flipped
//! kernel): per-sample tiles of output channels x vectors.

#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::{block, leaky16, shifted, tap_idx, zeroed, Conv2dShape, Taps, L};

#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn forward_chunk(
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
    let mut chunks = y.chunks_exact_mut(L);
    for c in &mut chunks {
        // SAFETY: c holds 16 floats.
        unsafe { _mm512_storeu_ps(c.as_mut_ptr(), leaky16(_mm512_loadu_ps(c.as_ptr()), slope)) };
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
pub(super) unsafe fn forward_sample(
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
