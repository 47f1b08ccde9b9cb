//! latflow-sampler: Markov-chain samplers for the lattice actions of `latflow-physics`
//! and the statistics every result is judged with.
//!
//! - [`hmc`]: Hybrid Monte Carlo with a leapfrog integrator, one chain or many chains in
//!   parallel (rayon).
//! - [`stats`]: binning, bootstrap, jackknife, the Gamma method (Wolff 2004) for
//!   `tau_int`, tunnelling rate.

pub mod hmc;
pub mod stats;
