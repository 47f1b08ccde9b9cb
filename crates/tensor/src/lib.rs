//! latflow's reverse-mode autodiff engine.
//!
//! - [`Tensor`]: dense row-major data (NCHW for fields).
//! - [`Var`]: a value on the tape; ops are methods (`x.conv2d(&w, Some(&b)).leaky_relu(0.01)`),
//!   [`Var::backward`] returns [`Gradients`] of the parameter leaves.
//! - Backward rules live in one place (`op.rs`), elementwise derivatives in [`elementwise`].
//! - [`kernels`]: CPU kernels, each with a scalar reference.
//! - [`Adam`], [`layers`] (PyTorch-default init), [`gradcheck`] (f64 finite-difference audit).
//! - [`Device`]: tensors live on the CPU or (feature `cuda`) the GPU; ops dispatch on
//!   where their inputs are (`latflow-cuda-kernels` holds the CUDA kernels).
//!
//! ```
//! use latflow_tensor::{Tensor, Var};
//! let x = Var::param(Tensor::from_vec(&[2], vec![1.0f64, 2.0]));
//! let y = x.square().sum(); // y = x0^2 + x1^2
//! let g = y.backward();
//! assert_eq!(g.get(&x).unwrap().data(), &[2.0, 4.0]);
//! ```

/// `gpu_or_cpu!(t, gpu_expr, cpu_expr)`: the GPU expression when tensor `t` lives on the
/// GPU (feature `cuda`), else the CPU one. Without the feature only the CPU one is compiled.
macro_rules! gpu_or_cpu {
    ($t:expr, $gpu:expr, $cpu:expr) => {{
        #[cfg(feature = "cuda")]
        {
            if $t.is_cuda() {
                $gpu
            } else {
                $cpu
            }
        }
        #[cfg(not(feature = "cuda"))]
        {
            $cpu
        }
    }};
}

mod adam;
pub mod audit;
mod backward;
#[cfg(feature = "cuda")]
mod cuda;
mod custom;
pub mod elementwise;
mod float;
mod forward;
mod gradcheck;
pub mod id_hash;
pub mod kernels;
pub mod layers;
pub mod malloc;
pub mod pool;
pub mod tensor;
mod var;

pub use adam::{Adam, AdamConfig};
pub use backward::Gradients;
pub use custom::CustomOp;
pub use float::Float;
pub use gradcheck::{gradcheck, GradcheckConfig, GradcheckReport, InputError, GRADCHECK_TOL_F64};
pub use tensor::{gpu_name, Device, Tensor};
pub use var::Var;
