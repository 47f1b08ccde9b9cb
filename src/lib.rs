//! latflow: normalizing flows for lattice field theory (facade over the workspace crates).

/// The CUDA kernels and their launchers (feature `cuda`).
#[cfg(feature = "cuda")]
pub use latflow_cuda_kernels as cuda_kernels;
pub use latflow_flow as flow;
pub use latflow_physics as physics;
pub use latflow_sampler as sampler;
pub use latflow_tensor as tensor;
