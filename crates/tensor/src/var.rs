//! `Var<T>`: a value on the tape. A `Var` is a cheap handle (reference counted) to a
//! tensor and, when it depends on a parameter, the [`Op`] that produced it.
//!
//! Recording is decided per value: an op records itself only when one of its inputs
//! requires a gradient. Leaves made with [`Var::param`] require one, leaves made with
//! [`Var::constant`] do not, so the same layer code runs "with the tape off" when its
//! parameters are registered as constants — nothing is kept, intermediates are freed
//! as soon as they go out of scope.
//!
//! The tape's op set ([`Op`]: what a node records) lives here with `Var`, since a node holds
//! its op and an op its input nodes; the reverse sweep and every backward rule are in
//! `backward.rs`, the forward methods in `forward.rs`.

use crate::custom::CustomOp;
use crate::elementwise::{Binary, Unary};
use crate::kernels::conv2d::Conv2dShape;
use crate::{Float, Tensor};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

pub(crate) struct Node<T: Float> {
    id: usize,
    value: Tensor<T>,
    op: Option<Op<T>>,
    requires_grad: bool,
}

/// A tensor on the tape: a leaf (parameter or constant) or the result of an op.
pub struct Var<T: Float>(Rc<Node<T>>);

impl<T: Float> Clone for Var<T> {
    fn clone(&self) -> Self {
        Var(Rc::clone(&self.0))
    }
}

impl<T: Float> std::fmt::Debug for Var<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Var")
            .field("id", &self.0.id)
            .field("shape", &self.shape())
            .field("requires_grad", &self.0.requires_grad)
            .finish()
    }
}

impl<T: Float> Var<T> {
    fn new(value: Tensor<T>, op: Option<Op<T>>, requires_grad: bool) -> Self {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Var(Rc::new(Node { id, value, op, requires_grad }))
    }

    /// A leaf whose gradient [`Var::backward`] reports (a trainable parameter, or an
    /// input being audited).
    pub fn param(value: Tensor<T>) -> Self {
        Self::new(value, None, true)
    }

    /// A leaf without gradient: data, masks, or parameters when sampling.
    pub fn constant(value: Tensor<T>) -> Self {
        Self::new(value, None, false)
    }

    /// The result of `op`; recorded only if an input requires a gradient.
    pub(crate) fn from_op(value: Tensor<T>, op: Op<T>) -> Self {
        let mut rg = false;
        op.for_each_input(|v| rg |= v.requires_grad());
        Self::new(value, if rg { Some(op) } else { None }, rg)
    }

    /// The op that produced this value, if it was recorded.
    pub(crate) fn op(&self) -> Option<&Op<T>> {
        self.0.op.as_ref()
    }

    /// The value.
    pub fn value(&self) -> &Tensor<T> {
        &self.0.value
    }

    /// The shape of the value.
    pub fn shape(&self) -> &[usize] {
        self.0.value.shape()
    }

    /// Whether a gradient flows to this value.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }

    /// A unique id (the key of [`Gradients`](crate::Gradients)).
    pub fn id(&self) -> usize {
        self.0.id
    }

    /// The value as a new constant leaf (cuts the tape, like `detach()` in PyTorch).
    pub fn detach(&self) -> Self {
        Self::constant(self.0.value.clone())
    }
}

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
    /// `(cos x, sin x)` stacked on a new axis 1 (`Var::cos_sin`).
    CosSin(Var<T>),
    /// An op defined outside the engine ([`CustomOp`]), on its inputs.
    Custom(Vec<Var<T>>, Rc<dyn CustomOp<T>>),
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
            | Op::CosSin(a) => f(a),
            Op::Binary(a, b, _) | Op::AddBias(a, b) | Op::MatMul(a, b) => {
                f(a);
                f(b);
            }
            Op::Concat(v, _) | Op::Custom(v, _) => v.iter().for_each(f),
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
