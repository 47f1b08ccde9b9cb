//! The flows' fused ops: lattice-specific kernels that live with the flows that use them,
//! not in the engine. Each is a [`latflow_tensor::CustomOp`] (forward on tensors,
//! dispatching to its CPU kernel or its CUDA module; backward as the chain rule),
//! recorded on the tape as one node by [`Var::apply_custom`]. One folder per op:
//!
//! - [`affine_couple`]: the affine coupling of the phi^4 flows and its log-Jacobian
//!   (`masked_channel_sum`).
//! - [`ncp_mixture`]: the U(1) flows' NCP mixture and its log-Jacobian.
//! - [`u1_stripe_update`]: the gauge-equivariant coupling's link update.
//! - [`audit`]: their gradient audit (`latflow audit` runs it after the engine's).
//!
//! The U(1) plaquette, which the physics crate's action uses too, lives there
//! (`latflow_physics::ops`, same layout) and is re-exported here ([`GaugeOps`]).
//!
//! Ops are methods on [`Var`] through the extension trait [`LatticeOps`]:
//! `use crate::ops::LatticeOps;` then `x.affine_couple(&st, &mask, false)`.
//!
//! # How to add a fused op: files to create
//!
//! For an op `foo` (see [`affine_couple`] for a complete one):
//!
//! 1. `ops/foo/mod.rs`: a struct holding the op's constant arguments and implementing
//!    [`CustomOp`](latflow_tensor::CustomOp): `forward` (`#[cfg(feature = "cuda")] if
//!    x.is_cuda() { return cuda::foo(..) }`, else the CPU kernel into a
//!    [`latflow_tensor::pool::buffer`]) and `backward`, starting with the derivative as a
//!    comment; a public `foo(x: &Var<T>, ..) -> Var<T>` that checks shapes (panic messages
//!    start with `foo:`) and calls [`Var::apply_custom`]; its docs. Its tests against the
//!    composed engine ops it replaces (bit for bit where the kernel keeps their order of
//!    operations) go in `tests/integration/fused_foo.rs` (this crate has no unit tests:
//!    `[lib] test = false`).
//! 2. `ops/foo/cpu.rs`: the CPU kernel on slices, with the formulas in its docs.
//! 3. `ops/foo/kernel.cu`: the CUDA kernels (`extern "C" __global__`, f32);
//!    `latflow-cuda-kernels`' `common.cuh` is prepended (`i64`, `GID`, `GSTRIDE`,
//!    `warp_sum`).
//! 4. `ops/foo/cuda.rs` (feature `cuda`): a
//!    `static MODULE: CudaModule = CudaModule::new("foo", include_str!("kernel.cu"), &[kernels])`
//!    (compiled by NVRTC once per process, on first use), one launcher per kernel that
//!    asserts the buffer lengths and launches with a `// SAFETY:` comment naming the
//!    kernel's signature, and `pub(crate) fn module()`.
//! 5. Here: `pub mod foo;`, a method on [`LatticeOps`], the module in `cuda_modules()`
//!    (the NVRTC compile test in CI, `tests/nvrtc.rs`), and a case in [`audit`].
//! 6. `tests/cuda_fused_ops.rs`: the op on the GPU against the CPU (runs with `--features cuda`
//!    on a machine with a GPU; fails without one).

pub mod affine_couple;
pub mod audit;
pub mod ncp_mixture;
pub mod u1_stripe_update;

pub use latflow_physics::ops::GaugeOps;
use latflow_tensor::{Float, Tensor, Var};

/// The flows' fused ops as methods on [`Var`].
pub trait LatticeOps<T: Float> {
    /// [`affine_couple::affine_couple`]: `self` is `x (N, S...)`, `st (N, 2, S...)`,
    /// `mask (S...)` (1 = frozen); `reverse` runs the inverse.
    fn affine_couple(&self, st: &Var<T>, mask: &Tensor<T>, reverse: bool) -> Var<T>;
    /// [`affine_couple::masked_channel_sum`]: `sum_p m[p] self[n, channel, p]`, shape `(N,)`.
    fn masked_channel_sum(&self, channel: usize, mask: &Tensor<T>) -> Var<T>;
    /// [`ncp_mixture::ncp_mixture`]: the NCP mixture of `self = x (N, S...)` with scales
    /// `s (N, n, S...)` and offset `t (N, S...)`.
    fn ncp_mixture(&self, s: &Var<T>, t: &Var<T>) -> Var<T>;
    /// [`ncp_mixture::ncp_log_jacobian`]: its `log|det J|` per sample, shape `(N,)`.
    fn ncp_log_jacobian(&self, s: &Var<T>) -> Var<T>;
    /// [`u1_stripe_update::u1_stripe_update`]: the gauge-equivariant coupling's update of
    /// links `self (N, 2, H, W)` on the stripe of direction `mu`, offset `off`.
    fn u1_stripe_update(&self, ya: &Var<T>, xa: &Var<T>, mu: usize, off: usize) -> Var<T>;
}

impl<T: Float> LatticeOps<T> for Var<T> {
    #[track_caller]
    fn affine_couple(&self, st: &Var<T>, mask: &Tensor<T>, reverse: bool) -> Var<T> {
        affine_couple::affine_couple(self, st, mask, reverse)
    }
    #[track_caller]
    fn masked_channel_sum(&self, channel: usize, mask: &Tensor<T>) -> Var<T> {
        affine_couple::masked_channel_sum(self, channel, mask)
    }
    #[track_caller]
    fn ncp_mixture(&self, s: &Var<T>, t: &Var<T>) -> Var<T> {
        ncp_mixture::ncp_mixture(self, s, t)
    }
    #[track_caller]
    fn ncp_log_jacobian(&self, s: &Var<T>) -> Var<T> {
        ncp_mixture::ncp_log_jacobian(self, s)
    }
    #[track_caller]
    fn u1_stripe_update(&self, ya: &Var<T>, xa: &Var<T>, mu: usize, off: usize) -> Var<T> {
        u1_stripe_update::u1_stripe_update(self, ya, xa, mu, off)
    }
}

/// The CUDA modules of the flows' fused ops and of the physics crate's
/// (`latflow_physics::ops::cuda_modules`): what the NVRTC compile test compiles.
#[cfg(feature = "cuda")]
pub fn cuda_modules() -> Vec<&'static latflow_cuda_kernels::module::CudaModule> {
    let mut v = vec![affine_couple::cuda_module(), ncp_mixture::cuda_module(), u1_stripe_update::cuda_module()];
    v.extend(latflow_physics::ops::cuda_modules());
    v
}
