//! latflow-physics: lattice geometry, the phi^4 and U(1) gauge actions with analytic
//! forces, observables, gauge transformations and the topological charge.
//!
//! Conventions are those of "Introduction to Normalizing Flows for Lattice Field
//! Theory" (Albergo et al., arXiv:2101.08176) and its PyTorch code:
//! - [`Lattice`]: periodic, any `Nd`, sites row-major (last axis fastest), so one
//!   configuration is one contiguous slice of a `(N, L_0, ..., L_{Nd-1})` tensor.
//! - [`Phi4`]: `S = sum_n [ phi(n) sum_mu (2 phi(n) - phi(n+mu) - phi(n-mu)) + M2 phi(n)^2 + lam phi(n)^4 ]`.
//! - [`U1`]: links `theta_mu(n)` laid out `(mu, x, y, ...)`, `S = -beta sum_n sum_{mu<nu} cos P_{mu nu}(n)`.
//!
//! Every action implements [`Action`] on `f64` slices (the HMC hot path, with the
//! analytic force `dS/dx` into a caller-owned buffer) and has a tensor form
//! ([`phi4_action_var`], [`u1_action_var`]) for training with the autodiff engine.
//!
//! ```
//! use latflow_physics::{Action, Lattice, Phi4};
//! let s = Phi4::new(Lattice::new(&[8, 8]), -4.0, 8.0);
//! let phi = vec![0.1; 64];
//! let mut f = vec![0.0; 64];
//! s.force(&phi, &mut f); // dS/dphi = 2 M2 phi + 4 lam phi^3 for a constant field
//! assert!((f[0] - (2.0 * -4.0 * 0.1 + 4.0 * 8.0 * 0.001)).abs() < 1e-12);
//! ```

mod action;
pub mod lattice;
pub mod observables;
pub mod ops;
pub mod phi4;
pub mod u1;

pub use action::Action;
pub use lattice::Lattice;
pub use phi4::{phi4_action_var, Phi4};
pub use u1::{u1_action_var, u1_plaquette_var, U1};
