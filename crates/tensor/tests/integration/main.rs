//! One test binary for the engine: each module below was its own `tests/*.rs` binary, and each
//! of those compiled (monomorphized and optimized) the generic tensor code it used all over
//! again, which made the test build the longest step of CI. Run one module's tests with a
//! filter: `cargo test --release -p latflow-tensor --test integration conv2d_kernels::`.
//! The CUDA tests (`cuda_ops.rs`) stay a binary of their own: they need the `cuda` feature.

#[macro_use]
mod cases;

mod bad_input;
mod conv2d_kernels;
mod conv2d_properties;
mod conv_stack;
mod cos_sin;
mod module_graph;
mod ops_gradcheck;
mod pytorch_values;
mod smoke;
mod vjp;
