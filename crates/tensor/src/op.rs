//! The tape's op set and the one place where backward rules live. Each rule starts with
//! its derivative as a comment. Elementwise derivatives are in [`crate::elementwise`].

use crate::elementwise::{Binary, Unary};
use crate::kernels::conv2d::{self, Conv2dShape};
use crate::kernels::{coupling, layout, matmul, ncp, u1};
use crate::{Float, Tensor, Var};

/// A recorded operation: its inputs and what backward needs besides the output.
pub(crate) enum Op<T: Float> {
    Unary(Var<T>, Unary<T>),
    Binary(Var<T>, Var<T>, Binary),
    /// x (N, C, ...) + b (C)
    AddBias(Var<T>, Var<T>),
    /// x * m with a constant `m` broadcast over x's leading dimensions.
    MulConst(Var<T>, Tensor<T>),
    /// Sum of all elements.
    Sum(Var<T>),
    /// Sum over axes (removed).
    SumAxes(Var<T>, Vec<usize>),
    /// Numerically stable log sum exp over one axis (removed).
    LogSumExp(Var<T>, usize),
    Roll(Var<T>, usize, isize),
    Reshape(Var<T>),
    BroadcastTo(Var<T>),
    Narrow(Var<T>, usize, usize),
    Concat(Vec<Var<T>>, usize),
    Transpose(Var<T>),
    MatMul(Var<T>, Var<T>),
    Conv2d(Var<T>, Var<T>, Option<Var<T>>, Conv2dShape, Option<Unary<T>>),
    /// Affine coupling `y(x, st)` with a constant mask; `true` = reverse direction.
    AffineCouple(Var<T>, Var<T>, Tensor<T>, bool),
    /// `sum_p m[p] st[n, channel, p]` with a constant mask.
    MaskedChannelSum(Var<T>, usize, Tensor<T>),
    /// NCP mixture `y(x, s, t)` of `n` components.
    NcpMixture(Var<T>, Var<T>, Var<T>, usize),
    /// Its log-Jacobian per sample, `logJ(x, s)`.
    NcpLogJacobian(Var<T>, Var<T>, usize),
    /// The (0, 1) plaquette of U(1) links `(N, 2, H, W)`.
    U1Plaquette01(Var<T>),
    /// `(cos x, sin x)` stacked on a new axis 1 (`Var::cos_sin`).
    CosSin(Var<T>),
    /// The gauge-equivariant coupling's stripe update `(links, y_a, x_a, mu, offset)`.
    U1StripeUpdate(Var<T>, Var<T>, Var<T>, usize, usize),
}

impl<T: Float> Op<T> {
    /// Calls `f` on each of the op's inputs, in order (no allocation: the tape asks on
    /// every op).
    pub(crate) fn for_each_input(&self, mut f: impl FnMut(&Var<T>)) {
        match self {
            Op::Unary(a, _)
            | Op::MulConst(a, _)
            | Op::Sum(a)
            | Op::SumAxes(a, _)
            | Op::LogSumExp(a, _)
            | Op::Roll(a, _, _)
            | Op::Reshape(a)
            | Op::BroadcastTo(a)
            | Op::Narrow(a, _, _)
            | Op::Transpose(a)
            | Op::MaskedChannelSum(a, _, _)
            | Op::U1Plaquette01(a)
            | Op::CosSin(a) => f(a),
            Op::Binary(a, b, _)
            | Op::AddBias(a, b)
            | Op::MatMul(a, b)
            | Op::AffineCouple(a, b, _, _)
            | Op::NcpLogJacobian(a, b, _) => {
                f(a);
                f(b);
            }
            Op::NcpMixture(x, s, t, _) | Op::U1StripeUpdate(x, s, t, _, _) => {
                f(x);
                f(s);
                f(t);
            }
            Op::Concat(v, _) => v.iter().for_each(f),
            Op::Conv2d(x, w, b, _, _) => {
                f(x);
                f(w);
                if let Some(b) = b {
                    f(b);
                }
            }
        }
    }
}

/// Applies the chain rule for `op` whose output `y` received gradient `g`: calls
/// `acc(input, d loss / d input)` for each input.
pub(crate) fn backward_rule<T: Float>(
    op: &Op<T>,
    y: &Tensor<T>,
    g: &Tensor<T>,
    acc: &mut dyn FnMut(&Var<T>, Tensor<T>),
) {
    match op {
        Op::Unary(a, f) => {
            // d f(a) = f'(a) da
            let ga = gpu_or_cpu!(g, crate::cuda::unary_grad(a.value(), y, g, *f), {
                let mut ga = crate::pool::buffer(g.len());
                f.apply_grad(a.value().data(), y.data(), g.data(), &mut ga);
                Tensor::from_vec(a.shape(), ga)
            });
            acc(a, ga);
        }
        Op::Binary(a, b, f) => {
            // d f(a, b) = f_a da + f_b db
            #[cfg(feature = "cuda")]
            if g.is_cuda() {
                let (ga, gb) =
                    crate::cuda::binary_grad(a.value(), b.value(), g, *f, a.requires_grad(), b.requires_grad());
                if let Some(ga) = ga {
                    acc(a, ga);
                }
                if let Some(gb) = gb {
                    acc(b, gb);
                }
                return;
            }
            let (av, bv) = (a.value().data(), b.value().data());
            if a.requires_grad() {
                let mut ga = crate::pool::buffer(av.len());
                f.grad_a(av, bv, g.data(), &mut ga);
                acc(a, Tensor::from_vec(a.shape(), ga));
            }
            if b.requires_grad() {
                let mut gb = crate::pool::buffer(av.len());
                f.grad_b(av, bv, g.data(), &mut gb);
                acc(b, Tensor::from_vec(b.shape(), gb));
            }
        }
        Op::AddBias(x, b) => {
            // d (x + b[c]) = dx + sum over all but the channel axis of db
            let mut axes: Vec<usize> = (0..x.shape().len()).collect();
            axes.remove(1);
            acc(b, gpu_or_cpu!(g, crate::cuda::sum_axes(g, &axes), layout::sum_axes(g, &axes)));
            acc(x, g.clone());
        }
        Op::MulConst(x, m) => {
            // d (m x) = m dx
            acc(x, gpu_or_cpu!(g, crate::cuda::mul_mask(g, m), crate::ops::times_mask(g.data(), m.data(), x.shape())));
        }
        Op::Sum(x) => {
            // d sum(x) = 1 for every element
            acc(x, gpu_or_cpu!(g, crate::cuda::broadcast_to(g, x.shape()), Tensor::full(x.shape(), g.item())));
        }
        Op::SumAxes(x, axes) => {
            // d sum_axes(x) = broadcast of g back over the summed axes
            let mut keep = x.shape().to_vec();
            for &a in axes {
                keep[a] = 1;
            }
            let g = g.clone().reshape(&keep);
            acc(x, gpu_or_cpu!(g, crate::cuda::broadcast_to(&g, x.shape()), layout::broadcast_to(&g, x.shape())));
        }
        Op::LogSumExp(x, axis) => {
            // d logsumexp(x) = softmax(x) = exp(x - y) along the axis
            #[cfg(feature = "cuda")]
            if g.is_cuda() {
                acc(x, crate::cuda::logsumexp_grad(x.value(), y, g, *axis));
                return;
            }
            let (outer, n, inner) = crate::tensor::split_at_axis(x.shape(), *axis);
            let xv = x.value().data();
            let mut gx = crate::pool::buffer(xv.len());
            for o in 0..outer {
                for i in 0..inner {
                    let (yv, gv) = (y.data()[o * inner + i], g.data()[o * inner + i]);
                    for k in 0..n {
                        let idx = (o * n + k) * inner + i;
                        gx[idx] = gv * (xv[idx] - yv).exp();
                    }
                }
            }
            acc(x, Tensor::from_vec(x.shape(), gx));
        }
        Op::Roll(x, axis, shift) => {
            // roll is a permutation: its adjoint rolls back
            acc(x, gpu_or_cpu!(g, crate::cuda::roll(g, *axis, -shift), layout::roll(g, *axis, -shift)));
        }
        Op::Reshape(x) => {
            // reshape moves no data: reshape the gradient back
            acc(x, g.clone().reshape(x.shape()));
        }
        Op::BroadcastTo(x) => {
            // d broadcast(x) = sum of g over the repeated entries
            acc(x, gpu_or_cpu!(g, crate::cuda::sum_to(g, x.shape()), layout::sum_to(g, x.shape())));
        }
        Op::Narrow(x, axis, start) => {
            // narrow selects entries: its adjoint scatters g back, zeros elsewhere
            let n = x.shape()[*axis];
            acc(x, gpu_or_cpu!(g, crate::cuda::unnarrow(g, *axis, *start, n), layout::unnarrow(g, *axis, *start, n)));
        }
        Op::Concat(xs, axis) => {
            // concat stacks blocks: each input gets its block of g
            let mut start = 0;
            for x in xs {
                let n = x.shape()[*axis];
                acc(x, gpu_or_cpu!(g, crate::cuda::narrow(g, *axis, start, n), layout::narrow(g, *axis, start, n)));
                start += n;
            }
        }
        Op::Transpose(x) => {
            // transpose is a permutation: transpose g back
            acc(x, gpu_or_cpu!(g, crate::cuda::transpose_last2(g), layout::transpose_last2(g)));
        }
        Op::MatMul(a, b) => {
            // d (A B) = dA B + A dB  =>  gA = g B^T, gB = A^T g
            #[cfg(feature = "cuda")]
            if g.is_cuda() {
                use crate::cuda::{matmul, transpose_last2};
                acc(a, matmul(g, &transpose_last2(b.value())));
                acc(b, matmul(&transpose_last2(a.value()), g));
                return;
            }
            acc(a, matmul::matmul(g, &layout::transpose_last2(b.value())));
            acc(b, matmul::matmul(&layout::transpose_last2(a.value()), g));
        }
        Op::AffineCouple(x, st, m, reverse) => {
            // forward y = m x + (1-m)(x e^s + t): dx = g (m + (1-m) e^s), ds = g (1-m) x e^s,
            // dt = g (1-m); reverse y = m x + (1-m)(x - t) e^-s: dx = g (m + (1-m) e^-s),
            // ds = -g (1-m)(x - t) e^-s, dt = -g (1-m) e^-s
            let (dx, dst) = gpu_or_cpu!(g, crate::cuda::couple_grad(x.value(), st.value(), m, *reverse, g), {
                let mut dx = crate::pool::buffer(x.value().len());
                let mut dst = crate::pool::buffer(st.value().len());
                coupling::couple_grad(
                    x.value().data(),
                    st.value().data(),
                    m.data(),
                    *reverse,
                    g.data(),
                    &mut dx,
                    &mut dst,
                );
                (Tensor::from_vec(x.shape(), dx), Tensor::from_vec(st.shape(), dst))
            });
            acc(x, dx);
            acc(st, dst);
        }
        Op::NcpMixture(x, s, t, n) => {
            // dy/dx = (1/n) sum_i e_i / (c^2 + e_i^2 r^2), dy/ds_i = (1/n) 2 e_i r c / (c^2 + e_i^2 r^2),
            // dy/dt = 1 (kernels::ncp)
            let b = x.shape()[0];
            let (dx, ds) = gpu_or_cpu!(g, crate::cuda::ncp_mixture_grad(x.value(), s.value(), *n, g), {
                let (mut dx, mut ds) = (crate::pool::buffer(x.value().len()), crate::pool::buffer(s.value().len()));
                ncp::mixture_grad(x.value().data(), s.value().data(), *n, b, g.data(), &mut dx, &mut ds);
                (Tensor::from_vec(x.shape(), dx), Tensor::from_vec(s.shape(), ds))
            });
            acc(x, dx);
            acc(s, ds);
            acc(t, g.clone());
        }
        Op::NcpLogJacobian(x, s, n) => {
            // d logJ = sum_i softmax(q)_i dq_i, q_i = -log(e_i^-1 cos^2 h + e_i sin^2 h) (kernels::ncp)
            let b = x.shape()[0];
            let (dx, ds) = gpu_or_cpu!(g, crate::cuda::ncp_log_jacobian_grad(x.value(), s.value(), *n, g), {
                let (mut dx, mut ds) = (crate::pool::buffer(x.value().len()), crate::pool::buffer(s.value().len()));
                ncp::log_jacobian_grad(x.value().data(), s.value().data(), *n, b, g.data(), &mut dx, &mut ds);
                (Tensor::from_vec(x.shape(), dx), Tensor::from_vec(s.shape(), ds))
            });
            acc(x, dx);
            acc(s, ds);
        }
        Op::CosSin(x) => {
            // y = (cos x, sin x): dx = -g_0 sin x + g_1 cos x = -g_0 y_1 + g_1 y_0
            let (yd, gd) = (y.data(), g.data());
            let n = x.shape()[0];
            let per = x.value().len() / n.max(1);
            let mut dx = crate::pool::buffer(x.value().len());
            for b in 0..n {
                let (c, s) = (&yd[2 * b * per..(2 * b + 1) * per], &yd[(2 * b + 1) * per..(2 * b + 2) * per]);
                let (g0, g1) = (&gd[2 * b * per..(2 * b + 1) * per], &gd[(2 * b + 1) * per..(2 * b + 2) * per]);
                for (i, d) in dx[b * per..(b + 1) * per].iter_mut().enumerate() {
                    *d = g1[i] * c[i] - g0[i] * s[i];
                }
            }
            acc(x, Tensor::from_vec(x.shape(), dx));
        }
        Op::U1Plaquette01(links) => {
            // P = t0(x,y) + t1(x+1,y) - t0(x,y+1) - t1(x,y): dt0 = g(x,y) - g(x,y-1),
            // dt1 = g(x-1,y) - g(x,y)
            let s = links.shape();
            let d = gpu_or_cpu!(g, crate::cuda::u1_plaquette01_grad(g, s), {
                let mut d = crate::pool::buffer(links.value().len());
                u1::plaquette01_grad(g.data(), s[0], s[2], s[3], &mut d);
                Tensor::from_vec(s, d)
            });
            acc(links, d);
        }
        Op::U1StripeUpdate(links, ya, xa, mu, off) => {
            // mod 2 pi has derivative 1: the links pass g through; y_a gets +-g at the stripe,
            // x_a its negative
            let (s, ys) = (links.shape(), ya.shape());
            let (dya, dxa) = gpu_or_cpu!(g, crate::cuda::u1_stripe_update_grad(g, ys, *mu, *off), {
                let mut dya = crate::pool::buffer(ya.value().len());
                u1::stripe_update_grad_ya(g.data(), s[0], s[2], s[3], *mu, *off, &mut dya);
                let dxa: Vec<T> = dya.iter().map(|&v| -v).collect();
                (Tensor::from_vec(ys, dya), Tensor::from_vec(ys, dxa))
            });
            acc(links, g.clone());
            acc(ya, dya);
            acc(xa, dxa);
        }
        Op::MaskedChannelSum(st, channel, m) => {
            // d sum_p m[p] st[n, c, p] = m[p] on channel c, 0 on the others
            let c = st.shape()[1];
            let d = gpu_or_cpu!(g, crate::cuda::masked_channel_sum_grad(g, m, st.shape(), *channel), {
                let mut d = crate::pool::buffer(st.value().len());
                coupling::masked_channel_sum_grad(g.data(), m.data(), c, *channel, &mut d);
                Tensor::from_vec(st.shape(), d)
            });
            acc(st, d);
        }
        Op::Conv2d(x, w, b, s, act) => {
            // with an activation y = act(z): dz = g act'(z), act' taken from y
            // (on the GPU the kernels apply act' to g on the fly)
            #[cfg(feature = "cuda")]
            if g.is_cuda() {
                if x.requires_grad() {
                    acc(x, crate::cuda::conv2d_grad_input(g, y, *act, w.value(), *s));
                }
                if w.requires_grad() || b.as_ref().is_some_and(|b| b.requires_grad()) {
                    let (dw, db) = crate::cuda::conv2d_grad_weight(g, y, *act, x.value(), *s);
                    acc(w, dw);
                    if let Some(b) = b {
                        acc(b, db);
                    }
                }
                return;
            }
            let need_w = w.requires_grad() || b.as_ref().is_some_and(|b| b.requires_grad());
            if need_w {
                // both gradients block by block with act' on the fly (AVX-512, one thread)
                let fused_act = match act {
                    None => Some(None),
                    Some(Unary::LeakyRelu(sl)) => Some(Some(conv2d::ActGrad::Leaky(*sl))),
                    Some(Unary::Tanh) => Some(Some(conv2d::ActGrad::Tanh)),
                    Some(_) => None,
                };
                let fused = fused_act.and_then(|fa| {
                    conv2d::backward_act(
                        g.data(),
                        y.data(),
                        fa,
                        x.value().data(),
                        w.value().data(),
                        *s,
                        x.requires_grad(),
                    )
                });
                if let Some((dx, dw, db)) = fused {
                    if let Some(dx) = dx {
                        acc(x, Tensor::from_vec(x.shape(), dx));
                    }
                    acc(w, Tensor::from_vec(w.shape(), dw));
                    if let Some(b) = b {
                        acc(b, Tensor::from_vec(b.shape(), db));
                    }
                    return;
                }
            }
            let gz;
            let g = match act {
                Some(a) => {
                    let mut d = crate::pool::buffer(g.len());
                    a.grad_from_output(y.data(), g.data(), &mut d);
                    gz = Tensor::from_vec(g.shape(), d);
                    &gz
                }
                None => g,
            };
            // dx = correlation of g with the flipped, transposed kernel; dw = sum g x; db = sum g
            if x.requires_grad() {
                let mut dx = crate::pool::buffer(s.input_len());
                conv2d::backward_input(g.data(), w.value().data(), *s, &mut dx);
                acc(x, Tensor::from_vec(x.shape(), dx));
            }
            if need_w {
                let mut dw = vec![T::ZERO; s.weight_len()];
                let mut db = vec![T::ZERO; s.cout];
                conv2d::backward_weight(g.data(), x.value().data(), *s, &mut dw, Some(&mut db));
                acc(w, Tensor::from_vec(w.shape(), dw));
                if let Some(b) = b {
                    acc(b, Tensor::from_vec(b.shape(), db));
                }
            }
        }
    }
}
