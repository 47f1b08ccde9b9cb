//! The U(1) base distribution: independent uniform (Haar) link angles.

use crate::prior::Prior;
use latflow_tensor::{Float, Tensor};
use rand::RngCore;
use std::f64::consts::PI;

/// Haar measure on U(1) for every link: angles uniform in `[0, 2 pi)`, per-sample shape
/// `(2, L, L)`, `log r(z) = -V_links ln(2 pi)` with `V_links = 2 L^2` (the tutorial's
/// `MultivariateUniform(0, 2 pi)`). The density is that of the angles' support; like the
/// tutorial's (without argument validation), `log_prob` does not check the range.
///
/// ```
/// use latflow_flow::prior::Prior;
/// use latflow_flow::u1::HaarPrior;
/// use rand::SeedableRng;
/// let prior = HaarPrior::new(4);
/// let z: latflow_tensor::Tensor<f64> = prior.sample(3, &mut rand::rngs::StdRng::seed_from_u64(0));
/// assert_eq!(z.shape(), &[3, 2, 4, 4]);
/// let lr = prior.log_prob(&z);
/// assert!((lr.data()[0] + 32.0 * (2.0 * std::f64::consts::PI).ln()).abs() < 1e-12);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct HaarPrior {
    shape: Vec<usize>,
}

impl HaarPrior {
    /// Uniform link angles on an `l x l` lattice (per-sample shape `(2, l, l)`).
    pub fn new(l: usize) -> Self {
        HaarPrior { shape: vec![2, l, l] }
    }
}

impl<T: Float> Prior<T> for HaarPrior {
    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn box_clone(&self) -> Box<dyn Prior<T>> {
        Box::new(self.clone())
    }

    fn sample(&self, n: usize, rng: &mut dyn RngCore) -> Tensor<T> {
        let mut s = vec![n];
        s.extend(&self.shape);
        let mut z = Tensor::<T>::uniform(&s, 0.0, 2.0 * PI, rng);
        // The f64 draw lies in [0, 2 pi); rounding to f32 can reach 2 pi itself.
        for v in z.data_mut() {
            if Float::to_f64(*v) >= 2.0 * PI {
                *v = T::ZERO;
            }
        }
        z
    }

    fn log_prob(&self, z: &Tensor<T>) -> Tensor<T> {
        let per: usize = self.shape.iter().product();
        let n = z.shape()[0];
        Tensor::full(&[n], T::from_f64(-(per as f64) * (2.0 * PI).ln()))
    }
    /// Angles: the latent links live on the torus `[0, 2 pi)^n`.
    fn period(&self) -> Option<f64> {
        Some(2.0 * std::f64::consts::PI)
    }
}
