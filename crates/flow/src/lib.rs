//! Normalizing flows for lattice fields (arXiv:2101.08176, Albergo et al.).
//!
//! - [`prior`]: the base distributions r(z) (normal for phi^4, uniform/Haar for U(1)).
//! - [`masks`]: checkerboard masks for affine couplings.
//! - [`net`]: circular conv nets (Conv2d, LeakyReLU, ..., optional final tanh).
//! - [`affine`]: the affine coupling layer of the tutorial (section IV).
//! - [`model`]: a flow = prior + stack of coupling layers, sampling and density.
//! - [`train`]: reverse-KL self-training with Adam, metrics, ESS.
//! - [`ops`]: the flows' fused ops (affine coupling, NCP mixture, stripe update), one
//!   folder per op, defined outside the engine.

pub mod affine;
pub mod checkpoint;
pub mod masks;
pub mod model;
pub mod net;
pub mod ops;
pub mod phi4;
pub mod plot;
pub mod prior;
pub mod safetensors;
pub mod train;
pub mod u1;
