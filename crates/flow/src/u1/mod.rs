//! U(1) gauge-equivariant flows in two dimensions (arXiv:2101.08176 section V; Kanwar et
//! al. arXiv:2003.06413; NCP mixtures of Rezende et al. arXiv:2002.02428).
//!
//! - [`prior`]: uniform (Haar) link angles.
//! - [`masks`]: active-link and frozen / active / passive plaquette stripes.
//! - [`ncp`]: the NCP mixture on the circle, its numerical inverse, and the plaquette
//!   coupling.
//! - [`coupling`]: the gauge-equivariant link coupling (a [`crate::model::Layer`]).
//! - [`model`]: [`U1FlowConfig`] and the flow type, the Wilson action on the tape,
//!   topological charges of a batch.
//! - [`ultralocal`]: a flow of kernel-1 couplings as flow-HMC's latent map, without the tape.
//! - [`plaquette`]: every plaquette through one circle map with one global shift, the links
//!   rebuilt on a tree (flow-HMC's latent map, 2D).
//!
//! Links are `(N, 2, L, L)` angles (batch, mu, x, y); the plaquette is
//! `P_01(n) = theta_0(n) + theta_1(n + e0) - theta_0(n + e1) - theta_1(n)`.
//! Checkpoint names follow the tutorial: `{i}.plaq_coupling.net.{0,2,4}.{weight,bias}`.

pub mod coupling;
pub mod masks;
pub mod model;
pub mod ncp;
pub mod plaquette;
pub mod prior;
pub mod ultralocal;

pub use coupling::GaugeEquivCoupling;
pub use model::{topological_charges, U1FlowConfig, U1GaugeAction};
pub use ncp::NcpPlaqCoupling;
pub use plaquette::{CircleMixture, PlaquetteU1};
pub use prior::HaarPrior;
pub use ultralocal::UltralocalU1;
