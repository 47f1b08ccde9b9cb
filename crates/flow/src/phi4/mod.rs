//! The tutorial's phi^4 flow (arXiv:2101.08176 section IV): a standard normal prior
//! ([`crate::prior::NormalPrior`]) and affine coupling layers with alternating
//! checkerboard masks.
//!
//! - [`masks`]: checkerboard masks.
//! - [`affine`]: the affine coupling layer (a [`crate::model::Layer`]).
//! - [`z2`]: the Z2-equivariant affine coupling (`f(-z) = -f(z)`), symmetrized or by architecture.
//! - [`model`]: [`Phi4FlowConfig`], the architecture and its builder (coupling kind, prior).
//!
//! Fields are `(N, L, L)`; checkpoint names follow the tutorial:
//! `{i}.net.{0,2,4}.{weight,bias}` and the mask buffer `{i}.mask`.

pub mod affine;
pub mod masks;
pub mod model;
pub mod z2;

pub use affine::AffineCoupling;
pub use model::{Coupling, Phi4FlowConfig, PriorKind};
pub use z2::{Z2Coupling, Z2Kind};
