//! CUDA kernels for latflow, through cudarc. Everything is behind this crate's own `cuda`
//! feature, which the `cuda` features of the tensor, physics and flow crates and of `latflow`
//! turn on: without it the crate is empty, so that `cargo test --workspace` does not compile
//! cudarc for a build that cannot use it.
#![cfg_attr(
    feature = "cuda",
    doc = r#"
f32 device buffers and one launcher per kernel. The `.cu` sources in `src/cu/` are embedded
with `include_str!`, compiled once per process with NVRTC (explicit options, no fast-math) for
the device's own architecture, and kept in one module.

Nothing here touches the driver before [`gpu`] is called, and [`gpu`] returns a clear
[`GpuError`] when the driver library, a device or NVRTC is missing (cudarc itself would panic:
its loader is probed first with `is_culib_present`).

The tensor crate (`latflow-tensor`, feature `cuda`) builds its device tensors on
[`DeviceBuf`] and dispatches its ops to the launchers in [`ops`]. Fused ops defined in other
crates (the flows' couplings, the U(1) plaquette) keep their `.cu` source next to their Rust
code and compile and launch it through [`module`].
"#
)]
#![cfg(feature = "cuda")]

use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

pub mod measure;
pub mod module;
pub mod ops;

/// The kernel sources, in the order they are concatenated into one NVRTC program.
pub const SOURCES: [(&str, &str); 5] = [
    ("common.cuh", include_str!("cu/common.cuh")),
    ("elementwise.cu", include_str!("cu/elementwise.cu")),
    ("layout.cu", include_str!("cu/layout.cu")),
    ("conv2d.cu", include_str!("cu/conv2d.cu")),
    ("ceilings.cu", include_str!("cu/ceilings.cu")),
];

/// Every kernel the module exports (checked at load time).
pub const KERNELS: [&str; 28] = [
    "unary_fwd",
    "unary_bwd",
    "binary_fwd",
    "binary_bwd",
    "mul_mask",
    "add_bias",
    "accumulate",
    "fill",
    "any_nonfinite",
    "adam_multi",
    "nonfinite_multi",
    "unnarrow",
    "reduce_rows_split",
    "reduce_axis_warp",
    "reduce_axis_block",
    "expand_axis",
    "roll_axis",
    "copy_block",
    "transpose_last2",
    "matmul_naive",
    "logsumexp_fwd",
    "logsumexp_bwd",
    "conv2d_fwd",
    "conv2d_bwd_input",
    "conv2d_bwd_weight_smem",
    "conv2d_bwd_weight_direct",
    "fma_peak",
    "copy_f32",
];

/// Why the GPU could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GpuError {
    /// libcuda (the driver) could not be loaded.
    NoDriver,
    /// libnvrtc could not be loaded.
    NoNvrtc,
    /// The driver loaded but reported no device, or creating a context failed.
    NoDevice(String),
    /// NVRTC rejected the sources (the log is included).
    Compile(String),
    /// Loading the module or a function failed.
    Load(String),
}

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuError::NoDriver => {
                write!(f, "no CUDA driver: libcuda.so could not be loaded (is an NVIDIA driver installed?)")
            }
            GpuError::NoNvrtc => {
                write!(f, "no NVRTC: libnvrtc.so could not be loaded (install the CUDA toolkit's nvrtc library)")
            }
            GpuError::NoDevice(e) => write!(f, "no usable CUDA device: {e}"),
            GpuError::Compile(log) => write!(f, "NVRTC could not compile latflow's kernels:\n{log}"),
            GpuError::Load(e) => write!(f, "could not load latflow's CUDA module: {e}"),
        }
    }
}

impl std::error::Error for GpuError {}

/// Kernels of one module by name.
type Kernels = HashMap<&'static str, CudaFunction>;

/// The process's GPU: context, the one stream every launch goes to, and the compiled kernels.
pub struct Gpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    funcs: HashMap<&'static str, CudaFunction>,
    /// conv2d kernels compiled for one shape each: (cin, cout, h, w, k) -> kernels.
    conv_modules: Mutex<HashMap<[usize; 5], Arc<Kernels>>>,
    name: String,
    arch: String,
}

/// The conv2d kernels (also compiled once per shape, with the dimensions as constants).
pub const CONV_KERNELS: [&str; 4] =
    ["conv2d_fwd", "conv2d_bwd_input", "conv2d_bwd_weight_smem", "conv2d_bwd_weight_direct"];

/// The conv2d kernels that exist only in the per-shape modules (shared-memory tiles sized
/// at compile time).
pub const TILED_CONV_KERNELS: [&str; 2] = ["conv2d_fwd_tiled", "conv2d_bwd_input_tiled"];

static SPECIALIZE: AtomicBool = AtomicBool::new(true);

/// Whether conv2d runs kernels compiled for its shape (default) or the generic ones that
/// take the dimensions at run time (tests check both; the bench compares them).
pub fn set_conv_specialization(on: bool) {
    SPECIALIZE.store(on, Ordering::Relaxed);
}

/// See [`set_conv_specialization`].
pub fn conv_specialization() -> bool {
    SPECIALIZE.load(Ordering::Relaxed)
}

static GPU: OnceLock<Result<Gpu, GpuError>> = OnceLock::new();

static POISON: AtomicBool = AtomicBool::new(false);

/// Tests: when on, every new uninitialized buffer is filled with NaN before it is handed
/// out, so a kernel that leaves an output element unwritten gives a NaN that fails the
/// comparison with the CPU reference.
pub fn set_poison(on: bool) {
    POISON.store(on, Ordering::Relaxed);
}

/// The GPU (device 0), set up on first use: context, stream, NVRTC compile, module load.
/// Later calls return the same one (or the same error).
pub fn gpu() -> Result<&'static Gpu, GpuError> {
    GPU.get_or_init(Gpu::init).as_ref().map_err(Clone::clone)
}

/// Whether a GPU can be used (driver, device and NVRTC all present).
pub fn available() -> bool {
    gpu().is_ok()
}

/// The NVRTC options latflow compiles with, for `arch` such as `sm_90`: C++17, IEEE
/// division and square root, no flush-to-zero, no fast-math; FMA contraction on (as
/// nvcc's default).
pub fn nvrtc_options(arch: &str) -> cudarc::nvrtc::CompileOptions {
    cudarc::nvrtc::CompileOptions {
        ftz: Some(false),
        prec_sqrt: Some(true),
        prec_div: Some(true),
        fmad: Some(true),
        use_fast_math: Some(false),
        options: vec![format!("--gpu-architecture={arch}"), "--std=c++17".into()],
        name: Some("latflow_kernels.cu".into()),
        ..Default::default()
    }
}

/// The sources as one NVRTC program.
pub fn program_source() -> String {
    SOURCES.iter().map(|(name, src)| format!("// ---- {name}\n{src}\n")).collect()
}

/// The embedded source named `name` (one of [`SOURCES`]).
pub(crate) fn source(name: &str) -> &'static str {
    SOURCES.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no kernel source {name}")).1
}

/// The conv2d kernels' program specialized for `[cin, cout, h, w, k]`: the dimensions as
/// `#define`s (which also enables the tiled kernels), then common.cuh and conv2d.cu.
pub fn conv_source(dims: [usize; 5]) -> String {
    let [cin, cout, h, w, k] = dims;
    format!(
        "// ---- common.cuh\n{}\n#define CONV_SPECIALIZED\n#define CONV_CIN {cin}\n#define CONV_COUT {cout}\n#define CONV_H {h}\n#define CONV_W {w}\n#define CONV_K {k}\n// ---- conv2d.cu\n{}",
        source("common.cuh"),
        source("conv2d.cu")
    )
}

/// Compiles the kernels to PTX with NVRTC for `arch` (no GPU needed, only libnvrtc).
pub fn compile_ptx(arch: &str) -> Result<cudarc::nvrtc::Ptx, GpuError> {
    compile_source(program_source(), arch)
}

/// Compiles one program to PTX with latflow's options ([`nvrtc_options`]) for `arch`.
pub fn compile_source(src: String, arch: &str) -> Result<cudarc::nvrtc::Ptx, GpuError> {
    // SAFETY: only probes whether the shared library can be loaded.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(GpuError::NoNvrtc);
    }
    cudarc::nvrtc::compile_ptx_with_opts(src, nvrtc_options(arch)).map_err(|e| GpuError::Compile(format!("{e:?}")))
}

/// The NVRTC version (major, minor) of the loaded libnvrtc.
pub fn nvrtc_version() -> Result<(i32, i32), GpuError> {
    // SAFETY: only probes whether the shared library can be loaded.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(GpuError::NoNvrtc);
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present; nvrtcVersion writes two ints.
    let r = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    if r != cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(GpuError::Compile(format!("nvrtcVersion: {r:?}")));
    }
    Ok((major, minor))
}

impl Gpu {
    fn init() -> Result<Gpu, GpuError> {
        // SAFETY: only probes whether the shared library can be loaded.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(GpuError::NoDriver);
        }
        let n = CudaContext::device_count().map_err(|e| GpuError::NoDevice(format!("{e:?}")))?;
        if n < 1 {
            return Err(GpuError::NoDevice("the driver reports 0 devices".into()));
        }
        let ctx = CudaContext::new(0).map_err(|e| GpuError::NoDevice(format!("{e:?}")))?;
        // One stream, so cudarc's per-buffer event tracking (two events per allocation)
        // is not needed.
        // SAFETY: called before any buffer exists; all work goes to one stream.
        unsafe { ctx.disable_event_tracking() };
        let (maj, min) = ctx.compute_capability().map_err(|e| GpuError::NoDevice(format!("{e:?}")))?;
        let arch = format!("sm_{maj}{min}");
        let name = ctx.name().unwrap_or_else(|_| "unknown".into());
        let ptx = compile_ptx(&arch)?;
        let module = ctx.load_module(ptx).map_err(|e| GpuError::Load(format!("{e:?}")))?;
        let mut funcs = HashMap::new();
        for k in KERNELS {
            let f = module.load_function(k).map_err(|e| GpuError::Load(format!("{k}: {e:?}")))?;
            funcs.insert(k, f);
        }
        let stream = ctx.default_stream();
        Ok(Gpu { ctx, stream, funcs, conv_modules: Mutex::new(HashMap::new()), name, arch })
    }

    /// The device's name (e.g. "NVIDIA H100 80GB HBM3").
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The architecture the kernels were compiled for (e.g. `sm_90`).
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// The stream all work is queued on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Waits for all queued work.
    ///
    /// # Panics
    /// If the device reports an error (a failed kernel).
    pub fn synchronize(&self) {
        self.stream.synchronize().unwrap_or_else(|e| panic!("CUDA error at synchronize: {e:?}"));
    }

    pub(crate) fn func(&self, name: &str) -> &CudaFunction {
        self.funcs.get(name).unwrap_or_else(|| panic!("latflow CUDA module has no kernel {name}"))
    }

    /// The conv kernel `name` for a shape `[cin, cout, h, w, k]`: compiled for that shape on
    /// first use (NVRTC, same options, dimensions as `#define`s) when specialization is on,
    /// else the generic one (the tiled kernels exist only specialized: callers check
    /// [`conv_specialization`] first).
    ///
    /// # Panics
    /// If NVRTC or the module load fails for the specialized source.
    pub(crate) fn conv_func(&self, name: &'static str, dims: [usize; 5]) -> CudaFunction {
        if !conv_specialization() {
            return self.func(name).clone();
        }
        let mut cache = self.conv_modules.lock().unwrap_or_else(|e| e.into_inner());
        let funcs = cache.entry(dims).or_insert_with(|| {
            let ptx = cudarc::nvrtc::compile_ptx_with_opts(conv_source(dims), nvrtc_options(&self.arch))
                .unwrap_or_else(|e| panic!("NVRTC could not compile the conv2d kernels for {dims:?}: {e:?}"));
            let module =
                self.ctx.load_module(ptx).unwrap_or_else(|e| panic!("loading conv2d kernels for {dims:?}: {e:?}"));
            Arc::new(
                CONV_KERNELS
                    .iter()
                    .chain(&TILED_CONV_KERNELS)
                    .map(|&kname| {
                        let f = module.load_function(kname).unwrap_or_else(|e| panic!("conv2d kernel {kname}: {e:?}"));
                        (kname, f)
                    })
                    .collect(),
            )
        });
        funcs[name].clone()
    }
}

/// An f32 buffer in device memory (stream-ordered allocation, freed when dropped).
pub struct DeviceBuf {
    slice: CudaSlice<f32>,
    len: usize,
}

impl fmt::Debug for DeviceBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceBuf({} f32)", self.len())
    }
}

/// Panics with the CUDA error and what was being done: a failed allocation, copy or
/// launch inside the engine cannot be recovered from.
#[track_caller]
pub(crate) fn check<T>(r: Result<T, cudarc::driver::DriverError>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("CUDA error in {what}: {e:?}"))
}

impl DeviceBuf {
    /// An uninitialized buffer of `len` floats (every kernel that takes one as output
    /// writes all of it).
    pub fn uninit(len: usize) -> DeviceBuf {
        let g = gpu().unwrap_or_else(|e| panic!("{e}"));
        // SAFETY: the contents are unspecified until a kernel writes them; callers only
        // pass uninit buffers as kernel outputs that are written entirely.
        let slice = check(unsafe { g.stream.alloc::<f32>(len.max(1)) }, "alloc");
        let mut b = DeviceBuf { slice, len };
        if POISON.load(Ordering::Relaxed) {
            ops::fill(&mut b, f32::NAN);
        }
        b
    }

    /// A buffer of zeros.
    pub fn zeros(len: usize) -> DeviceBuf {
        let mut b = DeviceBuf::uninit(len);
        ops::fill(&mut b, 0.0);
        b
    }

    /// A copy of host data.
    pub fn from_host(data: &[f32]) -> DeviceBuf {
        let g = gpu().unwrap_or_else(|e| panic!("{e}"));
        let mut b = DeviceBuf::uninit(data.len());
        if !data.is_empty() {
            check(g.stream.memcpy_htod(data, &mut b.slice.slice_mut(0..data.len())), "copy to device");
        }
        b
    }

    /// The data copied back to the host (waits for the stream).
    pub fn to_host(&self) -> Vec<f32> {
        let g = gpu().unwrap_or_else(|e| panic!("{e}"));
        let mut v = vec![0.0f32; self.len];
        if self.len > 0 {
            check(g.stream.memcpy_dtoh(&self.slice.slice(0..self.len), &mut v), "copy to host");
        }
        v
    }

    /// A device-side copy.
    pub fn duplicate(&self) -> DeviceBuf {
        let g = gpu().unwrap_or_else(|e| panic!("{e}"));
        let mut b = DeviceBuf::uninit(self.len);
        if self.len > 0 {
            check(
                g.stream.memcpy_dtod(&self.slice.slice(0..self.len), &mut b.slice.slice_mut(0..self.len)),
                "copy on device",
            );
        }
        b
    }

    /// The raw device address (for the pointer tables of multi-tensor kernels).
    pub(crate) fn device_ptr(&self) -> u64 {
        use cudarc::driver::DevicePtr;
        let g = gpu().unwrap_or_else(|e| panic!("{e}"));
        let (p, _sync) = self.slice.device_ptr(&g.stream);
        p
    }

    /// Number of floats.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no floats.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
