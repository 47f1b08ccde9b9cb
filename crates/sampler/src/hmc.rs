//! HMC (in progress).
