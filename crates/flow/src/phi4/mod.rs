//! The tutorial's phi^4 flow (arXiv:2101.08176 section IV): a standard normal prior
//! ([`crate::prior::NormalPrior`]) and affine coupling layers with alternating
//! checkerboard masks.
//!
//! - [`masks`]: checkerboard masks.
//! - [`affine`]: the affine coupling layer (a [`crate::model::Layer`]).
//! - [`model`]: [`Phi4FlowConfig`], the architecture and its builder.
//!
//! Fields are `(N, L, L)`; checkpoint names follow the tutorial:
//! `{i}.net.{0,2,4}.{weight,bias}` and the mask buffer `{i}.mask`.

pub mod affine;
pub mod masks;
pub mod model;

pub use affine::AffineCoupling;
pub use model::Phi4FlowConfig;
