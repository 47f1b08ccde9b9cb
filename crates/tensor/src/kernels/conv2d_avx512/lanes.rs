//! The direct forward kernel on tensors in the samples-as-lanes layout of
//! [`crate::kernels::conv2d_fft::forward_lanes`]: `(n / 16, C, 64, 16)`, one vector per
//! channel and site holding 16 samples. A tap's shift is then another site vector, not an
//! in-register permutation: `y[o][i] = b[o] + sum_{c,a,e} w[o,c,a,e] x[c][i + (a - p, e - p)]`
//! as plain FMAs with broadcast weights, in the order of the NCHW kernels' (channels, then
//! kernel rows, then columns, from the bias), so with at least as many output as input
//! channels (the layers that take the direct kernels: 1 -> 8, 2 -> 8) the values are the NCHW
//! kernel's bit for bit. `crate::conv_stack` runs the 1 -> 8 and 2 -> 8 layers of a training
//! shard held in this layout through it (1.4-1.6x the NCHW kernel, `cargo bench --bench
//! conv2d_layout`). Also here: a direct backward pass in this layout ([`backward_lanes`]),
//! measured against the FFT one and not used.

use std::arch::x86_64::*;

use super::{flipped_weights, leaky16, Conv2dShape, L};

/// Sites of the 8x8 lattice.
const S: usize = 64;

/// [`super::forward`] on tensors in the lanes layout (`x` as `(n / 16, cin, 64, 16)`, `y` as
/// `(n / 16, cout, 64, 16)`), 8x8 lattices, `n` a multiple of 16, one thread; LeakyReLU with
/// slope `leaky` applied as the outputs are stored.
///
/// # Panics
/// If the CPU lacks AVX-512F, the lattice is not 8x8, `n` is not a multiple of 16, or a slice
/// length does not match `s`.
pub fn forward_lanes(x: &[f32], w: &[f32], b: Option<&[f32]>, s: Conv2dShape, y: &mut [f32], leaky: Option<f32>) {
    assert!(
        super::available() && s.h == 8 && s.w == 8 && s.k % 2 == 1 && s.k <= 7,
        "conv2d_avx512: {s:?} not in the lanes kernels"
    );
    assert!(s.n.is_multiple_of(L), "conv2d_avx512: the lanes layout needs a multiple of 16 samples, got {}", s.n);
    s.check(x.len(), w.len(), y.len());
    if let Some(b) = b {
        assert_eq!(b.len(), s.cout, "conv2d_avx512: bias length");
    }
    // src[t * 64 + i]: the site tap t of output site i reads (k <= 7: on the stack)
    let k = s.k;
    let src = tap_table(k);
    let (xin, yout) = (s.cin * S * L, s.cout * S * L);
    for (xg, yg) in x.chunks_exact(xin).zip(y.chunks_exact_mut(yout)) {
        let mut o0 = 0;
        while o0 < s.cout {
            let ob = (s.cout - o0).min(4);
            for i0 in (0..S).step_by(4) {
                // SAFETY: AVX-512F (asserted); o0 + ob <= cout, i0 + 4 <= 64; the group's slices.
                unsafe {
                    match ob {
                        4 => tile::<4>(xg, w, b, s, &src[..k * k * S], o0, i0, yg, leaky),
                        3 => tile::<3>(xg, w, b, s, &src[..k * k * S], o0, i0, yg, leaky),
                        2 => tile::<2>(xg, w, b, s, &src[..k * k * S], o0, i0, yg, leaky),
                        _ => tile::<1>(xg, w, b, s, &src[..k * k * S], o0, i0, yg, leaky),
                    }
                }
            }
            o0 += ob;
        }
    }
}

/// Output channels `o0 .. o0 + O`, sites `i0 .. i0 + 4` of one group.
///
/// # Safety
/// AVX-512F; `o0 + O <= cout`, `i0 + 4 <= 64`, `x` and `y` one group's blocks, `src` the
/// tap table of `s`.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const O: usize>(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    s: Conv2dShape,
    src: &[u8],
    o0: usize,
    i0: usize,
    y: &mut [f32],
    leaky: Option<f32>,
) {
    const R: usize = 4;
    let kk = s.k * s.k;
    assert!(o0 + O <= s.cout && i0 + R <= S && x.len() == s.cin * S * L && y.len() == s.cout * S * L);
    assert!(w.len() == s.cout * s.cin * kk && src.len() == kk * S);
    let mut acc = [[_mm512_setzero_ps(); R]; O];
    if let Some(b) = b {
        for (o, acc) in acc.iter_mut().enumerate() {
            *acc = [_mm512_set1_ps(b[o0 + o]); R];
        }
    }
    let (xp, wp) = (x.as_ptr(), w.as_ptr());
    for c in 0..s.cin {
        for t in 0..kk {
            let mut xv = [_mm512_setzero_ps(); R];
            for (r, xv) in xv.iter_mut().enumerate() {
                // SAFETY: c < cin, src[..] < 64: a site vector of the group's block (asserted).
                *xv = unsafe { _mm512_loadu_ps(xp.add((c * S + usize::from(src[t * S + i0 + r])) * L)) };
            }
            for (o, acc) in acc.iter_mut().enumerate() {
                // SAFETY: ((o0 + o) * cin + c) * kk + t < cout * cin * kk (asserted).
                let wv = _mm512_set1_ps(unsafe { *wp.add(((o0 + o) * s.cin + c) * kk + t) });
                for r in 0..R {
                    acc[r] = _mm512_fmadd_ps(wv, xv[r], acc[r]);
                }
            }
        }
    }
    let yp = y.as_mut_ptr();
    for (o, acc) in acc.iter().enumerate() {
        for (r, v) in acc.iter().enumerate() {
            let v = match leaky {
                None => *v,
                Some(slope) => leaky16(*v, slope),
            };
            // SAFETY: (o0 + o) < cout, i0 + r < 64: inside the group's block (asserted).
            unsafe { _mm512_storeu_ps(yp.add(((o0 + o) * S + i0 + r) * L), v) };
        }
    }
}

/// Both gradients of `y = act(conv(x))` on tensors in the lanes layout of [`forward_lanes`],
/// from `g = dL/dy` (`y` the activation's output, read only with an activation), 3x3 kernels,
/// one thread: `gz = g act'(y)` formed once (`act_grad16`, the values of
/// `Unary::grad_from_output`), then
///
/// - `dw[o, c, t] = sum_{groups, sites i} gz[o][i] x[c][i + shift_t]` with 16-lane
///   accumulators in registers (two output channels x 9 taps; each loaded site vector of `x`
///   feeds two FMAs per tap), added across lanes at the end (`db[o] = sum gz[o]` likewise);
/// - `dx` (when given) = [`forward_lanes`] on `gz` with the kernel flipped and the channels
///   swapped (`dx[c][i] = sum_{o,t} w[o, c, t] gz[o][i - shift_t]`).
///
/// The direct alternative, for the layers the per-layer ops give to the direct kernels
/// (phi^4's 8 -> 2 and 1 -> 8), to the fused FFT pass in the lanes layout that
/// `crate::conv_stack` runs for them: measured even at 8 -> 2 and 1.7x slower at 1 -> 8 (64
/// samples, `cargo bench --bench conv2d_layout`), so not used by the engine. The sums run in
/// another order than the NCHW kernels' (per lane, then across lanes): the values agree with
/// them to f32 rounding, not bit for bit.
///
/// # Panics
/// If the CPU lacks AVX-512F, the lattice is not 8x8, the kernel not 3x3, `n` not a multiple
/// of 16, or a slice length does not match `s`.
#[allow(clippy::too_many_arguments)]
pub fn backward_lanes(
    g: &[f32],
    y: &[f32],
    act: Option<super::ActGrad>,
    x: &[f32],
    w: &[f32],
    s: Conv2dShape,
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    assert!(
        super::available() && s.h == 8 && s.w == 8 && s.k == 3,
        "conv2d_avx512: {s:?} not in the lanes backward kernel"
    );
    assert!(s.n.is_multiple_of(L), "conv2d_avx512: the lanes layout needs a multiple of 16 samples, got {}", s.n);
    s.check(x.len(), w.len(), g.len());
    assert_eq!(dw.len(), s.weight_len(), "conv2d_avx512: weight gradient length");
    assert!(act.is_none() || y.len() == g.len(), "conv2d_avx512: activation output length");
    if let Some(db) = &db {
        assert_eq!(db.len(), s.cout, "conv2d_avx512: bias gradient length");
    }
    let mut gz = crate::pool::buffer::<f32>(g.len());
    // SAFETY: AVX-512F (asserted); y as long as g when read (asserted), every vector in range.
    unsafe { act_grad_all(g, y, act, &mut gz) };
    let src = tap_table(s.k);
    let mut o0 = 0;
    while o0 < s.cout {
        let ob = (s.cout - o0).min(2);
        for c in 0..s.cin {
            // SAFETY: AVX-512F; o0 + ob <= cout, c < cin; lengths checked above.
            let sums = unsafe {
                if ob == 2 {
                    weight_tile::<2>(&gz, x, s, &src[..9 * S], o0, c)
                } else {
                    let [a] = weight_tile::<1>(&gz, x, s, &src[..9 * S], o0, c);
                    [a, [0.0; 9]]
                }
            };
            for (o, sums) in sums.iter().enumerate().take(ob) {
                dw[((o0 + o) * s.cin + c) * 9..][..9].copy_from_slice(sums);
            }
        }
        o0 += ob;
    }
    if let Some(db) = db {
        for (o, db) in db.iter_mut().enumerate() {
            // SAFETY: AVX-512F; o < cout, lengths checked above.
            *db = unsafe { plane_sum(&gz, s.cout, o) };
        }
    }
    if let Some(dx) = dx {
        let flipped = Conv2dShape { cin: s.cout, cout: s.cin, ..s };
        forward_lanes(&gz, &flipped_weights(w, &s), None, flipped, dx, None);
    }
    crate::pool::recycle(gz);
}

/// `src[t * 64 + i]`: the site tap `t` of output site `i` reads, for a `k x k` kernel
/// (`k <= 7`) on the 8x8 lattice.
fn tap_table(k: usize) -> [u8; 49 * S] {
    let p = k / 2;
    let mut src = [0u8; 49 * S];
    for a in 0..k {
        for e in 0..k {
            for i in 0..S {
                let (r, c) = (i / 8, i % 8);
                src[(a * k + e) * S + i] = (((r + 8 + a - p) % 8) * 8 + (c + 8 + e - p) % 8) as u8;
            }
        }
    }
    src
}

/// `gz = g act'(y)` (or `g`) over whole buffers.
///
/// # Safety
/// AVX-512F; with an activation `y.len() >= g.len()`; `gz.len() == g.len()`, a multiple of 16.
#[target_feature(enable = "avx512f")]
unsafe fn act_grad_all(g: &[f32], y: &[f32], act: Option<super::ActGrad>, gz: &mut [f32]) {
    assert!(gz.len() == g.len() && g.len().is_multiple_of(L));
    match act {
        None => gz.copy_from_slice(g),
        Some(a) => {
            assert!(y.len() >= g.len());
            for j in (0..g.len()).step_by(L) {
                // SAFETY: j + 16 <= len of g, y and gz (asserted).
                unsafe {
                    let v =
                        super::act_grad16(_mm512_loadu_ps(g.as_ptr().add(j)), _mm512_loadu_ps(y.as_ptr().add(j)), a);
                    _mm512_storeu_ps(gz.as_mut_ptr().add(j), v);
                }
            }
        }
    }
}

/// `sum_{groups, sites, lanes} a[g][o][i]` of a lanes tensor with `channels` channels.
///
/// # Safety
/// AVX-512F; `o < channels`, `a.len()` a multiple of `channels * 64 * 16`.
#[target_feature(enable = "avx512f")]
unsafe fn plane_sum(a: &[f32], channels: usize, o: usize) -> f32 {
    assert!(o < channels && a.len().is_multiple_of(channels * S * L));
    let mut acc = [_mm512_setzero_ps(); 4];
    for grp in a.chunks_exact(channels * S * L) {
        let p = grp[o * S * L..][..S * L].as_ptr();
        for i in (0..S).step_by(4) {
            for (r, acc) in acc.iter_mut().enumerate() {
                // SAFETY: site i + r < 64 of the plane (4 divides 64).
                *acc = _mm512_add_ps(*acc, unsafe { _mm512_loadu_ps(p.add((i + r) * L)) });
            }
        }
    }
    _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])))
}

/// The weight gradient of output channels `o0 .. o0 + O` and input channel `c`, 3x3 taps:
/// `sum_{groups, i} gz[o][i] x[c][src[t][i]]`, 16-lane sums in registers, then added across
/// lanes.
///
/// # Safety
/// AVX-512F; `o0 + O <= cout`, `c < cin`; `gz` and `x` the whole lanes tensors of `s`; `src`
/// the 3x3 tap table.
#[target_feature(enable = "avx512f")]
unsafe fn weight_tile<const O: usize>(
    gz: &[f32],
    x: &[f32],
    s: Conv2dShape,
    src: &[u8],
    o0: usize,
    c: usize,
) -> [[f32; 9]; O] {
    let (gin, gout) = (s.cin * S * L, s.cout * S * L);
    assert!(o0 + O <= s.cout && c < s.cin && src.len() == 9 * S);
    assert!(x.len() == s.n / L * gin && gz.len() == s.n / L * gout);
    let mut acc = [[_mm512_setzero_ps(); 9]; O];
    for grp in 0..s.n / L {
        let xp = x[grp * gin + c * S * L..][..S * L].as_ptr();
        let gp = gz[grp * gout..][..gout].as_ptr();
        for i in 0..S {
            let mut xv = [_mm512_setzero_ps(); 9];
            for (t, xv) in xv.iter_mut().enumerate() {
                // SAFETY: src[..] < 64: a site vector of the plane.
                *xv = unsafe { _mm512_loadu_ps(xp.add(usize::from(src[t * S + i]) * L)) };
            }
            for (o, acc) in acc.iter_mut().enumerate() {
                // SAFETY: (o0 + o) < cout, i < 64: inside the group's block.
                let d = unsafe { _mm512_loadu_ps(gp.add(((o0 + o) * S + i) * L)) };
                for t in 0..9 {
                    acc[t] = _mm512_fmadd_ps(d, xv[t], acc[t]);
                }
            }
        }
    }
    acc.map(|a| a.map(|v| _mm512_reduce_add_ps(v)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv2d::reference;
    use crate::kernels::conv2d_fft::to_lanes;

    /// With at least as many outputs as inputs the lanes kernel gives the NCHW AVX-512
    /// kernel's values bit for bit (same sums in the same order); with fewer (the NCHW kernel
    /// rolls the outputs: another order) it agrees with the scalar reference to f32 rounding.
    #[test]
    fn lanes_forward_equals_the_nchw_kernel() {
        if !super::super::available() {
            return;
        }
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let mut uniform = |len: usize| crate::Tensor::<f32>::uniform(&[len], -1.0, 1.0, &mut rng).into_vec();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        for (cin, cout, n, k) in
            [(1, 8, 32, 3), (2, 8, 16, 3), (8, 8, 16, 3), (3, 5, 16, 5), (8, 2, 32, 3), (8, 3, 16, 1)]
        {
            let s = Conv2dShape { n, cin, cout, h: 8, w: 8, k };
            let x = uniform(s.input_len());
            let w: Vec<f32> = uniform(s.weight_len()).iter().map(|v| v / 4.0).collect();
            let b = uniform(cout);
            for (bias, leaky) in [(Some(&b[..]), Some(0.01f32)), (None, None)] {
                let mut y = vec![0f32; s.output_len()];
                super::super::forward(&x, &w, bias, s, &mut y, false, leaky);
                let mut yl = vec![0f32; s.output_len()];
                forward_lanes(&to_lanes(&x, n, cin, false), &w, bias, s, &mut yl, leaky);
                let yl = to_lanes(&yl, n, cout, true);
                if cout >= cin {
                    assert_eq!(bits(&yl), bits(&y), "{s:?}");
                } else {
                    // the dot-product bound gamma_m sum |w| |x| (+ |b|), m = cin k^2 + 1 roundings,
                    // from f64 sums of the exact values and of their magnitudes
                    let f64s = |v: &[f32]| v.iter().map(|&a| f64::from(a)).collect::<Vec<_>>();
                    let abs = |v: &[f32]| v.iter().map(|&a| f64::from(a.abs())).collect::<Vec<_>>();
                    let (mut yr, mut ya) = (vec![0f64; s.output_len()], vec![0f64; s.output_len()]);
                    reference::forward(&f64s(&x), &f64s(&w), bias.map(f64s).as_deref(), s, &mut yr);
                    reference::forward(&abs(&x), &abs(&w), bias.map(abs).as_deref(), s, &mut ya);
                    let gamma = (cin * k * k + 2) as f64 * f64::from(f32::EPSILON);
                    for ((&a, &r), &m) in yl.iter().zip(&yr).zip(&ya) {
                        let r = match leaky {
                            Some(sl) if r <= 0.0 => f64::from(sl) * r,
                            _ => r,
                        };
                        assert!((f64::from(a) - r).abs() <= gamma * m, "{s:?}: {a} against {r}");
                    }
                }
            }
        }
    }

    /// The lanes backward pass against the scalar reference in f64 (the exact gradients of
    /// the f32 values), within the dot-product bound `gamma_m sum |a| |b|` with `m` the
    /// number of roundings of the longest sum (per lane, then across the 16 lanes): for
    /// `dw` `n / 16 * 64 + 16`, for `db` the same, for `dx` `cout k^2 + 1`. A sum over the
    /// wrong sites, taps or channels misses this by orders of magnitude.
    #[test]
    fn lanes_backward_agrees_with_the_reference() {
        if !super::super::available() {
            return;
        }
        use super::super::ActGrad;
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut uniform = |len: usize| crate::Tensor::<f32>::uniform(&[len], -1.0, 1.0, &mut rng).into_vec();
        let f64s = |v: &[f32]| v.iter().map(|&a| f64::from(a)).collect::<Vec<_>>();
        let abs = |v: &[f64]| v.iter().map(|a| a.abs()).collect::<Vec<_>>();
        let check = |what: &str, got: &[f32], exact: &[f64], bound: &[f64], m: usize| {
            let gamma = m as f64 * f64::from(f32::EPSILON);
            for (i, ((&a, &r), &b)) in got.iter().zip(exact).zip(bound).enumerate() {
                assert!(
                    (f64::from(a) - r).abs() <= gamma * b + 1e-30,
                    "{what}[{i}]: {a} against {r} (bound {})",
                    gamma * b
                );
            }
        };
        for (cin, cout, n) in [(8, 2, 64), (1, 8, 32), (8, 1, 16), (3, 5, 16), (2, 8, 48)] {
            let s = Conv2dShape { n, cin, cout, h: 8, w: 8, k: 3 };
            let x = uniform(s.input_len());
            let w = uniform(s.weight_len());
            let g = uniform(s.output_len());
            let y = uniform(s.output_len());
            for act in [None, Some(ActGrad::Leaky(0.01)), Some(ActGrad::Tanh)] {
                let (mut dx, mut dw, mut db) =
                    (vec![0f32; s.input_len()], vec![0f32; s.weight_len()], vec![0f32; cout]);
                backward_lanes(
                    &to_lanes(&g, n, cout, false),
                    &to_lanes(&y, n, cout, false),
                    act,
                    &to_lanes(&x, n, cin, false),
                    &w,
                    s,
                    Some(&mut dx),
                    &mut dw,
                    Some(&mut db),
                );
                let dx = to_lanes(&dx, n, cin, true);
                // gz = g act'(y), formed in f32 as the kernel does (exact in f64 afterwards)
                let gz: Vec<f32> = g
                    .iter()
                    .zip(&y)
                    .map(|(&g, &y)| match act {
                        None => g,
                        Some(ActGrad::Leaky(sl)) => {
                            if y > 0.0 {
                                g
                            } else {
                                sl * g
                            }
                        }
                        Some(ActGrad::Tanh) => g * (1.0 - y * y),
                    })
                    .collect();
                let (gz, x, w) = (f64s(&gz), f64s(&x), f64s(&w));
                let (mut dwr, mut dbr, mut dxr) = (vec![0f64; dw.len()], vec![0f64; cout], vec![0f64; dx.len()]);
                reference::backward_weight(&gz, &x, s, &mut dwr, Some(&mut dbr));
                reference::backward_input(&gz, &w, s, &mut dxr);
                let (mut dwa, mut dba, mut dxa) = (vec![0f64; dw.len()], vec![0f64; cout], vec![0f64; dx.len()]);
                reference::backward_weight(&abs(&gz), &abs(&x), s, &mut dwa, Some(&mut dba));
                reference::backward_input(&abs(&gz), &abs(&w), s, &mut dxa);
                let m = n / 16 * 64 + 16;
                check("dw", &dw, &dwr, &dwa, m);
                check("db", &db, &dbr, &dba, m);
                check("dx", &dx, &dxr, &dxa, cout * 9 + 1);
            }
        }
    }
}
