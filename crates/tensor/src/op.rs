//! The tape's op set and the one place where backward rules live. Each rule starts with
//! its derivative as a comment. Elementwise derivatives are in [`crate::elementwise`].

use crate::elementwise::{Binary, Unary};
use crate::kernels::conv2d::{self, Conv2dShape};
use crate::kernels::{layout, matmul};
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
}

impl<T: Float> Op<T> {
    /// The op's input values, in order.
    pub(crate) fn inputs(&self) -> Vec<&Var<T>> {
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
            | Op::Transpose(a) => vec![a],
            Op::Binary(a, b, _) | Op::AddBias(a, b) | Op::MatMul(a, b) => vec![a, b],
            Op::Concat(v, _) => v.iter().collect(),
            Op::Conv2d(x, w, b, _, _) => {
                let mut v = vec![x, w];
                v.extend(b.as_ref());
                v
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
            let mut ga = crate::pool::buffer(g.len());
            f.apply_grad(a.value().data(), y.data(), g.data(), &mut ga);
            acc(a, Tensor::from_vec(a.shape(), ga));
        }
        Op::Binary(a, b, f) => {
            // d f(a, b) = f_a da + f_b db
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
            acc(b, layout::sum_axes(g, &axes));
            acc(x, g.clone());
        }
        Op::MulConst(x, m) => {
            // d (m x) = m dx
            acc(x, crate::ops::times_mask(g.data(), m.data(), x.shape()));
        }
        Op::Sum(x) => {
            // d sum(x) = 1 for every element
            acc(x, Tensor::full(x.shape(), g.item()));
        }
        Op::SumAxes(x, axes) => {
            // d sum_axes(x) = broadcast of g back over the summed axes
            let mut keep = x.shape().to_vec();
            for &a in axes {
                keep[a] = 1;
            }
            acc(x, layout::broadcast_to(&g.clone().reshape(&keep), x.shape()));
        }
        Op::LogSumExp(x, axis) => {
            // d logsumexp(x) = softmax(x) = exp(x - y) along the axis
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
            acc(x, layout::roll(g, *axis, -shift));
        }
        Op::Reshape(x) => {
            // reshape moves no data: reshape the gradient back
            acc(x, g.clone().reshape(x.shape()));
        }
        Op::BroadcastTo(x) => {
            // d broadcast(x) = sum of g over the repeated entries
            acc(x, layout::sum_to(g, x.shape()));
        }
        Op::Narrow(x, axis, start) => {
            // narrow selects entries: its adjoint scatters g back, zeros elsewhere
            acc(x, layout::unnarrow(g, *axis, *start, x.shape()[*axis]));
        }
        Op::Concat(xs, axis) => {
            // concat stacks blocks: each input gets its block of g
            let mut start = 0;
            for x in xs {
                let n = x.shape()[*axis];
                acc(x, layout::narrow(g, *axis, start, n));
                start += n;
            }
        }
        Op::Transpose(x) => {
            // transpose is a permutation: transpose g back
            acc(x, layout::transpose_last2(g));
        }
        Op::MatMul(a, b) => {
            // d (A B) = dA B + A dB  =>  gA = g B^T, gB = A^T g
            acc(a, matmul::matmul(g, &layout::transpose_last2(b.value())));
            acc(b, matmul::matmul(&layout::transpose_last2(a.value()), g));
        }
        Op::Conv2d(x, w, b, s, act) => {
            // with an activation y = act(z): dz = g act'(z), act' taken from y
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
            let need_w = w.requires_grad() || b.as_ref().is_some_and(|b| b.requires_grad());
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
