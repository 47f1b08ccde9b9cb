//! Base distributions r(z) of the flows: the standard normal ([`NormalPrior`], the
//! tutorial's) and the free field ([`FreePrior`], a Gaussian with the propagator of a free
//! scalar of mass squared `m_p^2`).

use latflow_tensor::{Float, Tensor, Var};
use rand::RngCore;

/// A distribution over lattice configurations of a fixed per-sample shape.
pub trait Prior<T: Float>: Send + Sync {
    /// Shape of one sample (without the batch axis).
    fn shape(&self) -> &[usize];
    /// `n` samples, shape `(n, shape...)`.
    fn sample(&self, n: usize, rng: &mut dyn RngCore) -> Tensor<T>;
    /// `log r(z)` per sample, shape `(n,)`.
    fn log_prob(&self, z: &Tensor<T>) -> Tensor<T>;
    /// `log r(z)` per sample on the tape (differentiable in `z`), for losses that evaluate
    /// the flow's density at points it did not sample (the Z2 mixture's `log q(-x)`, which
    /// runs the reverse pass: [`crate::model::Flow::reverse_vars`]). `None` (the default)
    /// when the prior has no tape form.
    fn log_prob_var(&self, z: &Var<T>) -> Option<Var<T>> {
        let _ = z;
        None
    }
    /// A boxed copy.
    fn box_clone(&self) -> Box<dyn Prior<T>>;
    /// The period of every latent coordinate when the prior lives on a torus (`2 pi` for
    /// the Haar measure on U(1) links), `None` (the default) on `R^n`. Flow-HMC wraps its
    /// latent field with it ([`crate::latent`]).
    fn period(&self) -> Option<f64> {
        None
    }
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

    /// `-sum z^2 / 2 - V log(2 pi) / 2`; derivative `-z`.
    fn log_prob_var(&self, z: &Var<T>) -> Option<Var<T>> {
        let v: usize = self.shape.iter().product();
        let axes: Vec<usize> = (1..z.shape().len()).collect();
        let c = 0.5 * v as f64 * (2.0 * std::f64::consts::PI).ln();
        Some(z.square().sum_axes(&axes).mul_scalar(-0.5).add_scalar(-c))
    }
}

/// Applies `f` to each sample's slice of a batched tensor, giving shape `(n,)`.
pub fn per_sample<T: Float>(x: &Tensor<T>, f: impl Fn(&[T]) -> f64) -> Tensor<T> {
    let n = x.shape()[0];
    let per = x.len() / n.max(1);
    let data = x.data().chunks(per.max(1)).take(n).map(|c| T::from_f64(f(c))).collect();
    Tensor::from_vec(&[n], data)
}

/// The free field as a prior: `r(z) = N(0, Sigma)` with `Sigma = (1/2)(-Laplacian + m_p^2)^{-1}`
/// on the periodic lattice, i.e. `r(z) = exp(-S_0(z)) / Z_0` with the tutorial's phi^4 action at
/// `M2 = m_p^2`, `lam = 0` (`latflow_physics::Phi4`):
///
/// `S_0(z) = sum_x [ (m_p^2 + 2 d) z_x^2 - 2 sum_mu z_x z_{x+mu} ] = z^T (-Laplacian + m_p^2) z`,
/// `log r(z) = -S_0(z) - (V/2) log(2 pi) + (1/2) sum_k log(2 (lambda_k + m_p^2))`,
///
/// with `lambda_k = sum_mu (2 - 2 cos(2 pi k_mu / L_mu))` the eigenvalues of `-Laplacian` (the
/// Fourier modes, `d` = number of lattice axes). Sampled and evaluated exactly, normalization
/// included: `z = B^T (sigma * eta)` with `eta` standard normal, `sigma_k = (2 (lambda_k +
/// m_p^2))^{-1/2}` and `B` the orthonormal real Fourier basis of each axis
/// ([`real_fourier_basis`]: cosines and sines), applied axis by axis (`O(V sum L_mu)` per sample;
/// no FFT, fine for L up to a few hundred). A flow on this prior starts from the free theory
/// instead of white noise (the "free-field prior" of arXiv:2101.08176's outlook and of issue 13).
///
/// Derivative of the tape form ([`Prior::log_prob_var`]): `-2 (-Laplacian + m_p^2) z`.
///
/// ```
/// use latflow_flow::prior::{FreePrior, Prior};
/// use latflow_tensor::Tensor;
/// let prior = FreePrior::new(&[4, 4], 0.5);
/// let z: Tensor<f64> = prior.sample(3, &mut rand::thread_rng());
/// let log_r = prior.log_prob(&z);
/// assert_eq!(log_r.shape(), &[3]);
/// // at z = 0 the density is the normalization: (1/2) sum_k log(2 (lambda_k + m2) / (2 pi))
/// let zero = prior.log_prob(&Tensor::<f64>::zeros(&[1, 4, 4])).data()[0];
/// assert!((zero - prior.log_normalization()).abs() < 1e-12);
/// ```
///
/// # Panics
/// [`FreePrior::new`] panics unless `m_p^2` is finite and positive (the constant mode has
/// `lambda = 0`) and every extent is positive; [`FreePrior::try_new`] returns the error.
#[derive(Clone, Debug, PartialEq)]
pub struct FreePrior {
    shape: Vec<usize>,
    m2: f64,
    /// Per axis: the orthonormal real Fourier basis, row `k` = mode `k` (`L x L`).
    basis: Vec<Vec<f64>>,
    /// Standard deviation of each mode, row-major over the modes of all axes.
    sigma: Vec<f64>,
    log_norm: f64,
}

/// The orthonormal real Fourier basis of a periodic chain of `l` sites and the eigenvalues of
/// `-Laplacian` (`2 phi_x - phi_{x+1} - phi_{x-1}`) on it: returns `(b, lambda)` with `b` the
/// `l x l` matrix (row-major) whose row `k` is mode `k`: `k = 0` the constant `1/sqrt(l)`
/// (`lambda = 0`); for `1 <= j < l/2` the pair `sqrt(2/l) cos(2 pi j x / l)`,
/// `sqrt(2/l) sin(2 pi j x / l)` (`lambda = 2 - 2 cos(2 pi j / l)`); for even `l` the
/// alternating `(-1)^x / sqrt(l)` (`lambda = 4`).
///
/// # Panics
/// If `l == 0`.
pub fn real_fourier_basis(l: usize) -> (Vec<f64>, Vec<f64>) {
    assert!(l > 0, "real_fourier_basis: the chain needs at least one site");
    let lf = l as f64;
    let mut b = Vec::with_capacity(l * l);
    let mut lambda = Vec::with_capacity(l);
    b.extend(std::iter::repeat_n(1.0 / lf.sqrt(), l));
    lambda.push(0.0);
    for j in 1..l.div_ceil(2) {
        let w = 2.0 * std::f64::consts::PI * j as f64 / lf;
        let c = (2.0 / lf).sqrt();
        b.extend((0..l).map(|x| c * (w * x as f64).cos()));
        b.extend((0..l).map(|x| c * (w * x as f64).sin()));
        lambda.extend([2.0 - 2.0 * w.cos(); 2]);
    }
    if l.is_multiple_of(2) {
        b.extend((0..l).map(|x| if x % 2 == 0 { 1.0 } else { -1.0 } / lf.sqrt()));
        lambda.push(4.0);
    }
    (b, lambda)
}

/// `data <- M data` along `axis` of a configuration of `shape` (row-major), `M` an
/// `L x L` row-major matrix (`transpose`: `M^T`).
fn apply_along(data: &mut [f64], shape: &[usize], axis: usize, m: &[f64], transpose: bool, tmp: &mut Vec<f64>) {
    let l = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let outer: usize = shape[..axis].iter().product();
    tmp.clear();
    tmp.resize(l, 0.0);
    for o in 0..outer {
        for i in 0..inner {
            let at = |x: usize| (o * l + x) * inner + i;
            for (r, t) in tmp.iter_mut().enumerate() {
                *t = (0..l).map(|c| if transpose { m[c * l + r] } else { m[r * l + c] } * data[at(c)]).sum();
            }
            for (x, t) in tmp.iter().enumerate() {
                data[at(x)] = *t;
            }
        }
    }
}

impl FreePrior {
    /// The free-field prior of mass squared `m2` on a periodic lattice of `shape`.
    ///
    /// # Panics
    /// If [`FreePrior::try_new`] fails.
    #[track_caller]
    pub fn new(shape: &[usize], m2: f64) -> Self {
        Self::try_new(shape, m2).unwrap_or_else(|e| panic!("FreePrior: {e}"))
    }

    /// The free-field prior, or why not: `m2` must be finite and positive, every extent
    /// positive.
    pub fn try_new(shape: &[usize], m2: f64) -> Result<Self, String> {
        if !(m2.is_finite() && m2 > 0.0) {
            return Err(format!("the free-field prior needs a positive mass squared, got {m2}"));
        }
        if shape.is_empty() || shape.contains(&0) {
            return Err(format!("the free-field prior needs a lattice of positive extents, got {shape:?}"));
        }
        let (basis, eig): (Vec<Vec<f64>>, Vec<Vec<f64>>) = shape.iter().map(|&l| real_fourier_basis(l)).unzip();
        let v: usize = shape.iter().product();
        let mut sigma = Vec::with_capacity(v);
        let mut log_det = 0.0; // sum_k log(2 (lambda_k + m2)) = log det Sigma^{-1}
        for idx in 0..v {
            let (mut rest, mut lambda) = (idx, m2);
            for (a, &l) in shape.iter().enumerate().rev() {
                lambda += eig[a][rest % l];
                rest /= l;
            }
            log_det += (2.0 * lambda).ln();
            sigma.push(1.0 / (2.0 * lambda).sqrt());
        }
        let log_norm = 0.5 * log_det - 0.5 * v as f64 * (2.0 * std::f64::consts::PI).ln();
        Ok(FreePrior { shape: shape.to_vec(), m2, basis, sigma, log_norm })
    }

    /// The prior's mass squared `m_p^2`.
    pub fn m2(&self) -> f64 {
        self.m2
    }

    /// `log r(0) = (1/2) log det(Sigma^{-1}) - (V/2) log(2 pi)`.
    pub fn log_normalization(&self) -> f64 {
        self.log_norm
    }

    /// `z = B^T (sigma * eta)` for one configuration: standard normals `eta` (mode space) to
    /// a free field `z` (position space), a linear map with `log|det| = sum_k log sigma_k`
    /// and `z z^T = Sigma` on average.
    ///
    /// # Panics
    /// If a length is not the lattice volume.
    #[track_caller]
    pub fn color(&self, eta: &[f64], z: &mut [f64]) {
        assert!(eta.len() == self.sigma.len() && z.len() == eta.len(), "FreePrior::color: lengths");
        for ((o, e), s) in z.iter_mut().zip(eta).zip(&self.sigma) {
            *o = e * s;
        }
        let mut tmp = Vec::new();
        for (a, b) in self.basis.iter().enumerate() {
            apply_along(z, &self.shape, a, b, true, &mut tmp);
        }
    }

    /// The inverse of [`FreePrior::color`]: `eta = (B z) / sigma`.
    ///
    /// # Panics
    /// If a length is not the lattice volume.
    #[track_caller]
    pub fn whiten(&self, z: &[f64], eta: &mut [f64]) {
        assert!(z.len() == self.sigma.len() && eta.len() == z.len(), "FreePrior::whiten: lengths");
        eta.copy_from_slice(z);
        let mut tmp = Vec::new();
        for (a, b) in self.basis.iter().enumerate() {
            apply_along(eta, &self.shape, a, b, false, &mut tmp);
        }
        for (e, s) in eta.iter_mut().zip(&self.sigma) {
            *e /= s;
        }
    }

    /// `S_0(z) = sum_x [ (m2 + 2 d) z_x^2 - 2 sum_mu z_x z_{x+mu} ]` of one configuration
    /// (periodic neighbours).
    pub fn free_action(&self, z: &[f64]) -> f64 {
        let d = self.shape.len();
        let mut s = 0.0;
        let mut stride = 1;
        let mut strides = vec![0; d];
        for a in (0..d).rev() {
            strides[a] = stride;
            stride *= self.shape[a];
        }
        for (i, &zi) in z.iter().enumerate() {
            let mut nb = 0.0;
            for (a, &st) in strides.iter().enumerate() {
                let l = self.shape[a];
                let c = (i / st) % l;
                nb += z[if c + 1 < l { i + st } else { i + st - l * st }];
            }
            s += (self.m2 + 2.0 * d as f64) * zi * zi - 2.0 * zi * nb;
        }
        s
    }
}

impl<T: Float> Prior<T> for FreePrior {
    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn sample(&self, n: usize, rng: &mut dyn RngCore) -> Tensor<T> {
        let mut s = vec![n];
        s.extend(&self.shape);
        let eta: Tensor<f64> = Tensor::randn(&s, rng);
        let v = self.sigma.len();
        let mut out = vec![0.0; v];
        let mut data = Vec::with_capacity(n * v);
        for e in eta.data().chunks(v.max(1)).take(n) {
            self.color(e, &mut out);
            data.extend(out.iter().map(|&x| T::from_f64(x)));
        }
        Tensor::from_vec(&s, data)
    }

    fn log_prob(&self, z: &Tensor<T>) -> Tensor<T> {
        per_sample(z, |zs| {
            let z: Vec<f64> = zs.iter().map(|v| v.to_f64()).collect();
            self.log_norm - self.free_action(&z)
        })
    }

    /// `log r(0) - S_0(z)` with rolls; derivative `-2 (-Laplacian + m_p^2) z`.
    fn log_prob_var(&self, z: &Var<T>) -> Option<Var<T>> {
        let rank = z.shape().len();
        let d = self.shape.len();
        let mut a = z.square().mul_scalar(self.m2 + 2.0 * d as f64);
        for axis in 1..rank {
            a = a.sub(&z.mul(&z.roll(axis, -1)).mul_scalar(2.0));
        }
        let axes: Vec<usize> = (1..rank).collect();
        Some(a.sum_axes(&axes).neg().add_scalar(self.log_norm))
    }

    fn box_clone(&self) -> Box<dyn Prior<T>> {
        Box::new(self.clone())
    }
}
