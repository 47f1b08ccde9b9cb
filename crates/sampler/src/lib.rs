//! latflow-sampler: Markov-chain samplers for the lattice actions of `latflow-physics`
//! and the statistics every result is judged with.
//!
//! - [`ensemble`]: what every sampler returns ([`ensemble::Ensemble`]: configurations, action,
//!   log q, the chain) and the flow-proposal sampler ([`ensemble::IndependenceSampler`]).
//! - [`flow_hmc`]: HMC on the latent field of a flow (arXiv:2112.01586): the map a flow
//!   must provide ([`flow_hmc::LatentMap`]), the potential `S(f(z)) - log|det J_f(z)|` and
//!   many chains through the map at once.
//! - [`hmc`]: Hybrid Monte Carlo with a leapfrog integrator, one chain or many chains in
//!   parallel (rayon).
//! - [`metropolis`]: independence Metropolis fed by flow proposals (exact sampling).
//! - [`reweight`]: self-normalized reweighting estimator with its error.
//! - [`stats`]: binning, bootstrap, jackknife, the Gamma method (Wolff 2004) for
//!   `tau_int` (also over series read again from disk), its tail correction for a known
//!   slow mode (Schaefer, Sommer, Virotta 2011), tunnelling rate.
//! - [`spool`]: per-configuration numbers in memory or a scratch file, read in order.
//! - [`tails`]: honest errors of independence Metropolis over flow proposals with a heavy
//!   weight tail, and the weight-tail diagnostic to print with every flow estimate.

pub mod ensemble;
pub mod flow_hmc;
pub mod hmc;
pub mod metropolis;
pub mod reweight;
pub mod spool;
pub mod stats;
pub mod tails;
