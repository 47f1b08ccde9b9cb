//! One test binary for the `latflow` command line and library: each module below was its own
//! `tests/*.rs` binary, and each of those compiled (monomorphized and optimized) the generic
//! flow and tensor code it used all over again, which made the test build the longest step of
//! CI. Run one module's tests with a filter: `cargo test --release --test integration cli_safety::`.
//! `cuda_train.rs` and `mpi.rs` stay binaries of their own: they need the `cuda` and `mpi`
//! features (CI runs `--test mpi` under `mpirun`).

mod common;

mod checkpoint_compat;
mod checkpoint_fuzz;
mod cli_any_size;
mod cli_fhmc;
mod cli_phi4;
mod cli_safety;
mod cli_theories;
mod ensembles;
mod layout;
mod symmetries;
mod toy_theory;
