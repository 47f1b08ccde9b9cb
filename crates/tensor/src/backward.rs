//! The reverse sweep ([`Var::backward`], [`Gradients`]) and the one place where the
//! backward rules of the engine's ops ([`Op`]) live. Each rule starts with its derivative
//! as a comment. Elementwise derivatives are in [`crate::elementwise`]; ops defined outside
//! the engine bring their own rule ([`crate::CustomOp::backward`]).

use crate::custom::CustomOp;
use crate::elementwise::Unary;
use crate::id_hash::IdBuild;
use crate::kernels::conv2d;
use crate::kernels::{layout, matmul};
use crate::var::Op;
use crate::{Float, Tensor, Var};
use std::collections::HashMap;

/// Applies the chain rule for `op` whose output `y` received gradient `g`: calls
/// `acc(input, d loss / d input)` for each input.
fn backward_rule<T: Float>(op: &Op<T>, y: &Tensor<T>, g: &Tensor<T>, acc: &mut dyn FnMut(&Var<T>, Tensor<T>)) {
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
            if b.requires_grad() {
                let mut axes: Vec<usize> = (0..x.shape().len()).collect();
                axes.remove(1);
                acc(b, gpu_or_cpu!(g, crate::cuda::sum_axes(g, &axes), layout::sum_axes(g, &axes)));
            }
            acc(x, g.clone());
        }
        Op::MulConst(x, m) => {
            // d (m x) = m dx
            acc(x, gpu_or_cpu!(g, crate::cuda::mul_mask(g, m), crate::elementwise::times_mask(g, m)));
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
                if a.requires_grad() {
                    acc(a, matmul(g, &transpose_last2(b.value())));
                }
                if b.requires_grad() {
                    acc(b, matmul(&transpose_last2(a.value()), g));
                }
                return;
            }
            // only the inputs that need one (input-only gradients skip the weights')
            if a.requires_grad() {
                acc(a, matmul::matmul(g, &layout::transpose_last2(b.value())));
            }
            if b.requires_grad() {
                acc(b, matmul::matmul(&layout::transpose_last2(a.value()), g));
            }
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
        Op::Custom(inputs, op) => {
            // the op's own rule (CustomOp::backward starts with its derivative)
            custom_backward(inputs, op.as_ref(), y, g, acc);
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

impl<T: Float> Var<T> {
    /// Reverse-mode sweep from this one-element value: d self / d leaf for every
    /// [`Var::param`] leaf it depends on. Gradients of values used more than once add up.
    ///
    /// # Panics
    /// If the value has more than one element.
    #[track_caller]
    pub fn backward(&self) -> Gradients<T> {
        assert_eq!(self.value().len(), 1, "backward() needs a scalar, got shape {:?}", self.shape());
        let one = Tensor::full_on(self.shape(), T::ONE, self.value().device());
        sweep(&[(self, one)])
    }

    /// The vector-Jacobian product from several outputs at once: for seeds `(y_k, c_k)`
    /// (a cotangent `c_k` of `y_k`'s shape), the gradient of `sum_k <c_k, y_k>` with
    /// respect to every [`Var::param`] leaf, i.e. `sum_k J_k^T c_k`, in one reverse sweep.
    /// [`Var::backward`] is the case of one scalar output seeded with 1.
    ///
    /// Only what leads to a leaf that requires a gradient is recorded and swept: with the
    /// parameters of a model entered as [`Var::constant`] and its input as a
    /// [`Var::param`], this is the input gradient alone (no weight gradient is computed),
    /// what flow-HMC's force needs (`J_f^T dS/dx - d log|det J_f| / dz`).
    ///
    /// ```
    /// use latflow_tensor::{Tensor, Var};
    /// let x = Var::param(Tensor::from_vec(&[3], vec![1.0f64, 2.0, 3.0]));
    /// let y = x.square(); // dy_i/dx_i = 2 x_i
    /// let s = y.sum();
    /// let g = Var::vjp(&[(&y, Tensor::from_vec(&[3], vec![1.0, 0.0, 2.0])), (&s, Tensor::from_vec(&[], vec![1.0]))]);
    /// assert_eq!(g.get(&x).unwrap().data(), &[4.0, 4.0, 18.0]);
    /// ```
    ///
    /// # Panics
    /// If a cotangent's shape differs from its output's.
    #[track_caller]
    pub fn vjp(seeds: &[(&Var<T>, Tensor<T>)]) -> Gradients<T> {
        for (y, c) in seeds {
            assert_eq!(
                y.shape(),
                c.shape(),
                "vjp: cotangent of shape {:?} for an output of shape {:?}",
                c.shape(),
                y.shape()
            );
        }
        sweep(seeds)
    }
}

/// The reverse sweep from `seeds` (outputs with their cotangents).
fn sweep<T: Float>(seeds: &[(&Var<T>, Tensor<T>)]) -> Gradients<T> {
    let mut grads: HashMap<usize, Tensor<T>, IdBuild> = HashMap::default();
    let mut leaves = HashMap::default();
    let roots: Vec<&Var<T>> = seeds.iter().filter(|(y, _)| y.requires_grad()).map(|(y, _)| *y).collect();
    for (y, c) in seeds.iter().filter(|(y, _)| y.requires_grad()) {
        add(&mut grads, y, c.clone());
    }
    for node in topo_order(&roots).iter().rev() {
        let Some(g) = grads.remove(&node.id()) else { continue };
        match node.op() {
            None => {
                leaves.insert(node.id(), g);
            }
            Some(op) => backward_rule(op, node.value(), &g, &mut |input: &Var<T>, gi: Tensor<T>| {
                if input.requires_grad() {
                    add(&mut grads, input, gi);
                }
            }),
        }
    }
    Gradients { grads: leaves }
}

/// Adds `gi` to the gradient of `input` accumulated so far.
fn add<T: Float>(grads: &mut HashMap<usize, Tensor<T>, IdBuild>, input: &Var<T>, gi: Tensor<T>) {
    match grads.get_mut(&input.id()) {
        Some(acc) => gpu_or_cpu!(acc, crate::cuda::accumulate(acc, &gi), {
            for (a, b) in acc.data_mut().iter_mut().zip(gi.data()) {
                *a += *b;
            }
        }),
        None => {
            grads.insert(input.id(), gi);
        }
    }
}

/// Recorded nodes reachable from `roots`, inputs before outputs (iterative DFS, so deep
/// flows do not overflow the stack; every node comes after all its inputs, whichever root
/// reached it first).
fn topo_order<T: Float>(roots: &[&Var<T>]) -> Vec<Var<T>> {
    let mut order = Vec::new();
    let mut seen = std::collections::HashSet::with_hasher(IdBuild::default());
    let mut stack: Vec<(Var<T>, bool)> = roots.iter().rev().map(|r| ((*r).clone(), false)).collect();
    while let Some((v, expanded)) = stack.pop() {
        if expanded {
            order.push(v);
            continue;
        }
        if !seen.insert(v.id()) {
            continue;
        }
        stack.push((v.clone(), true));
        if let Some(op) = v.op() {
            op.for_each_input(|i| {
                if i.requires_grad() && !seen.contains(&i.id()) {
                    stack.push((i.clone(), false));
                }
            });
        }
    }
    order
}

/// Gradients of a scalar with respect to the parameter leaves it depends on.
#[derive(Debug, Default)]
pub struct Gradients<T: Float> {
    grads: HashMap<usize, Tensor<T>, IdBuild>,
}

impl<T: Float> Gradients<T> {
    /// The gradient for `leaf`, or `None` if the scalar does not depend on it.
    pub fn get(&self, leaf: &Var<T>) -> Option<&Tensor<T>> {
        self.grads.get(&leaf.id())
    }

    /// The gradient for `leaf`, zeros if the scalar does not depend on it.
    pub fn get_or_zeros(&self, leaf: &Var<T>) -> Tensor<T> {
        self.get(leaf).cloned().unwrap_or_else(|| Tensor::full_on(leaf.shape(), T::ZERO, leaf.value().device()))
    }
}

/// Calls `acc(input, gradient)` for each input of a custom op whose output `y` received
/// gradient `g` (the rule is the op's [`CustomOp::backward`]).
fn custom_backward<T: Float>(
    inputs: &[Var<T>],
    op: &dyn CustomOp<T>,
    y: &Tensor<T>,
    g: &Tensor<T>,
    acc: &mut dyn FnMut(&Var<T>, Tensor<T>),
) {
    let needs: Vec<bool> = inputs.iter().map(|v| v.requires_grad()).collect();
    let values: Vec<&Tensor<T>> = inputs.iter().map(|v| v.value()).collect();
    let grads = op.backward(&values, y, g, &needs);
    assert_eq!(
        grads.len(),
        inputs.len(),
        "custom op {}: backward returned {} gradients for {} inputs",
        op.name(),
        grads.len(),
        inputs.len()
    );
    for (v, gi) in inputs.iter().zip(grads) {
        if let Some(gi) = gi {
            assert_eq!(gi.shape(), v.shape(), "custom op {}: gradient shape vs input shape", op.name());
            acc(v, gi);
        }
    }
}
