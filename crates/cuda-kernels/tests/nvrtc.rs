//! The NVRTC compile check of the engine's CUDA module (feature `cuda`; needs only libnvrtc,
//! no GPU). CI runs it (`.ci/run`) with a pip-installed libnvrtc:
//! `LD_LIBRARY_PATH=/path/to/nvrtc cargo test -p latflow-cuda-kernels --features cuda --test nvrtc -- --ignored`.
//! The fused ops' modules and the flows' conv shapes: `crates/flow/tests/nvrtc.rs`.
#![cfg(feature = "cuda")]

use latflow_cuda_kernels as k;

/// Compiles the kernels with NVRTC for the H100 (sm_90); ignored by default.
#[test]
#[ignore = "needs libnvrtc"]
fn kernels_compile_with_nvrtc() {
    let (major, minor) = k::nvrtc_version().unwrap_or_else(|e| panic!("{e}"));
    println!("NVRTC {major}.{minor}");
    let ptx = k::compile_ptx("sm_90").unwrap_or_else(|e| panic!("{e}"));
    let src = ptx.to_src();
    for name in k::KERNELS {
        assert!(src.contains(&format!(".entry {name}(")), "kernel {name} missing from the PTX");
    }
    // the conv kernels specialized for a shape (what Gpu::conv_func compiles)
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(k::conv_source([8, 2, 8, 8, 3]), k::nvrtc_options("sm_90"))
        .expect("specialized conv compiles");
    for name in k::CONV_KERNELS.iter().chain(&k::TILED_CONV_KERNELS) {
        assert!(ptx.to_src().contains(&format!(".entry {name}(")), "specialized kernel {name} missing");
    }
}
