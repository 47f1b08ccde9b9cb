//! The direct forward kernel on tensors in the samples-as-lanes layout of
//! [`crate::kernels::conv2d_fft::forward_lanes`]: `(n / 16, C, 64, 16)`, one vector per
//! channel and site holding 16 samples. A tap's shift is then another site vector, not an
//! in-register permutation: `y[o][i] = b[o] + sum_{c,a,e} w[o,c,a,e] x[c][i + (a - p, e - p)]`
//! as plain FMAs with broadcast weights, in the order of the NCHW kernels' (channels, then
//! kernel rows, then columns, from the bias), so with at least as many output as input
//! channels (the layers that take the direct kernels: 1 -> 8, 2 -> 8) the values are the NCHW
//! kernel's bit for bit. `crate::conv_stack` runs the 1 -> 8 and 2 -> 8 layers of a training
//! shard held in this layout through it (1.4-1.6x the NCHW kernel, `cargo bench --bench
//! conv2d_layout`).

use std::arch::x86_64::*;

use super::{leaky16, Conv2dShape, L};

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
}
