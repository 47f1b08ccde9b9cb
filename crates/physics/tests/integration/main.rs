//! The physics crate's tests, one binary (the crate's `[lib] test = false`: no unit tests in
//! src/, so `cargo test` compiles the crate once; the root's tests/integration/layout.rs checks
//! that src/ stays free of tests).

mod lattice;
mod observables;
mod phi4;
mod u1;
mod u1_plaquette;
