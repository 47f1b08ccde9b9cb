//! The NVRTC compile check of every CUDA kernel the flows use (feature `cuda`; needs only
//! libnvrtc, no GPU). CI runs it (`.ci/run`) with a pip-installed libnvrtc:
//! `cargo test -p latflow-flow --features cuda --test nvrtc -- --ignored`.
#![cfg(feature = "cuda")]

/// The conv shapes `[cin, cout, h, w, k]` the flows run on the GPU (per-shape modules
/// of `latflow-cuda-kernels`): phi^4 nets 1->8, 8->8, 8->2 and U(1) nets 2->8, 8->8,
/// 8->3 on 8x8 with k = 3.
const FLOW_CONV_SHAPES: [[usize; 5]; 5] =
    [[1, 8, 8, 8, 3], [8, 8, 8, 8, 3], [8, 2, 8, 8, 3], [2, 8, 8, 8, 3], [8, 3, 8, 8, 3]];

/// Compiles every fused op's CUDA module, and the conv kernels specialized for the
/// flows' shapes, with NVRTC for sm_90. Needs only libnvrtc, no GPU; ignored by default
/// (CI runs it with a pip-installed libnvrtc: `.ci/run`).
#[test]
#[ignore = "needs libnvrtc"]
fn kernels_compile_with_nvrtc() {
    use latflow_cuda_kernels as k;
    let (major, minor) = k::nvrtc_version().unwrap_or_else(|e| panic!("{e}"));
    println!("NVRTC {major}.{minor}");
    // one thread per program (NVRTC compiles independent programs concurrently): the check
    // takes about half the time on CI's 2 cores
    std::thread::scope(|scope| {
        for m in latflow_flow::ops::cuda_modules() {
            scope.spawn(move || {
                m.compile_ptx("sm_90").unwrap_or_else(|e| panic!("module {}: {e}", m.name()));
                println!("compiled module {} ({} kernels)", m.name(), m.kernels().len());
            });
        }
        for dims in FLOW_CONV_SHAPES {
            scope.spawn(move || {
                let ptx =
                    k::compile_source(k::conv_source(dims), "sm_90").unwrap_or_else(|e| panic!("conv {dims:?}: {e}"));
                for name in k::CONV_KERNELS.iter().chain(&k::TILED_CONV_KERNELS) {
                    assert!(ptx.to_src().contains(&format!(".entry {name}(")), "conv {dims:?}: kernel {name} missing");
                }
                println!("compiled conv kernels for {dims:?}");
            });
        }
    });
}
