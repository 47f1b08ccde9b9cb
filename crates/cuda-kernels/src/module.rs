//! Kernel modules defined outside this crate: a fused op of another crate (the flows'
//! couplings, the U(1) plaquette) keeps its `.cu` source next to its Rust code and
//! declares it here as a [`CudaModule`] static. The module is compiled with NVRTC (the
//! same options as latflow's own kernels, `common.cuh` prepended) the first time one of
//! its kernels is asked for, and kept for the life of the process; launches go to the one
//! stream through [`Launch`], which counts them like every launch of this crate.
//!
//! ```no_run
//! use latflow_cuda_kernels::{module::CudaModule, DeviceBuf};
//! static SCALE: CudaModule = CudaModule::new(
//!     "example_scale",
//!     r#"extern "C" __global__ void scale(const float* x, float* y, i64 n, float c) {
//!         for (i64 i = GID; i < n; i += GSTRIDE) y[i] = c * x[i];
//!     }"#,
//!     &["scale"],
//! );
//! let x = DeviceBuf::from_host(&[1.0, 2.0]);
//! let mut y = DeviceBuf::uninit(2);
//! let (n, c) = (2i64, 3.0f32);
//! // SAFETY: `scale` takes (const float*, float*, i64, float); both buffers hold n floats.
//! unsafe { SCALE.launch("scale").input(&x).output(&mut y).scalar(&n).scalar(&c).grid_stride(2) };
//! assert_eq!(y.to_host(), [3.0, 6.0]);
//! ```

use crate::ops::{cfg_1d, launch, BLOCK};
use crate::{gpu, source, DeviceBuf, GpuError};
use cudarc::driver::{CudaFunction, LaunchArgs, PushKernelArg};
use std::collections::HashMap;
use std::sync::OnceLock;

pub use cudarc::driver::{DeviceRepr, LaunchConfig};

/// A kernel module declared by another crate: its name (the key it is cached and reported
/// under), its CUDA source (`common.cuh`'s helpers `i64`, `GID`, `GSTRIDE`, `warp_sum`, ...
/// are available) and the kernels it exports. Declare it as a `static`: it compiles once
/// per process, on first use.
pub struct CudaModule {
    name: &'static str,
    source: &'static str,
    kernels: &'static [&'static str],
    compiled: OnceLock<HashMap<&'static str, CudaFunction>>,
}

impl CudaModule {
    /// A module named `name` (unique per process) from `source`, exporting `kernels`.
    pub const fn new(name: &'static str, source: &'static str, kernels: &'static [&'static str]) -> Self {
        CudaModule { name, source, kernels, compiled: OnceLock::new() }
    }

    /// The module's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The kernels the module exports.
    pub fn kernels(&self) -> &'static [&'static str] {
        self.kernels
    }

    /// The NVRTC program: `common.cuh`, then the module's source.
    pub fn program_source(&self) -> String {
        format!("// ---- common.cuh\n{}\n// ---- {}\n{}\n", source("common.cuh"), self.name, self.source)
    }

    /// Compiles the module to PTX for `arch` (e.g. `sm_90`) and checks that every kernel
    /// it declares is in it. Needs only libnvrtc, no GPU (CI runs it).
    pub fn compile_ptx(&self, arch: &str) -> Result<cudarc::nvrtc::Ptx, GpuError> {
        let ptx = crate::compile_source(self.program_source(), arch)?;
        let src = ptx.to_src();
        for k in self.kernels {
            if !src.contains(&format!(".entry {k}(")) {
                return Err(GpuError::Load(format!("module {}: kernel {k} missing from the PTX", self.name)));
            }
        }
        Ok(ptx)
    }

    /// The kernel `name`, compiling and loading the module on first use.
    ///
    /// # Panics
    /// If there is no GPU, NVRTC or the module load fails, or the module has no such kernel.
    pub fn function(&self, name: &str) -> &CudaFunction {
        let funcs = self.compiled.get_or_init(|| {
            let g = gpu().unwrap_or_else(|e| panic!("{e}"));
            let ptx = self.compile_ptx(g.arch()).unwrap_or_else(|e| panic!("CUDA module {}: {e}", self.name));
            let module =
                g.context().load_module(ptx).unwrap_or_else(|e| panic!("loading CUDA module {}: {e:?}", self.name));
            self.kernels
                .iter()
                .map(|&k| {
                    let f = module
                        .load_function(k)
                        .unwrap_or_else(|e| panic!("CUDA module {}: kernel {k}: {e:?}", self.name));
                    (k, f)
                })
                .collect()
        });
        funcs.get(name).unwrap_or_else(|| panic!("CUDA module {} has no kernel {name}", self.name))
    }

    /// A launch of kernel `name` on the stream: push its arguments in the order of its
    /// signature, then pick the grid ([`Launch::grid_stride`], [`Launch::warp_per_item`],
    /// [`Launch::config`]).
    ///
    /// # Panics
    /// As [`CudaModule::function`].
    pub fn launch(&self, name: &'static str) -> Launch<'_> {
        let g = gpu().unwrap_or_else(|e| panic!("{e}"));
        Launch { args: g.stream().launch_builder(self.function(name)), name }
    }
}

/// The arguments of one kernel launch, pushed in the order of the kernel's signature.
pub struct Launch<'a> {
    args: LaunchArgs<'a>,
    name: &'static str,
}

impl<'a> Launch<'a> {
    /// A device buffer the kernel reads (`const float*`).
    pub fn input(mut self, b: &'a DeviceBuf) -> Self {
        self.args.arg(&b.slice);
        self
    }

    /// A device buffer the kernel writes (`float*`).
    pub fn output(mut self, b: &'a mut DeviceBuf) -> Self {
        self.args.arg(&mut b.slice);
        self
    }

    /// A scalar argument of the kernel's C type (`i64` for `long long`, `i32` for `int`,
    /// `f32` for `float`).
    pub fn scalar<S: DeviceRepr>(mut self, v: &'a S) -> Self {
        self.args.arg(v);
        self
    }

    /// Launches a grid-stride kernel over `n` items (256 threads per block).
    ///
    /// # Safety
    /// As [`Launch::config`].
    pub unsafe fn grid_stride(self, n: usize) {
        // SAFETY: the caller's contract.
        unsafe { self.config(cfg_1d(n)) }
    }

    /// Launches one warp per item for `n` items (256 threads per block).
    ///
    /// # Safety
    /// As [`Launch::config`].
    pub unsafe fn warp_per_item(self, n: usize) {
        let blocks = (n as u64 * 32).div_ceil(BLOCK as u64).max(1) as u32;
        // SAFETY: the caller's contract.
        unsafe { self.config(LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }) }
    }

    /// Launches with an explicit grid. A launch error panics.
    ///
    /// # Safety
    /// The pushed arguments must be exactly those of the kernel's signature, in order and
    /// of its types, and the grid together with the buffers' lengths must keep every index
    /// the kernel computes inside its buffers (assert the lengths before launching).
    pub unsafe fn config(self, cfg: LaunchConfig) {
        launch(self.args, cfg, self.name);
    }
}
