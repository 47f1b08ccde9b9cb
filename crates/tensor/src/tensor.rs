//! `Tensor<T>`: a dense, contiguous, row-major array with a shape. Plain data: no
//! gradient bookkeeping (that lives in [`crate::Var`]). The buffer is shared between
//! clones (copy on write), so clones and reshapes cost no copy.

use crate::Float;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use std::sync::Arc;

/// A dense row-major array. Layout conventions: NCHW for fields, (batch, mu, x, y) for
/// U(1) links (DESIGN.md).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<T: Float> {
    shape: Vec<usize>,
    data: Arc<Vec<T>>,
}

/// Number of elements of a shape (1 for the scalar shape `[]`).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// The last owner of a buffer hands it to [`crate::pool`] for the next op's output.
impl<T: Float> Drop for Tensor<T> {
    fn drop(&mut self) {
        if let Some(v) = Arc::get_mut(&mut self.data) {
            crate::pool::recycle(std::mem::take(v));
        }
    }
}

impl<T: Float> Tensor<T> {
    /// A tensor from its shape and row-major data.
    ///
    /// # Panics
    /// If `data.len()` is not the product of `shape`.
    #[track_caller]
    pub fn from_vec(shape: &[usize], data: Vec<T>) -> Self {
        assert_eq!(
            numel(shape),
            data.len(),
            "Tensor::from_vec: shape {shape:?} holds {} elements, data has {}",
            numel(shape),
            data.len()
        );
        Tensor { shape: shape.to_vec(), data: Arc::new(data) }
    }

    /// A tensor filled with `value`.
    pub fn full(shape: &[usize], value: T) -> Self {
        Tensor { shape: shape.to_vec(), data: Arc::new(vec![value; numel(shape)]) }
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Self::full(shape, T::ZERO)
    }

    /// A tensor of ones.
    pub fn ones(shape: &[usize]) -> Self {
        Self::full(shape, T::ONE)
    }

    /// A 0-dimensional tensor holding one value.
    pub fn scalar(value: T) -> Self {
        Tensor { shape: vec![], data: Arc::new(vec![value]) }
    }

    /// Standard normal entries from `rng`.
    pub fn randn<R: Rng + ?Sized>(shape: &[usize], rng: &mut R) -> Self {
        let data = (0..numel(shape)).map(|_| T::from_f64(StandardNormal.sample(rng))).collect();
        Tensor { shape: shape.to_vec(), data: Arc::new(data) }
    }

    /// Entries uniform in `[lo, hi)` from `rng`.
    pub fn uniform<R: Rng + ?Sized>(shape: &[usize], lo: f64, hi: f64, rng: &mut R) -> Self {
        let data = (0..numel(shape)).map(|_| T::from_f64(rng.gen_range(lo..hi))).collect();
        Tensor { shape: shape.to_vec(), data: Arc::new(data) }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The row-major data.
    pub fn data(&self) -> &[T] {
        &self.data
    }

    /// The row-major data, mutable.
    pub fn data_mut(&mut self) -> &mut [T] {
        Arc::make_mut(&mut self.data).as_mut_slice()
    }

    /// The data, consuming the tensor.
    pub fn into_vec(mut self) -> Vec<T> {
        match Arc::get_mut(&mut self.data) {
            Some(v) => std::mem::take(v),
            None => (*self.data).clone(),
        }
    }

    /// The single value of a one-element tensor.
    ///
    /// # Panics
    /// If the tensor has more than one element.
    #[track_caller]
    pub fn item(&self) -> T {
        assert_eq!(self.data.len(), 1, "item() on a tensor of shape {:?}", self.shape);
        self.data[0]
    }

    /// The same data under another shape with the same number of elements.
    ///
    /// # Panics
    /// If the element counts differ.
    #[track_caller]
    pub fn reshape(mut self, shape: &[usize]) -> Self {
        assert_eq!(numel(shape), self.data.len(), "reshape: cannot view shape {:?} as {shape:?}", self.shape);
        self.shape = shape.to_vec();
        self
    }

    /// Elementwise map into a new tensor.
    pub fn map(&self, f: impl Fn(T) -> T) -> Self {
        Tensor { shape: self.shape.clone(), data: Arc::new(self.data.iter().map(|&x| f(x)).collect()) }
    }

    /// Elementwise combination of two tensors of the same shape.
    ///
    /// # Panics
    /// If the shapes differ.
    #[track_caller]
    pub fn zip_map(&self, other: &Self, f: impl Fn(T, T) -> T) -> Self {
        assert_same_shape("zip_map", &self.shape, &other.shape);
        let data = self.data.iter().zip(other.data.iter()).map(|(&a, &b)| f(a, b)).collect();
        Tensor { shape: self.shape.clone(), data: Arc::new(data) }
    }

    /// Converts the element type (through f64).
    pub fn cast<U: Float>(&self) -> Tensor<U> {
        Tensor {
            shape: self.shape.clone(),
            data: Arc::new(self.data.iter().map(|x| U::from_f64(x.to_f64())).collect()),
        }
    }

    /// Whether every element is finite.
    pub fn all_finite(&self) -> bool {
        self.data.iter().all(|x| x.is_finite())
    }
}

/// Panics (at the caller) unless the two shapes are equal, naming both.
#[track_caller]
pub fn assert_same_shape(op: &str, a: &[usize], b: &[usize]) {
    assert!(a == b, "{op}: shape mismatch, {a:?} vs {b:?}");
}

/// Row-major strides of a shape.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Splits a shape around `axis` into (outer, size, inner) element counts, the view
/// every axis-wise op (sum, roll, select, logsumexp, stack) works in.
#[track_caller]
pub fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    assert!(axis < shape.len(), "axis {axis} out of range for shape {shape:?}");
    (numel(&shape[..axis]), shape[axis], numel(&shape[axis + 1..]))
}
