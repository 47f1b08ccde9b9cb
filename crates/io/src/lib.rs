//! latflow-io: the file formats latflow reads and writes, with no dependency beyond `std`.
//!
//! - [`safetensors`]: the safetensors format, read as untrusted input and written atomically
//!   (checkpoints, `apply` inputs and outputs).
//! - [`csv`]: small CSV tables (training history, summaries, HMC observables).
//! - [`plot`]: SVG line, scatter and heat-map plots.
//! - [`ensemble`]: ensembles of configurations in chunked safetensors files.
//! - [`digest`]: SHA-256 of files (the checkpoint an ensemble came from).
//!
//! Nothing here knows lattices or flows: the flow crate maps models to tensors, the theories
//! choose what to plot.

pub mod csv;
pub mod digest;
pub mod ensemble;
pub mod plot;
pub mod safetensors;
