//! latflow's reverse-mode autodiff engine. It knows tensors and generic ops, not lattices:
//! fused ops of a theory (couplings, plaquettes) live with the crate that uses them and
//! plug in through [`CustomOp`].
//!
//! - [`Tensor`]: dense row-major data (NCHW for fields).
//! - [`Var`]: a value on the tape; ops are methods (`x.conv2d(&w, Some(&b)).leaky_relu(0.01)`),
//!   [`Var::backward`] returns [`Gradients`] of the parameter leaves.
//! - [`kernels`]: CPU kernels, each with a scalar reference.
//! - [`Adam`], [`layers`] (PyTorch-default init), [`gradcheck`] (f64 finite-difference audit).
//! - [`Device`]: tensors live on the CPU or (feature `cuda`) the GPU; ops dispatch on
//!   where their inputs are (`latflow-cuda-kernels` holds the CUDA kernels).
//!
//! Files, from the bottom of the dependency order up (no module uses one that uses it):
//!
//! | file | holds |
//! |---|---|
//! | `float.rs` | [`Float`] (f32, f64) and its slice functions |
//! | `id_hash.rs` | the hasher of node ids and buffer lengths |
//! | `pool.rs` | recycled tensor buffers |
//! | `tensor.rs` | [`Tensor`], [`Device`], shape helpers |
//! | `elementwise.rs` | [`elementwise::Unary`], [`elementwise::Binary`]: each `f`, `f'` and CUDA op code |
//! | `kernels/` | CPU kernels (conv2d and its SIMD/AVX-512/Winograd/FFT paths, layout, matmul, vector math) |
//! | `custom.rs` | [`CustomOp`]: the extension point for ops defined outside the engine |
//! | `var.rs` | [`Var`] and the tape's op set (`Op`): what a node records |
//! | `forward.rs` | every op's forward method on [`Var`], and [`Var::apply_custom`] |
//! | `conv_stack.rs` | a training shard's conv net as one node in the samples-as-lanes layout ([`conv_stack`]) |
//! | `backward.rs` | the reverse sweep ([`Var::backward`], [`Gradients`]) and every backward rule, each starting with its derivative |
//! | `cuda.rs` | (feature `cuda`) the GPU side of every engine op |
//! | `adam.rs`, `layers.rs`, `gradcheck.rs`, `audit.rs`, `malloc.rs` | optimizer, layers, gradient checks, the audit catalogue, allocator settings |
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
pub mod conv_stack;
#[cfg(feature = "cuda")]
mod cuda;
mod custom;
pub mod elementwise;
mod float;
mod forward;
#[cfg(feature = "cuda")]
pub mod gpu_check;
mod gradcheck;
pub mod id_hash;
pub mod kernels;
pub mod layers;
pub mod malloc;
pub mod pool;
pub mod tensor;
mod var;

pub use adam::{Adam, AdamConfig, AdamSnapshot};
pub use backward::Gradients;
pub use custom::CustomOp;
pub use float::Float;
pub use gradcheck::{gradcheck, GradcheckConfig, GradcheckReport, InputError, GRADCHECK_TOL_F64};
pub use tensor::{gpu_name, Device, Tensor};
pub use var::Var;
