//! The sampler crate's tests, one binary (the crate's `[lib] test = false`: no unit tests in
//! src/, so `cargo test` compiles the crate once; the root's tests/integration/layout.rs checks
//! that src/ stays free of tests). Run one module's tests with a filter:
//! `cargo test --release -p latflow-sampler --test integration stats::`.

mod ensemble;
mod flow_hmc;
mod hmc;
mod hmc_physics;
mod metropolis;
mod reweight;
mod spool;
mod stats;
mod tails;
