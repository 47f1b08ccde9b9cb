//! The physics crate's fused ops, defined outside the engine through
//! [`latflow_tensor::CustomOp`], one folder per op (the layout of `latflow_flow::ops`,
//! whose docs say how to add one):
//!
//! - [`u1_plaquette`]: the plaquette of the (0, 1) plane of 2D U(1) links (used by
//!   [`crate::u1_plaquette_var`]; here and not in the flow crate because physics must not
//!   depend on the flows).
//! - [`audit`]: their gradient audit (`latflow audit` runs it after the engine's).
//!
//! Ops are methods on [`Var`] through the extension trait [`GaugeOps`]:
//! `use latflow_physics::ops::GaugeOps;` then `links.u1_plaquette01()`.

pub mod audit;
pub mod u1_plaquette;

use latflow_tensor::{Float, Var};

/// The physics crate's fused ops as methods on [`Var`].
pub trait GaugeOps<T: Float> {
    /// [`u1_plaquette::u1_plaquette01`]: the (0, 1) plaquette of links `(N, 2, H, W)`.
    fn u1_plaquette01(&self) -> Var<T>;
}

impl<T: Float> GaugeOps<T> for Var<T> {
    #[track_caller]
    fn u1_plaquette01(&self) -> Var<T> {
        u1_plaquette::u1_plaquette01(self)
    }
}

/// The CUDA modules of these ops (the NVRTC compile test in CI compiles each).
#[cfg(feature = "cuda")]
pub fn cuda_modules() -> Vec<&'static latflow_cuda_kernels::module::CudaModule> {
    vec![u1_plaquette::cuda_module()]
}
