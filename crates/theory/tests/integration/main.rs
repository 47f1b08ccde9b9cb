//! The theories' tests, one binary (the crate's `[lib] test = false`: no unit tests in src/, so
//! `cargo test` compiles the crate once; the root's tests/integration/layout.rs checks that
//! src/ stays free of tests).

mod params;
mod phi4;
