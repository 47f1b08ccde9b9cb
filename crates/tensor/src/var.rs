//! `Var<T>`: a value on the tape. A `Var` is a cheap handle (reference counted) to a
//! tensor and, when it depends on a parameter, the [`Op`] that produced it.
//!
//! Recording is decided per value: an op records itself only when one of its inputs
//! requires a gradient. Leaves made with [`Var::param`] require one, leaves made with
//! [`Var::constant`] do not, so the same layer code runs "with the tape off" when its
//! parameters are registered as constants — nothing is kept, intermediates are freed
//! as soon as they go out of scope.

use crate::op::{backward_rule, Op};
use crate::{Float, Tensor};
use std::collections::HashMap;
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

    /// A unique id (the key of [`Gradients`]).
    pub fn id(&self) -> usize {
        self.0.id
    }

    /// The value as a new constant leaf (cuts the tape, like `detach()` in PyTorch).
    pub fn detach(&self) -> Self {
        Self::constant(self.0.value.clone())
    }

    /// Reverse-mode sweep from this one-element value: d self / d leaf for every
    /// [`Var::param`] leaf it depends on. Gradients of values used more than once add up.
    ///
    /// # Panics
    /// If the value has more than one element.
    #[track_caller]
    pub fn backward(&self) -> Gradients<T> {
        assert_eq!(self.value().len(), 1, "backward() needs a scalar, got shape {:?}", self.shape());
        let mut grads: HashMap<usize, Tensor<T>, IdBuild> = HashMap::default();
        let mut leaves = HashMap::default();
        if !self.requires_grad() {
            return Gradients { grads: leaves };
        }
        grads.insert(self.id(), Tensor::full_on(self.shape(), T::ONE, self.value().device()));
        for node in topo_order(self).iter().rev() {
            let Some(g) = grads.remove(&node.id()) else { continue };
            match &node.0.op {
                None => {
                    leaves.insert(node.id(), g);
                }
                Some(op) => backward_rule(op, node.value(), &g, &mut |input: &Var<T>, gi: Tensor<T>| {
                    if !input.requires_grad() {
                        return;
                    }
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
                }),
            }
        }
        Gradients { grads: leaves }
    }
}

/// Recorded nodes reachable from `root`, inputs before outputs (iterative DFS, so deep
/// flows do not overflow the stack).
/// Hashes integer keys (the tape's node ids, the pool's buffer lengths) with one multiply: SipHash's
/// protection against chosen keys buys nothing here and costs a visible share of a step.
#[derive(Clone, Copy, Default)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, i: usize) {
        self.0 = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Maps and sets keyed by node id.
pub(crate) type IdBuild = std::hash::BuildHasherDefault<IdHasher>;

fn topo_order<T: Float>(root: &Var<T>) -> Vec<Var<T>> {
    let mut order = Vec::new();
    let mut seen = std::collections::HashSet::with_hasher(IdBuild::default());
    let mut stack = vec![(root.clone(), false)];
    while let Some((v, expanded)) = stack.pop() {
        if expanded {
            order.push(v);
            continue;
        }
        if !seen.insert(v.id()) {
            continue;
        }
        stack.push((v.clone(), true));
        if let Some(op) = &v.0.op {
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
