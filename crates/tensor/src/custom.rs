//! The extension point for fused ops defined outside the engine (in the spirit of candle's
//! `CustomOp1/2/3`): a crate that needs an op the engine does not have (a lattice
//! coupling, a plaquette) implements [`CustomOp`] (forward on tensors, dispatching to its
//! own CPU kernel or CUDA module; backward as the chain rule) and records it with
//! [`Var::apply_custom`](crate::Var::apply_custom). On the tape it is one node, like the engine's own ops.
//!
//! ```
//! use latflow_tensor::{CustomOp, Tensor, Var};
//! /// y = x^3, elementwise (CPU only).
//! struct Cube;
//! impl CustomOp<f64> for Cube {
//!     fn name(&self) -> &'static str {
//!         "cube"
//!     }
//!     fn forward(&self, inputs: &[&Tensor<f64>]) -> Tensor<f64> {
//!         inputs[0].map(|x| x * x * x)
//!     }
//!     fn backward(
//!         &self,
//!         inputs: &[&Tensor<f64>],
//!         _output: &Tensor<f64>,
//!         grad: &Tensor<f64>,
//!         _needs_grad: &[bool],
//!     ) -> Vec<Option<Tensor<f64>>> {
//!         // d x^3 = 3 x^2 dx
//!         vec![Some(inputs[0].zip_map(grad, |x, g| 3.0 * x * x * g))]
//!     }
//! }
//! let x = Var::param(Tensor::from_vec(&[2], vec![1.0, 2.0]));
//! let y = Var::apply_custom(&[&x], Cube);
//! assert_eq!(y.value().data(), &[1.0, 8.0]);
//! let g = y.sum().backward();
//! assert_eq!(g.get(&x).unwrap().data(), &[3.0, 12.0]);
//! ```

use crate::{Float, Tensor};

/// A fused op defined outside the engine. Inputs are tensors on one device; an op that
/// supports the GPU checks [`Tensor::is_cuda`] and runs its CUDA kernels (see
/// `latflow_cuda_kernels::module`), else its CPU kernel. Shapes are checked by the method
/// that calls [`Var::apply_custom`](crate::Var::apply_custom), before it does.
pub trait CustomOp<T: Float> {
    /// The op's name (error messages, the audit).
    fn name(&self) -> &'static str;

    /// The output for `inputs`.
    fn forward(&self, inputs: &[&Tensor<T>]) -> Tensor<T>;

    /// The chain rule: given the inputs, the output and `grad = d loss / d output`, the
    /// gradient of each input (`None` where none flows, e.g. `needs_grad[i]` is false).
    /// Implementations start with the derivative as a comment, as every rule of the engine.
    fn backward(
        &self,
        inputs: &[&Tensor<T>],
        output: &Tensor<T>,
        grad: &Tensor<T>,
        needs_grad: &[bool],
    ) -> Vec<Option<Tensor<T>>>;
}
