//! The conv backward pass of `y = act(conv(x))` on one thread, block by block, with the
//! activation derivative applied on the fly.

#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::{
    act_grad16, available, fits, forward::forward_sample, reduce_parts, weight::weight_block, Conv2dShape, Taps, L,
};

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
/// `grad_from_output`, [`super::backward_input`] and [`super::backward_weight`] on one thread.
///
/// # Panics
/// As [`super::backward_weight`], or if `y` and `g` differ in length.
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
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    let (hw, kk, nv) = (s.h * s.w, s.k * s.k, s.h / 2);
    let yout = s.cout * hw;
    let taps = Taps::cached(s.h, s.k);
    let st = Conv2dShape { cin: s.cout, cout: s.cin, ..s };
    let roll_in = st.cout < st.cin;
    let per_sample = (s.cin + s.cout) * hw * std::mem::size_of::<f32>();
    let nb = (super::weight::SAMPLE_BLOCK_BYTES / per_sample).clamp(1, s.n.max(1));
    let (nw, nz) = (s.cout * s.cin * kk, if roll_in { 4 * nv } else { 0 });
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let Scratch { gz, wt, sums } = &mut *scratch;
        let want = if act.is_some() { nb * yout } else { 0 };
        if gz.len() < want {
            gz.resize(want, 0.0);
        }
        // the flipped kernel only for the input gradient
        if dx.is_some() {
            crate::kernels::conv2d_shape::flipped_weights_into(w, &s, wt);
        } else {
            wt.clear();
        }
        // the lane sums of dw and db and the roll buffer, zeroed in place
        sums.clear();
        // SAFETY: all-zero bits are 16 zero floats.
        sums.resize(nw + s.cout + nz, unsafe { std::mem::zeroed::<__m512>() });
        let (dwp, rest) = sums.split_at_mut(nw);
        let (dbp, zbuf) = rest.split_at_mut(s.cout);
        // SAFETY: as fused_impl's contract; gz holds nb * yout floats when act is set; wt
        // holds the flipped kernel whenever dx is given.
        unsafe { fused_blocks(g, y, act, x, s, wt, st, &taps, roll_in, zbuf, nb, gz, dx, dwp, dbp) }
        let parts = [(&*dwp, &*dbp)];
        reduce_parts(&parts, |p| p.0, dw);
        if let Some(db) = db {
            reduce_parts(&parts, |p| p.1, db);
        }
    });
}

/// The buffers of [`fused_impl`], kept per thread between calls (every element a call reads
/// is written or zeroed first). `g act'(y)` was kept so before; allocating, zeroing and
/// freeing the flipped kernel and the lane sums per call was ~1% of a phi^4 training step at
/// batch 1024 (2026-12-02, `perf`).
#[derive(Default)]
struct Scratch {
    /// `g act'(y)` of one block of samples.
    gz: Vec<f32>,
    /// The flipped kernel (the input gradient's).
    wt: Vec<f32>,
    /// The per-lane sums of `dw` and `db`, then the roll buffer.
    sums: Vec<__m512>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// The block loop of [`fused_impl`]: `g act'(y)` of each block of `nb` samples into `gz`,
/// then the block's bias sums, input gradient and weight-gradient tiles.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn fused_blocks(
    g: &[f32],
    y: &[f32],
    act: Option<ActGrad>,
    x: &[f32],
    s: Conv2dShape,
    wt: &[f32],
    st: Conv2dShape,
    taps: &Taps,
    roll_in: bool,
    zbuf: &mut [__m512],
    nb: usize,
    gz: &mut [f32],
    mut dx: Option<&mut [f32]>,
    dwp: &mut [__m512],
    dbp: &mut [__m512],
) {
    let (hw, nv) = (s.h * s.w, s.h / 2);
    let (xin, yout) = (s.cin * hw, s.cout * hw);
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
                unsafe { forward_sample(&gzb[n * yout..(n + 1) * yout], wt, None, st, taps, roll_in, zbuf, dxn) };
            }
        }
        let xs = &x[n0 * xin..n1 * xin];
        // SAFETY: the slices hold n1 - n0 samples of shape s.
        unsafe { weight_block(xs, gzb, Conv2dShape { n: n1 - n0, ..s }, taps, dwp) };
        n0 = n1;
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
            _mm512_storeu_ps(out.as_mut_ptr().add(i), act_grad16(gv, yv, act));
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
