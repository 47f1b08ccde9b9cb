//! Base distributions r(z) of the flows.

use latflow_tensor::{Float, Tensor};
use rand::RngCore;

/// A distribution over lattice configurations of a fixed per-sample shape.
pub trait Prior<T: Float>: Send + Sync {
    /// Shape of one sample (without the batch axis).
    fn shape(&self) -> &[usize];
    /// `n` samples, shape `(n, shape...)`.
    fn sample(&self, n: usize, rng: &mut dyn RngCore) -> Tensor<T>;
    /// `log r(z)` per sample, shape `(n,)`.
    fn log_prob(&self, z: &Tensor<T>) -> Tensor<T>;
    /// A boxed copy.
    fn box_clone(&self) -> Box<dyn Prior<T>>;
}

/// Independent standard normals on every site: `log r(z) = -sum z^2/2 - V log(2 pi)/2`
/// (the tutorial's `SimpleNormal(0, 1)`).
#[derive(Clone, Debug, PartialEq)]
pub struct NormalPrior {
    shape: Vec<usize>,
}

impl NormalPrior {
    /// A standard normal on a lattice of the given shape.
    pub fn new(shape: &[usize]) -> Self {
        NormalPrior { shape: shape.to_vec() }
    }
}

impl<T: Float> Prior<T> for NormalPrior {
    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn sample(&self, n: usize, rng: &mut dyn RngCore) -> Tensor<T> {
        let mut s = vec![n];
        s.extend(&self.shape);
        Tensor::randn(&s, rng)
    }

    fn box_clone(&self) -> Box<dyn Prior<T>> {
        Box::new(self.clone())
    }

    fn log_prob(&self, z: &Tensor<T>) -> Tensor<T> {
        per_sample(z, |zs| {
            let c = 0.5 * (2.0 * std::f64::consts::PI).ln();
            zs.iter().map(|&x| -0.5 * x.to_f64() * x.to_f64() - c).sum()
        })
    }
}

/// Applies `f` to each sample's slice of a batched tensor, giving shape `(n,)`.
pub fn per_sample<T: Float>(x: &Tensor<T>, f: impl Fn(&[T]) -> f64) -> Tensor<T> {
    let n = x.shape()[0];
    let per = x.len() / n.max(1);
    let data = x.data().chunks(per.max(1)).take(n).map(|c| T::from_f64(f(c))).collect();
    Tensor::from_vec(&[n], data)
}
