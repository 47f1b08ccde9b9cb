//! Normalizing flows for lattice fields (arXiv:2101.08176, Albergo et al.).
//!
//! - [`prior`]: the base distributions r(z) ([`prior::Prior`], the standard normal, the free field).
//! - [`model`]: a flow = prior + layers of any kinds ([`model::Layer`]), sampling and density.
//! - [`net`]: circular conv nets (Conv2d, LeakyReLU, ..., optional final tanh).
//! - [`phi4`]: the phi^4 flow: checkerboard masks, the affine coupling, its architecture.
//! - [`u1`]: the U(1) flow: Haar prior, stripe masks, NCP mixtures, gauge-equivariant couplings.
//! - [`train`]: reverse-KL self-training with Adam, metrics, ESS.
//! - [`ops`]: the flows' fused ops (affine coupling, NCP mixture, stripe update), one
//!   folder per op, defined outside the engine.
//! - [`checkpoint`]: models to and from safetensors files (PyTorch `state_dict` names).
//! - [`latent`]: a flow as the latent map of flow-HMC (`latflow_sampler::flow_hmc`): `x = f(z)`,
//!   `log|det J|` and the input-only vector-Jacobian product of the force.
//! - [`proposals`]: a flow as the proposal source of the sampler crate's ensembles.
//! - [`z2`]: a flow's Z2 mixture `(q(phi) + q(-phi)) / 2` as a proposal source, and its
//!   density on the tape for training.
//!
//! How the crates fit together: `docs/architecture.md`.

pub mod checkpoint;
pub mod latent;
pub mod model;
pub mod net;
pub mod ops;
pub mod phi4;
pub mod prior;
pub mod proposals;
pub mod train;
pub mod u1;
pub mod z2;
