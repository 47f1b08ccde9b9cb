//! CUDA kernels for latflow through cudarc (filled by the CUDA issue).
