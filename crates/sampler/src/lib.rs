//! latflow-sampler (filled by later work).
