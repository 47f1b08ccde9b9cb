//! The GPU side of every engine op (feature `cuda`): the same functions as the CPU
//! kernels, on f32 device buffers, through the launchers of `latflow-cuda-kernels`.
//! [`crate::forward`] and [`crate::backward`] call these when their inputs live on the
//! GPU; shapes were checked there already.

use crate::elementwise::{Binary, Unary};
use crate::kernels::conv2d::Conv2dShape;
use crate::tensor::{numel, split_at_axis};
use crate::{Float, Tensor};
use latflow_cuda_kernels::{ops as k, DeviceBuf};

fn out<T: Float>(shape: &[usize], buf: DeviceBuf) -> Tensor<T> {
    Tensor::from_device_buf(shape, buf)
}

pub(crate) fn unary<T: Float>(x: &Tensor<T>, f: Unary<T>) -> Tensor<T> {
    let (op, p) = f.kernel_code();
    let mut y = DeviceBuf::uninit(x.len());
    k::unary_fwd(x.device_buf(), &mut y, op, p);
    out(x.shape(), y)
}

pub(crate) fn unary_grad<T: Float>(x: &Tensor<T>, y: &Tensor<T>, g: &Tensor<T>, f: Unary<T>) -> Tensor<T> {
    let (op, p) = f.kernel_code();
    let mut dx = DeviceBuf::uninit(x.len());
    k::unary_bwd(x.device_buf(), y.device_buf(), g.device_buf(), &mut dx, op, p);
    out(x.shape(), dx)
}

pub(crate) fn binary<T: Float>(a: &Tensor<T>, b: &Tensor<T>, f: Binary) -> Tensor<T> {
    let mut y = DeviceBuf::uninit(a.len());
    k::binary_fwd(a.device_buf(), b.device_buf(), &mut y, f.kernel_code());
    out(a.shape(), y)
}

pub(crate) fn binary_grad<T: Float>(
    a: &Tensor<T>,
    b: &Tensor<T>,
    g: &Tensor<T>,
    f: Binary,
    need_a: bool,
    need_b: bool,
) -> (Option<Tensor<T>>, Option<Tensor<T>>) {
    let mut da = need_a.then(|| DeviceBuf::uninit(a.len()));
    let mut db = need_b.then(|| DeviceBuf::uninit(a.len()));
    k::binary_bwd(a.device_buf(), b.device_buf(), g.device_buf(), da.as_mut(), db.as_mut(), f.kernel_code());
    (da.map(|d| out(a.shape(), d)), db.map(|d| out(b.shape(), d)))
}

/// `x * m`, `m` repeated over the leading axes.
pub(crate) fn mul_mask<T: Float>(x: &Tensor<T>, m: &Tensor<T>) -> Tensor<T> {
    let mut y = DeviceBuf::uninit(x.len());
    k::mul_mask(x.device_buf(), m.device_buf(), &mut y);
    out(x.shape(), y)
}

/// `x (N, C, ...) + b (C)`.
pub(crate) fn add_bias<T: Float>(x: &Tensor<T>, b: &Tensor<T>) -> Tensor<T> {
    let inner = numel(&x.shape()[2..]);
    let mut y = DeviceBuf::uninit(x.len());
    k::add_bias(x.device_buf(), b.device_buf(), &mut y, inner);
    out(x.shape(), y)
}

/// `acc += x`.
pub(crate) fn accumulate<T: Float>(acc: &mut Tensor<T>, x: &Tensor<T>) {
    let xb = x.device_buf();
    k::accumulate(acc.device_buf_mut(), xb);
}

/// Sum of all elements (shape `[]`).
pub(crate) fn sum_all<T: Float>(x: &Tensor<T>) -> Tensor<T> {
    let mut y = DeviceBuf::uninit(1);
    k::reduce_axis(x.device_buf(), &mut y, 1, x.len(), 1);
    out(&[], y)
}

/// Sum over `axes` (removed). Runs of adjacent axes are summed in one pass.
pub(crate) fn sum_axes<T: Float>(x: &Tensor<T>, axes: &[usize]) -> Tensor<T> {
    let mut axes = axes.to_vec();
    axes.sort_unstable();
    axes.dedup();
    for &a in &axes {
        assert!(a < x.shape().len(), "sum_axes: axis {a} out of range for shape {:?}", x.shape());
    }
    // keep-dims shape while reducing, from the last run to the first
    let mut shape = x.shape().to_vec();
    let mut cur: Option<Tensor<T>> = None;
    let mut i = axes.len();
    while i > 0 {
        let hi = axes[i - 1];
        let mut lo = hi;
        while i > 1 && axes[i - 2] + 1 == lo {
            i -= 1;
            lo -= 1;
        }
        i -= 1;
        let outer = numel(&shape[..lo]);
        let n = numel(&shape[lo..=hi]);
        let inner = numel(&shape[hi + 1..]);
        let src = cur.as_ref().unwrap_or(x);
        let mut y = DeviceBuf::uninit(outer * inner);
        k::reduce_axis(src.device_buf(), &mut y, outer, n, inner);
        for s in &mut shape[lo..=hi] {
            *s = 1;
        }
        cur = Some(out(&shape, y));
    }
    let keep: Vec<usize> = x.shape().iter().enumerate().filter(|(a, _)| !axes.contains(a)).map(|(_, &s)| s).collect();
    match cur {
        Some(t) => t.reshape(&keep),
        None => x.clone(),
    }
}

/// numpy-style broadcast of `x` to `shape`: each axis where `x` has 1 is expanded.
pub(crate) fn broadcast_to<T: Float>(x: &Tensor<T>, shape: &[usize]) -> Tensor<T> {
    let xs = x.shape();
    assert!(xs.len() <= shape.len(), "broadcast_to: cannot broadcast {xs:?} to {shape:?}");
    let mut cur_shape = vec![1; shape.len() - xs.len()];
    cur_shape.extend_from_slice(xs);
    for (a, (&c, &t)) in cur_shape.iter().zip(shape).enumerate() {
        assert!(c == t || c == 1, "broadcast_to: cannot broadcast {xs:?} to {shape:?} (axis {a})");
    }
    let mut cur = x.clone().reshape(&cur_shape);
    for a in 0..shape.len() {
        if cur_shape[a] == 1 && shape[a] != 1 {
            let (outer, _, inner) = split_at_axis(&cur_shape, a);
            let mut y = DeviceBuf::uninit(outer * shape[a] * inner);
            k::expand_axis(cur.device_buf(), &mut y, outer, shape[a], inner);
            cur_shape[a] = shape[a];
            cur = out(&cur_shape, y);
        }
    }
    cur
}

/// The adjoint of [`broadcast_to`]: `g` summed down to `shape`.
pub(crate) fn sum_to<T: Float>(g: &Tensor<T>, shape: &[usize]) -> Tensor<T> {
    let gs = g.shape().to_vec();
    let lead = gs.len() - shape.len();
    let axes: Vec<usize> = (0..gs.len()).filter(|&a| a < lead || (shape[a - lead] == 1 && gs[a] != 1)).collect();
    sum_axes(g, &axes).reshape(shape)
}

pub(crate) fn logsumexp<T: Float>(x: &Tensor<T>, axis: usize) -> Tensor<T> {
    let (outer, n, inner) = split_at_axis(x.shape(), axis);
    let mut y = DeviceBuf::uninit(outer * inner);
    k::logsumexp_fwd(x.device_buf(), &mut y, outer, n, inner);
    let mut shape = x.shape().to_vec();
    shape.remove(axis);
    out(&shape, y)
}

pub(crate) fn logsumexp_grad<T: Float>(x: &Tensor<T>, y: &Tensor<T>, g: &Tensor<T>, axis: usize) -> Tensor<T> {
    let (outer, n, inner) = split_at_axis(x.shape(), axis);
    let mut dx = DeviceBuf::uninit(x.len());
    k::logsumexp_bwd(x.device_buf(), y.device_buf(), g.device_buf(), &mut dx, outer, n, inner);
    out(x.shape(), dx)
}

pub(crate) fn roll<T: Float>(x: &Tensor<T>, axis: usize, shift: isize) -> Tensor<T> {
    let (outer, n, inner) = split_at_axis(x.shape(), axis);
    let mut y = DeviceBuf::uninit(x.len());
    k::roll_axis(x.device_buf(), &mut y, outer, n, inner, shift);
    out(x.shape(), y)
}

pub(crate) fn narrow<T: Float>(x: &Tensor<T>, axis: usize, start: usize, len: usize) -> Tensor<T> {
    let (outer, n, inner) = split_at_axis(x.shape(), axis);
    assert!(start + len <= n, "narrow: {start}..{} out of range for axis {axis} of {:?}", start + len, x.shape());
    let mut shape = x.shape().to_vec();
    shape[axis] = len;
    let mut y = DeviceBuf::uninit(outer * len * inner);
    k::copy_block(x.device_buf(), &mut y, outer, (n, start), (len, 0), len, inner);
    out(&shape, y)
}

/// The adjoint of [`narrow`]: `g` placed at `start` along `axis` of length `n`, zeros elsewhere.
pub(crate) fn unnarrow<T: Float>(g: &Tensor<T>, axis: usize, start: usize, n: usize) -> Tensor<T> {
    let (outer, len, inner) = split_at_axis(g.shape(), axis);
    let mut shape = g.shape().to_vec();
    shape[axis] = n;
    let mut y = DeviceBuf::uninit(outer * n * inner);
    k::unnarrow(g.device_buf(), &mut y, outer, n, start, len, inner);
    out(&shape, y)
}

pub(crate) fn concat<T: Float>(xs: &[&Tensor<T>], axis: usize) -> Tensor<T> {
    assert!(!xs.is_empty(), "concat of no tensors");
    let mut shape = xs[0].shape().to_vec();
    assert!(axis < shape.len(), "concat: axis {axis} out of range for {shape:?}");
    let total: usize = xs.iter().map(|x| x.shape()[axis]).sum();
    for x in xs {
        let (mut a, mut b) = (x.shape().to_vec(), shape.clone());
        a[axis] = 0;
        b[axis] = 0;
        assert!(a == b, "concat: shape mismatch, {:?} vs {:?} along axis {axis}", x.shape(), xs[0].shape());
    }
    shape[axis] = total;
    let (outer, _, inner) = split_at_axis(&shape, axis);
    let mut y = DeviceBuf::uninit(numel(&shape));
    let mut at = 0;
    for x in xs {
        let len = x.shape()[axis];
        k::copy_block(x.device_buf(), &mut y, outer, (len, 0), (total, at), len, inner);
        at += len;
    }
    out(&shape, y)
}

pub(crate) fn transpose_last2<T: Float>(x: &Tensor<T>) -> Tensor<T> {
    let s = x.shape();
    assert!(s.len() >= 2, "transpose needs rank >= 2, got {s:?}");
    let (m, n) = (s[s.len() - 2], s[s.len() - 1]);
    let batch = numel(&s[..s.len() - 2]);
    let mut shape = s.to_vec();
    let r = shape.len();
    shape.swap(r - 2, r - 1);
    let mut y = DeviceBuf::uninit(x.len());
    k::transpose_last2(x.device_buf(), &mut y, batch, m, n);
    out(&shape, y)
}

pub(crate) fn matmul<T: Float>(a: &Tensor<T>, b: &Tensor<T>) -> Tensor<T> {
    let (sa, sb) = (a.shape(), b.shape());
    assert!(
        sa.len() >= 2
            && sa.len() == sb.len()
            && sa[..sa.len() - 2] == sb[..sb.len() - 2]
            && sa[sa.len() - 1] == sb[sb.len() - 2],
        "matmul: shape mismatch, {sa:?} vs {sb:?}"
    );
    let r = sa.len();
    let (m, kk, n) = (sa[r - 2], sa[r - 1], sb[r - 1]);
    let batch = numel(&sa[..r - 2]);
    let mut shape = sa.to_vec();
    shape[r - 1] = n;
    let mut y = DeviceBuf::uninit(batch * m * n);
    k::matmul(a.device_buf(), b.device_buf(), &mut y, batch, m, kk, n);
    out(&shape, y)
}

fn conv_shape(s: Conv2dShape) -> k::ConvShape {
    k::ConvShape { n: s.n, cin: s.cin, cout: s.cout, h: s.h, w: s.w, k: s.k }
}

/// `act(conv2d(x, w) + b)`.
pub(crate) fn conv2d<T: Float>(
    x: &Tensor<T>,
    w: &Tensor<T>,
    b: Option<&Tensor<T>>,
    s: Conv2dShape,
    act: Option<Unary<T>>,
) -> Tensor<T> {
    let (code, slope) = act.map(Unary::kernel_code).unwrap_or((0, 0.0));
    let mut y = DeviceBuf::uninit(s.output_len());
    k::conv2d_fwd(x.device_buf(), w.device_buf(), b.map(|b| b.device_buf()), &mut y, conv_shape(s), code, slope);
    out(&[s.n, s.cout, s.h, s.w], y)
}

/// The activation of a fused conv for the backward kernels: its code, slope and the
/// conv's output (the derivative is taken from it).
fn act_grad<'a, T: Float>(act: Option<Unary<T>>, y: &'a Tensor<T>) -> k::ActGrad<'a> {
    act.map(|a| {
        let (code, slope) = a.kernel_code();
        (code, slope, y.device_buf())
    })
}

/// `dx` of `act(conv2d(x, w) + b)` from the gradient `g` at its output `y`.
pub(crate) fn conv2d_grad_input<T: Float>(
    g: &Tensor<T>,
    y: &Tensor<T>,
    act: Option<Unary<T>>,
    w: &Tensor<T>,
    s: Conv2dShape,
) -> Tensor<T> {
    let mut dx = DeviceBuf::uninit(s.input_len());
    k::conv2d_bwd_input(g.device_buf(), act_grad(act, y), w.device_buf(), &mut dx, conv_shape(s));
    out(&[s.n, s.cin, s.h, s.w], dx)
}

/// `(dw, db)` of `act(conv2d(x, w) + b)` from the gradient `g` at its output `y`.
pub(crate) fn conv2d_grad_weight<T: Float>(
    g: &Tensor<T>,
    y: &Tensor<T>,
    act: Option<Unary<T>>,
    x: &Tensor<T>,
    s: Conv2dShape,
) -> (Tensor<T>, Tensor<T>) {
    let mut dw = DeviceBuf::uninit(s.weight_len());
    let mut db = DeviceBuf::uninit(s.cout);
    k::conv2d_bwd_weight(g.device_buf(), act_grad(act, y), x.device_buf(), &mut dw, &mut db, conv_shape(s), None);
    (out(&[s.cout, s.cin, s.k, s.k], dw), out(&[s.cout], db))
}

/// One Adam update of every parameter on the GPU, in one launch (`p`, `m`, `v` in place).
pub(crate) fn adam_multi<T: Float>(
    params: &mut [&mut Tensor<T>],
    grads: &[&Tensor<T>],
    m: &mut [Tensor<T>],
    v: &mut [Tensor<T>],
    s: k::AdamStep,
) {
    let mut entries: Vec<_> = params
        .iter_mut()
        .zip(grads)
        .zip(m.iter_mut().zip(v.iter_mut()))
        .map(|((p, g), (m, v))| (p.device_buf_mut(), g.device_buf(), m.device_buf_mut(), v.device_buf_mut()))
        .collect();
    k::adam_multi(&mut entries, s);
}
