//! Parameterized layers with PyTorch's default initialization, holding plain tensors.
//! Each forward call takes the parameters as [`Var`]s so the caller decides whether
//! they are recorded (training) or constants (sampling).

use crate::{Float, Tensor, Var};
use rand::Rng;

/// PyTorch's default init for Conv2d and Linear: weight and bias uniform in
/// `+-1/sqrt(fan_in)` (kaiming_uniform with a = sqrt(5) reduces to this bound).
pub fn default_uniform<T: Float, R: Rng + ?Sized>(shape: &[usize], fan_in: usize, rng: &mut R) -> Tensor<T> {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Tensor::uniform(shape, -bound, bound, rng)
}

/// A circular-padded 2-D convolution's parameters: weight `(cout, cin, k, k)`, bias `(cout,)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d<T: Float> {
    /// Weight `(cout, cin, k, k)`.
    pub weight: Tensor<T>,
    /// Bias `(cout,)`.
    pub bias: Tensor<T>,
}

impl<T: Float> Conv2d<T> {
    /// PyTorch-initialized parameters.
    ///
    /// # Panics
    /// If `k` is even or zero, or a channel count is zero.
    #[track_caller]
    pub fn new<R: Rng + ?Sized>(cin: usize, cout: usize, k: usize, rng: &mut R) -> Self {
        assert!(k % 2 == 1, "Conv2d: kernel size {k} must be odd (circular padding k/2 on both sides)");
        assert!(cin > 0 && cout > 0, "Conv2d: channel counts must be positive, got {cin} -> {cout}");
        let fan_in = cin * k * k;
        Conv2d { weight: default_uniform(&[cout, cin, k, k], fan_in, rng), bias: default_uniform(&[cout], fan_in, rng) }
    }
}

/// A fully connected layer `y = x W^T + b`: weight `(out, in)`, bias `(out,)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear<T: Float> {
    /// Weight `(out, in)`.
    pub weight: Tensor<T>,
    /// Bias `(out,)`.
    pub bias: Tensor<T>,
}

impl<T: Float> Linear<T> {
    /// PyTorch-initialized parameters.
    ///
    /// # Panics
    /// If a size is zero.
    #[track_caller]
    pub fn new<R: Rng + ?Sized>(fan_in: usize, fan_out: usize, rng: &mut R) -> Self {
        assert!(fan_in > 0 && fan_out > 0, "Linear: sizes must be positive, got {fan_in} -> {fan_out}");
        Linear {
            weight: default_uniform(&[fan_out, fan_in], fan_in, rng),
            bias: default_uniform(&[fan_out], fan_in, rng),
        }
    }

    /// `x (N, in) -> x W^T + b (N, out)` with the given parameter vars.
    ///
    /// # Panics
    /// If `x` is not `(N, in)` for the weight's `(out, in)` (the message names both), or
    /// the bias is not `(out,)`.
    #[track_caller]
    pub fn forward(x: &Var<T>, weight: &Var<T>, bias: &Var<T>) -> Var<T> {
        let (xs, ws) = (x.shape(), weight.shape());
        assert!(
            xs.len() == 2 && ws.len() == 2 && xs[1] == ws[1],
            "Linear: shape mismatch, input {xs:?} vs weight {ws:?} (want (N, in) and (out, in))"
        );
        x.matmul(&weight.t()).add_bias(bias)
    }
}
