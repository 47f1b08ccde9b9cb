//! latflow: normalizing flows for lattice field theory. A facade over the workspace crates,
//! plus the command line ([`cli`]), which is generic over the theories of
//! [`latflow_theory`] so that a program or a test can run every command on a theory of its
//! own.

pub mod cli;

pub use latflow_comm as comm;
/// The CUDA kernels and their launchers (feature `cuda`).
#[cfg(feature = "cuda")]
pub use latflow_cuda_kernels as cuda_kernels;
pub use latflow_flow as flow;
pub use latflow_io as io;
pub use latflow_physics as physics;
pub use latflow_sampler as sampler;
pub use latflow_tensor as tensor;
pub use latflow_theory as theory;
