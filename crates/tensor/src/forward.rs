//! Forward methods of every op on [`Var`] (and [`Var::apply_custom`] for ops defined
//! outside the engine). Backward rules are in [`crate::backward`].

use crate::custom::CustomOp;
use crate::elementwise::{Binary, Unary};
use crate::kernels::conv2d::{self, Conv2dShape};
use crate::kernels::{layout, matmul};
use crate::tensor::{assert_same_shape, numel, split_at_axis};
use crate::var::Op;
use crate::{Float, Tensor, Var};
use std::rc::Rc;

impl<T: Float> Var<T> {
    /// Applies an elementwise function (see [`Unary`] for each `f` and `f'`).
    pub fn unary(&self, f: Unary<T>) -> Var<T> {
        let x = self.value();
        let y = gpu_or_cpu!(x, crate::cuda::unary(x, f), {
            let mut out = crate::pool::buffer(x.len());
            f.apply(x.data(), &mut out);
            Tensor::from_vec(self.shape(), out)
        });
        Var::from_op(y, Op::Unary(self.clone(), f))
    }

    /// Elementwise `f(self, other)` on equal shapes.
    ///
    /// # Panics
    /// If the shapes differ (the message names both).
    #[track_caller]
    pub fn binary(&self, other: &Var<T>, f: Binary) -> Var<T> {
        assert_same_shape(f.name(), self.shape(), other.shape());
        let (a, b) = (self.value(), other.value());
        let y = gpu_or_cpu!(a, crate::cuda::binary(a, b, f), {
            let mut out = crate::pool::buffer(a.len());
            f.apply(a.data(), b.data(), &mut out);
            Tensor::from_vec(self.shape(), out)
        });
        Var::from_op(y, Op::Binary(self.clone(), other.clone(), f))
    }

    /// `self + other` (equal shapes). Derivative: (1, 1).
    #[track_caller]
    pub fn add(&self, other: &Var<T>) -> Var<T> {
        self.binary(other, Binary::Add)
    }
    /// `self - other` (equal shapes). Derivative: (1, -1).
    #[track_caller]
    pub fn sub(&self, other: &Var<T>) -> Var<T> {
        self.binary(other, Binary::Sub)
    }
    /// `self * other` elementwise (equal shapes). Derivative: (other, self).
    #[track_caller]
    pub fn mul(&self, other: &Var<T>) -> Var<T> {
        self.binary(other, Binary::Mul)
    }
    /// `self / other` elementwise (equal shapes). Derivative: (1/b, -a/b^2).
    #[track_caller]
    pub fn div(&self, other: &Var<T>) -> Var<T> {
        self.binary(other, Binary::Div)
    }
    /// `-self`.
    pub fn neg(&self) -> Var<T> {
        self.unary(Unary::Neg)
    }
    /// `self + c` for a constant scalar.
    pub fn add_scalar(&self, c: f64) -> Var<T> {
        self.unary(Unary::AddScalar(T::from_f64(c)))
    }
    /// `c * self` for a constant scalar.
    pub fn mul_scalar(&self, c: f64) -> Var<T> {
        self.unary(Unary::MulScalar(T::from_f64(c)))
    }
    /// `e^self`.
    pub fn exp(&self) -> Var<T> {
        self.unary(Unary::Exp)
    }
    /// `ln self`.
    pub fn log(&self) -> Var<T> {
        self.unary(Unary::Log)
    }
    /// `tanh self`.
    pub fn tanh(&self) -> Var<T> {
        self.unary(Unary::Tanh)
    }
    /// LeakyReLU: `x` for x > 0, `slope * x` otherwise (PyTorch default slope 0.01).
    pub fn leaky_relu(&self, slope: f64) -> Var<T> {
        self.unary(Unary::LeakyRelu(T::from_f64(slope)))
    }
    /// `sin self`.
    pub fn sin(&self) -> Var<T> {
        self.unary(Unary::Sin)
    }
    /// `cos self`.
    pub fn cos(&self) -> Var<T> {
        self.unary(Unary::Cos)
    }
    /// `tan self`.
    pub fn tan(&self) -> Var<T> {
        self.unary(Unary::Tan)
    }
    /// `atan self`.
    pub fn atan(&self) -> Var<T> {
        self.unary(Unary::Atan)
    }
    /// `self^n` for an integer `n`.
    pub fn powi(&self, n: i32) -> Var<T> {
        self.unary(Unary::Powi(n))
    }
    /// `self^2`.
    pub fn square(&self) -> Var<T> {
        self.powi(2)
    }
    /// `self mod m` in `[0, m)`; derivative 1 (the jumps are measure zero).
    ///
    /// # Panics
    /// If `m` is not positive and finite.
    #[track_caller]
    pub fn rem_euclid(&self, m: f64) -> Var<T> {
        assert!(m > 0.0 && m.is_finite(), "rem_euclid: modulus must be positive and finite, got {m}");
        self.unary(Unary::RemEuclid(T::from_f64(m)))
    }

    /// Per-channel bias: `self (N, C, ...) + b (C)` broadcast over all other axes.
    ///
    /// # Panics
    /// If `self` has rank < 2 or `b` is not `(C,)`.
    #[track_caller]
    pub fn add_bias(&self, b: &Var<T>) -> Var<T> {
        let s = self.shape();
        assert!(s.len() >= 2 && b.shape() == [s[1]], "add_bias: shape mismatch, {s:?} vs {:?}", b.shape());
        let inner: usize = s[2..].iter().product();
        let c = s[1];
        let v = gpu_or_cpu!(self.value(), crate::cuda::add_bias(self.value(), b.value()), {
            let bv = b.value().data();
            let mut v = self.value().clone();
            for (i, x) in v.data_mut().iter_mut().enumerate() {
                *x += bv[(i / inner) % c];
            }
            v
        });
        Var::from_op(v, Op::AddBias(self.clone(), b.clone()))
    }

    /// Multiplication by a constant tensor (a mask) whose shape is a suffix of
    /// `self`'s shape, broadcast over the leading (batch) axes.
    ///
    /// # Panics
    /// If the mask's shape is not a suffix of `self`'s.
    #[track_caller]
    pub fn mul_const(&self, mask: &Tensor<T>) -> Var<T> {
        let (s, m) = (self.shape(), mask.shape());
        assert!(s.len() >= m.len() && s[s.len() - m.len()..] == *m, "mul_const: shape mismatch, {s:?} vs {m:?}");
        let v = gpu_or_cpu!(
            self.value(),
            crate::cuda::mul_mask(self.value(), mask),
            crate::elementwise::times_mask(self.value(), mask)
        );
        Var::from_op(v, Op::MulConst(self.clone(), mask.clone()))
    }

    /// Sum of all elements (a scalar, shape `[]`).
    pub fn sum(&self) -> Var<T> {
        let x = self.value();
        let s = gpu_or_cpu!(x, crate::cuda::sum_all(x), Tensor::scalar(x.data().iter().copied().sum()));
        Var::from_op(s, Op::Sum(self.clone()))
    }

    /// Mean of all elements.
    pub fn mean(&self) -> Var<T> {
        let n = self.value().len() as f64;
        self.sum().mul_scalar(1.0 / n)
    }

    /// Sum over the given axes, which are removed from the shape.
    ///
    /// # Panics
    /// If an axis is out of range.
    #[track_caller]
    pub fn sum_axes(&self, axes: &[usize]) -> Var<T> {
        let x = self.value();
        let v = gpu_or_cpu!(x, crate::cuda::sum_axes(x, axes), layout::sum_axes(x, axes));
        Var::from_op(v, Op::SumAxes(self.clone(), axes.to_vec()))
    }

    /// Mean over the given axes, which are removed from the shape.
    #[track_caller]
    pub fn mean_axes(&self, axes: &[usize]) -> Var<T> {
        let s = self.shape();
        assert!(axes.iter().all(|&a| a < s.len()), "mean_axes: axes {axes:?} out of range for shape {s:?}");
        let n: usize = axes.iter().map(|&a| s[a]).product();
        self.sum_axes(axes).mul_scalar(1.0 / n as f64)
    }

    /// `log sum_k exp(x_k)` along `axis` (removed), computed stably as
    /// `m + log sum exp(x - m)` with `m` the maximum. Derivative: softmax.
    #[track_caller]
    pub fn logsumexp(&self, axis: usize) -> Var<T> {
        #[cfg(feature = "cuda")]
        if self.value().is_cuda() {
            return Var::from_op(crate::cuda::logsumexp(self.value(), axis), Op::LogSumExp(self.clone(), axis));
        }
        let (outer, n, inner) = split_at_axis(self.shape(), axis);
        let x = self.value().data();
        let mut out = Vec::with_capacity(outer * inner);
        for o in 0..outer {
            for i in 0..inner {
                let at = |k: usize| x[(o * n + k) * inner + i];
                let m = (0..n).map(at).fold(T::from_f64(f64::NEG_INFINITY), T::max);
                let s: T = (0..n).map(|k| (at(k) - m).exp()).sum();
                out.push(if m.is_finite() { m + s.ln() } else { m });
            }
        }
        let mut shape = self.shape().to_vec();
        shape.remove(axis);
        Var::from_op(Tensor::from_vec(&shape, out), Op::LogSumExp(self.clone(), axis))
    }

    /// Periodic shift along `axis` (`torch.roll`): `out[i + shift] = self[i]`.
    #[track_caller]
    pub fn roll(&self, axis: usize, shift: isize) -> Var<T> {
        let x = self.value();
        let v = gpu_or_cpu!(x, crate::cuda::roll(x, axis, shift), layout::roll(x, axis, shift));
        Var::from_op(v, Op::Roll(self.clone(), axis, shift))
    }

    /// The same data under another shape.
    ///
    /// # Panics
    /// If the element counts differ.
    #[track_caller]
    pub fn reshape(&self, shape: &[usize]) -> Var<T> {
        assert_eq!(numel(shape), self.value().len(), "reshape: shape mismatch, {:?} vs {shape:?}", self.shape());
        Var::from_op(self.value().clone().reshape(shape), Op::Reshape(self.clone()))
    }

    /// Inserts a size-1 axis at `axis`.
    #[track_caller]
    pub fn unsqueeze(&self, axis: usize) -> Var<T> {
        let mut s = self.shape().to_vec();
        assert!(axis <= s.len(), "unsqueeze: axis {axis} out of range for {s:?}");
        s.insert(axis, 1);
        self.reshape(&s)
    }

    /// Removes the size-1 axis `axis`.
    #[track_caller]
    pub fn squeeze(&self, axis: usize) -> Var<T> {
        let mut s = self.shape().to_vec();
        assert!(axis < s.len() && s[axis] == 1, "squeeze: axis {axis} of {s:?} is not of size 1");
        s.remove(axis);
        self.reshape(&s)
    }

    /// Expands to `shape` (numpy rules). Derivative: sum over the repeats.
    #[track_caller]
    pub fn broadcast_to(&self, shape: &[usize]) -> Var<T> {
        let x = self.value();
        let v = gpu_or_cpu!(x, crate::cuda::broadcast_to(x, shape), layout::broadcast_to(x, shape));
        Var::from_op(v, Op::BroadcastTo(self.clone()))
    }

    /// Entries `start..start+len` along `axis`.
    #[track_caller]
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Var<T> {
        let x = self.value();
        let v = gpu_or_cpu!(x, crate::cuda::narrow(x, axis, start, len), layout::narrow(x, axis, start, len));
        Var::from_op(v, Op::Narrow(self.clone(), axis, start))
    }

    /// Entry `index` along `axis`, which is removed.
    #[track_caller]
    pub fn select(&self, axis: usize, index: usize) -> Var<T> {
        self.narrow(axis, index, 1).squeeze(axis)
    }

    /// Concatenation along `axis`.
    ///
    /// # Panics
    /// If `xs` is empty or other dimensions disagree.
    #[track_caller]
    pub fn concat(xs: &[Var<T>], axis: usize) -> Var<T> {
        let vals: Vec<&Tensor<T>> = xs.iter().map(|x| x.value()).collect();
        assert!(!vals.is_empty(), "concat of no tensors");
        let v = gpu_or_cpu!(vals[0], crate::cuda::concat(&vals, axis), layout::concat(&vals, axis));
        Var::from_op(v, Op::Concat(xs.to_vec(), axis))
    }

    /// Stacks equal-shaped values along a new axis `axis`.
    #[track_caller]
    pub fn stack(xs: &[Var<T>], axis: usize) -> Var<T> {
        let u: Vec<Var<T>> = xs.iter().map(|x| x.unsqueeze(axis)).collect();
        Self::concat(&u, axis)
    }

    /// Swaps the last two axes.
    #[track_caller]
    pub fn t(&self) -> Var<T> {
        let x = self.value();
        let v = gpu_or_cpu!(x, crate::cuda::transpose_last2(x), layout::transpose_last2(x));
        Var::from_op(v, Op::Transpose(self.clone()))
    }

    /// Matrix product `(.., m, k) x (.., k, n)`, equal batch dimensions.
    #[track_caller]
    pub fn matmul(&self, other: &Var<T>) -> Var<T> {
        let (a, b) = (self.value(), other.value());
        let v = gpu_or_cpu!(a, crate::cuda::matmul(a, b), matmul::matmul(a, b));
        Var::from_op(v, Op::MatMul(self.clone(), other.clone()))
    }

    /// conv2d with circular padding (see [`crate::kernels::conv2d`]): `self` is
    /// `(N, Cin, H, W)`, `w` is `(Cout, Cin, k, k)`, `b` is `(Cout,)`.
    ///
    /// # Panics
    /// On shape mismatches, even `k`, or `k` wider than the lattice.
    #[track_caller]
    pub fn conv2d(&self, w: &Var<T>, b: Option<&Var<T>>) -> Var<T> {
        self.conv2d_act(w, b, None)
    }

    /// `act(conv2d(self, w, b))` as one op: the activation is applied to the conv output
    /// in place and its derivative is taken from the output (`LeakyRelu` with a positive
    /// slope: `y > 0` exactly where `x > 0`; `Tanh`: `1 - y^2`), so the pre-activation
    /// tensor is never kept. Same values as the two ops in sequence; one tape node and one
    /// buffer fewer.
    ///
    /// # Panics
    /// As [`Var::conv2d`]; and if `act` is not `LeakyRelu(s)` with `s > 0` or `Tanh`.
    #[track_caller]
    pub fn conv2d_act(&self, w: &Var<T>, b: Option<&Var<T>>, act: Option<Unary<T>>) -> Var<T> {
        if let Some(a) = act {
            assert!(a.grad_from_output_ok(), "conv2d_act: activation {a:?} has no derivative in terms of its output");
        }
        let (xs, ws) = (self.shape(), w.shape());
        assert!(
            xs.len() == 4 && ws.len() == 4 && ws[1] == xs[1] && ws[2] == ws[3],
            "conv2d: shape mismatch, input {xs:?} vs weight {ws:?}"
        );
        if let Some(b) = b {
            assert!(b.shape() == [ws[0]], "conv2d: shape mismatch, weight {ws:?} vs bias {:?}", b.shape());
        }
        assert!(ws[2] % 2 == 1, "conv2d: kernel size {} must be odd, weight {ws:?} (input {xs:?})", ws[2]);
        assert!(
            ws[2] <= xs[2] && ws[2] <= xs[3],
            "conv2d: kernel {}x{} is wider than the {}x{} lattice, weight {ws:?} vs input {xs:?}",
            ws[2],
            ws[3],
            xs[2],
            xs[3]
        );
        let s = Conv2dShape { n: xs[0], cin: xs[1], cout: ws[0], h: xs[2], w: xs[3], k: ws[2] };
        let x = self.value();
        let out = gpu_or_cpu!(x, crate::cuda::conv2d(x, w.value(), b.map(|b| b.value()), s, act), {
            let mut y = crate::pool::buffer(s.output_len());
            let (xd, wd, bd) = (x.data(), w.value().data(), b.map(|b| b.value().data()));
            match act {
                // the activation applied per sample while the outputs are in cache
                Some(Unary::LeakyRelu(slope)) => conv2d::forward_leaky(xd, wd, bd, s, &mut y, slope),
                Some(a) => {
                    conv2d::forward(xd, wd, bd, s, &mut y);
                    y = a.apply_owned(y);
                }
                None => conv2d::forward(xd, wd, bd, s, &mut y),
            }
            Tensor::from_vec(&[s.n, s.cout, s.h, s.w], y)
        });
        Var::from_op(out, Op::Conv2d(self.clone(), w.clone(), b.cloned(), s, act))
    }
}

impl<T: Float> Var<T> {
    /// `(cos x, sin x)` stacked on a new axis 1: `self (N, S...) -> (N, 2, S...)`, the input
    /// of the U(1) flows' coupling nets (arXiv:2101.08176 section V.B). The values of
    /// `Var::stack(&[x.cos(), x.sin()], 1)`; on the CPU one op with one SIMD range
    /// reduction for both and a backward pass from the outputs (`dx = -g_0 sin + g_1 cos`),
    /// on the GPU those composed ops.
    ///
    /// ```
    /// use latflow_tensor::{Tensor, Var};
    /// let x = Var::constant(Tensor::from_vec(&[1, 2], vec![0.0f64, std::f64::consts::FRAC_PI_2]));
    /// let cs = x.cos_sin();
    /// assert_eq!(cs.shape(), &[1, 2, 2]);
    /// assert_eq!(cs.value().data()[0], 1.0); // cos 0
    /// assert_eq!(cs.value().data()[3], 1.0); // sin pi/2
    /// ```
    ///
    /// # Panics
    /// If `self` has no batch axis.
    #[track_caller]
    pub fn cos_sin(&self) -> Var<T> {
        let shape = self.shape();
        assert!(!shape.is_empty(), "cos_sin: needs a batch axis, got a scalar");
        if self.value().is_cuda() {
            return Var::stack(&[self.cos(), self.sin()], 1);
        }
        let (n, x) = (shape[0], self.value().data());
        let per = x.len() / n.max(1);
        let mut out = crate::pool::buffer(2 * x.len());
        for (xb, ob) in x.chunks_exact(per.max(1)).zip(out.chunks_exact_mut(2 * per.max(1))) {
            let (c, s) = ob.split_at_mut(per);
            T::sin_cos_slice(xb, s, c);
        }
        let mut oshape = vec![n, 2];
        oshape.extend_from_slice(&shape[1..]);
        Var::from_op(Tensor::from_vec(&oshape, out), Op::CosSin(self.clone()))
    }

    /// Runs a [`CustomOp`] on `inputs` and records it on the tape as one node (only when
    /// an input requires a gradient, like every op).
    pub fn apply_custom<O: CustomOp<T> + 'static>(inputs: &[&Var<T>], op: O) -> Var<T> {
        let values: Vec<&Tensor<T>> = inputs.iter().map(|v| v.value()).collect();
        let y = op.forward(&values);
        Var::from_op(y, Op::Custom(inputs.iter().map(|&v| v.clone()).collect(), Rc::new(op)))
    }
}
