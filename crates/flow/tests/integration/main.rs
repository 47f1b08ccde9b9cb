//! One test binary for the flows: each module below was its own `tests/*.rs` binary, and each
//! of those compiled (monomorphized and optimized) the generic flow and tensor code it used all over
//! again, which made the test build the longest step of CI. Run one module's tests with a
//! filter: `cargo test --release -p latflow-flow --test integration phi4_flow::`.
//! The CUDA tests (`cuda_fused_ops.rs`) stay a binary of their own: they need the `cuda` feature.

mod common;
mod u1_common;

mod any_size;
mod flow_hmc;
mod free_prior;
mod fused_affine_couple;
mod fused_ncp_mixture;
mod mixed_layers;
mod phi4_flow;
mod phi4_masks;
mod plaquette_map;
mod reproducible;
mod u1_flow;
mod u1_masks;
mod u1_ncp;
mod ultralocal;
mod z2_flow;
