//! One launcher per kernel. Shapes are passed as the `(outer, n, inner)` view around an
//! axis, as the CPU kernels see them. Launchers queue work on the stream and return at
//! once; a launch error panics (inside the engine it cannot be recovered from).
//!
//! Op codes are those of `latflow_tensor::elementwise::{Unary, Binary}` (the tensor crate
//! maps its enums to them).

use crate::{check, gpu, DeviceBuf, Gpu};
use cudarc::driver::{LaunchArgs, LaunchConfig, PushKernelArg};

/// Threads per block of the 1-D kernels.
pub(crate) const BLOCK: u32 = 256;
/// Most blocks of a grid-stride launch (enough to fill any current GPU many times over).
const MAX_BLOCKS: u64 = 16384;
/// Output channels per thread of the conv kernels (`CONV_TILE` in conv2d.cu).
const CONV_TILE: usize = 8;
/// Static shared memory every block may use without opting in.
const SMEM_LIMIT: usize = 48 * 1024;

fn g() -> &'static Gpu {
    gpu().unwrap_or_else(|e| panic!("{e}"))
}

/// A grid-stride launch over `n` elements.
pub(crate) fn cfg_1d(n: usize) -> LaunchConfig {
    let blocks = (n as u64).div_ceil(BLOCK as u64).clamp(1, MAX_BLOCKS) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

static LAUNCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Kernels launched so far by this process (the benches report launches per step).
pub fn launch_count() -> u64 {
    LAUNCHES.load(std::sync::atomic::Ordering::Relaxed)
}

pub(crate) fn launch(mut args: LaunchArgs<'_>, cfg: LaunchConfig, what: &str) {
    LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: every launcher below pushes exactly the arguments of its kernel's signature
    // in order (pointers to live device buffers, scalars of the kernel's types), and sizes
    // the grid so that indices stay inside the buffers' lengths, checked by its asserts.
    check(unsafe { args.launch(cfg) }, what);
}

#[track_caller]
fn assert_len(what: &str, buf: &DeviceBuf, len: usize) {
    assert!(buf.len() >= len, "{what}: device buffer holds {} floats, needs {len}", buf.len());
}

/// A null device pointer, for optional buffer arguments.
const NULL: u64 = 0;

/// `y = v` everywhere.
pub fn fill(y: &mut DeviceBuf, v: f32) {
    let len = y.len();
    let n = len as i64;
    let g = g();
    let mut a = g.stream.launch_builder(g.func("fill"));
    a.arg(&mut y.slice).arg(&n).arg(&v);
    launch(a, cfg_1d(len), "fill");
}

/// `y = f(x)` for unary op code `op` with parameter `p`.
pub fn unary_fwd(x: &DeviceBuf, y: &mut DeviceBuf, op: i32, p: f32) {
    assert_len("unary_fwd", y, x.len());
    let n = x.len() as i64;
    let g = g();
    let mut a = g.stream.launch_builder(g.func("unary_fwd"));
    a.arg(&x.slice).arg(&mut y.slice).arg(&n).arg(&op).arg(&p);
    launch(a, cfg_1d(x.len()), "unary_fwd");
}

/// `dx = g f'(x)` with `f'` from `x` and `y = f(x)`.
pub fn unary_bwd(x: &DeviceBuf, y: &DeviceBuf, gr: &DeviceBuf, dx: &mut DeviceBuf, op: i32, p: f32) {
    let n = x.len();
    assert_len("unary_bwd", y, n);
    assert_len("unary_bwd", gr, n);
    assert_len("unary_bwd", dx, n);
    let ni = n as i64;
    let g = g();
    let mut a = g.stream.launch_builder(g.func("unary_bwd"));
    a.arg(&x.slice).arg(&y.slice).arg(&gr.slice).arg(&mut dx.slice).arg(&ni).arg(&op).arg(&p);
    launch(a, cfg_1d(n), "unary_bwd");
}

/// `y = a op b` elementwise (op: 0 add, 1 sub, 2 mul, 3 div).
pub fn binary_fwd(x: &DeviceBuf, z: &DeviceBuf, y: &mut DeviceBuf, op: i32) {
    let n = x.len();
    assert_len("binary_fwd", z, n);
    assert_len("binary_fwd", y, n);
    let ni = n as i64;
    let g = g();
    let mut a = g.stream.launch_builder(g.func("binary_fwd"));
    a.arg(&x.slice).arg(&z.slice).arg(&mut y.slice).arg(&ni).arg(&op);
    launch(a, cfg_1d(n), "binary_fwd");
}

/// Gradients of `a op b` with respect to `a` and/or `b` (either may be `None`).
pub fn binary_bwd(
    x: &DeviceBuf,
    z: &DeviceBuf,
    gr: &DeviceBuf,
    da: Option<&mut DeviceBuf>,
    db: Option<&mut DeviceBuf>,
    op: i32,
) {
    let n = x.len();
    assert_len("binary_bwd", z, n);
    assert_len("binary_bwd", gr, n);
    let ni = n as i64;
    let g = g();
    let mut a = g.stream.launch_builder(g.func("binary_bwd"));
    a.arg(&x.slice).arg(&z.slice).arg(&gr.slice);
    match da {
        Some(d) => {
            assert_len("binary_bwd", d, n);
            a.arg(&mut d.slice)
        }
        None => a.arg(&NULL),
    };
    match db {
        Some(d) => {
            assert_len("binary_bwd", d, n);
            a.arg(&mut d.slice)
        }
        None => a.arg(&NULL),
    };
    a.arg(&ni).arg(&op);
    launch(a, cfg_1d(n), "binary_bwd");
}

/// `y = x * m` with `m` repeated over `x` (`x.len()` a multiple of `m.len()`).
pub fn mul_mask(x: &DeviceBuf, m: &DeviceBuf, y: &mut DeviceBuf) {
    let n = x.len();
    assert!(
        !m.is_empty() && n.is_multiple_of(m.len()),
        "mul_mask: {} elements are not a multiple of the mask's {}",
        n,
        m.len()
    );
    assert_len("mul_mask", y, n);
    let (ni, mi) = (n as i64, m.len() as i64);
    let g = g();
    let mut a = g.stream.launch_builder(g.func("mul_mask"));
    a.arg(&x.slice).arg(&m.slice).arg(&mut y.slice).arg(&ni).arg(&mi);
    launch(a, cfg_1d(n), "mul_mask");
}

/// `y = x + b[c]` for `x` viewed as `(outer, c, inner)`.
pub fn add_bias(x: &DeviceBuf, b: &DeviceBuf, y: &mut DeviceBuf, inner: usize) {
    let n = x.len();
    let c = b.len();
    assert!(
        c > 0 && inner > 0 && n.is_multiple_of(c * inner),
        "add_bias: {n} elements do not split as (.., {c}, {inner})"
    );
    assert_len("add_bias", y, n);
    let (ni, ii, ci) = (n as i64, inner as i64, c as i32);
    let g = g();
    let mut a = g.stream.launch_builder(g.func("add_bias"));
    a.arg(&x.slice).arg(&b.slice).arg(&mut y.slice).arg(&ni).arg(&ii).arg(&ci);
    launch(a, cfg_1d(n), "add_bias");
}

/// `acc += x`.
pub fn accumulate(acc: &mut DeviceBuf, x: &DeviceBuf) {
    let n = acc.len();
    assert_len("accumulate", x, n);
    let ni = n as i64;
    let g = g();
    let mut a = g.stream.launch_builder(g.func("accumulate"));
    a.arg(&mut acc.slice).arg(&x.slice).arg(&ni);
    launch(a, cfg_1d(n), "accumulate");
}

/// Whether every element is finite (waits for the stream: one 4-byte copy back).
pub fn all_finite(x: &DeviceBuf) -> bool {
    let g = g();
    let mut flag = check(g.stream.alloc_zeros::<u32>(1), "alloc");
    let ni = x.len() as i64;
    let mut a = g.stream.launch_builder(g.func("any_nonfinite"));
    a.arg(&x.slice).arg(&ni).arg(&mut flag);
    launch(a, cfg_1d(x.len()), "any_nonfinite");
    let mut out = [0u32];
    check(g.stream.memcpy_dtoh(&flag, &mut out), "copy to host");
    out[0] == 0
}

/// Adam hyper-parameters of one step, as the kernel takes them.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    /// beta1, beta2, 1 - beta1, 1 - beta2
    pub b1: f32,
    /// beta2
    pub b2: f32,
    /// 1 - beta1
    pub ob1: f32,
    /// 1 - beta2
    pub ob2: f32,
    /// lr / (1 - beta1^t)
    pub step_size: f32,
    /// 1 / sqrt(1 - beta2^t)
    pub inv_sqrt_bc2: f32,
    /// eps
    pub eps: f32,
}

/// `y[o, i] = sum_k x[o, k, i]`, summed in a fixed order (deterministic).
pub fn reduce_axis(x: &DeviceBuf, y: &mut DeviceBuf, outer: usize, n: usize, inner: usize) {
    assert_len("reduce_axis", x, outer * n * inner);
    assert_len("reduce_axis", y, outer * inner);
    let outs = outer * inner;
    let (o, k, i) = (outer as i64, n as i64, inner as i64);
    let g = g();
    if n >= 2048 && outs <= 4096 {
        // long axis, few outputs: a block of 256 threads per output
        let mut a = g.stream.launch_builder(g.func("reduce_axis_block"));
        a.arg(&x.slice).arg(&mut y.slice).arg(&o).arg(&k).arg(&i);
        let cfg = LaunchConfig { grid_dim: (outs as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        launch(a, cfg, "reduce_axis_block");
    } else {
        // a warp per output
        let mut a = g.stream.launch_builder(g.func("reduce_axis_warp"));
        a.arg(&x.slice).arg(&mut y.slice).arg(&o).arg(&k).arg(&i);
        let blocks = (outs as u64 * 32).div_ceil(BLOCK as u64).max(1) as u32;
        let cfg = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 };
        launch(a, cfg, "reduce_axis_warp");
    }
}

/// `y[o, k, i] = g[o, i]` for `k < n`.
pub fn expand_axis(gr: &DeviceBuf, y: &mut DeviceBuf, outer: usize, n: usize, inner: usize) {
    assert_len("expand_axis", gr, outer * inner);
    assert_len("expand_axis", y, outer * n * inner);
    let (o, k, i) = (outer as i64, n as i64, inner as i64);
    let g = g();
    let mut a = g.stream.launch_builder(g.func("expand_axis"));
    a.arg(&gr.slice).arg(&mut y.slice).arg(&o).arg(&k).arg(&i);
    launch(a, cfg_1d(outer * n * inner), "expand_axis");
}

/// `torch.roll` along the middle axis of `(outer, n, inner)` by `shift` (any sign).
pub fn roll_axis(x: &DeviceBuf, y: &mut DeviceBuf, outer: usize, n: usize, inner: usize, shift: isize) {
    let total = outer * n * inner;
    assert_len("roll_axis", x, total);
    assert_len("roll_axis", y, total);
    let s = shift.rem_euclid(n.max(1) as isize) as i64;
    let (o, k, i) = (outer as i64, n as i64, inner as i64);
    let g = g();
    let mut a = g.stream.launch_builder(g.func("roll_axis"));
    a.arg(&x.slice).arg(&mut y.slice).arg(&o).arg(&k).arg(&i).arg(&s);
    launch(a, cfg_1d(total), "roll_axis");
}

/// `dst[o, dst_start + k, i] = src[o, src_start + k, i]` for `k < len`; `src` is
/// `(outer, n_src, inner)`, `dst` is `(outer, n_dst, inner)`.
pub fn copy_block(
    src: &DeviceBuf,
    dst: &mut DeviceBuf,
    outer: usize,
    (n_src, src_start): (usize, usize),
    (n_dst, dst_start): (usize, usize),
    len: usize,
    inner: usize,
) {
    assert!(src_start + len <= n_src && dst_start + len <= n_dst, "copy_block: block out of range");
    assert_len("copy_block", src, outer * n_src * inner);
    assert_len("copy_block", dst, outer * n_dst * inner);
    let v = [outer, n_src, src_start, n_dst, dst_start, len, inner].map(|x| x as i64);
    let g = g();
    let mut a = g.stream.launch_builder(g.func("copy_block"));
    a.arg(&src.slice).arg(&mut dst.slice);
    for x in &v {
        a.arg(x);
    }
    launch(a, cfg_1d(outer * len * inner), "copy_block");
}

/// `(batch, m, n) -> (batch, n, m)`.
pub fn transpose_last2(x: &DeviceBuf, y: &mut DeviceBuf, batch: usize, m: usize, n: usize) {
    assert_len("transpose_last2", x, batch * m * n);
    assert_len("transpose_last2", y, batch * m * n);
    let v = [batch, m, n].map(|x| x as i64);
    let g = g();
    let mut a = g.stream.launch_builder(g.func("transpose_last2"));
    a.arg(&x.slice).arg(&mut y.slice).arg(&v[0]).arg(&v[1]).arg(&v[2]);
    launch(a, cfg_1d(batch * m * n), "transpose_last2");
}

/// Batched `(m x k) (k x n)` products, one thread per output (small matrices).
pub fn matmul(x: &DeviceBuf, z: &DeviceBuf, y: &mut DeviceBuf, batch: usize, m: usize, k: usize, n: usize) {
    assert_len("matmul", x, batch * m * k);
    assert_len("matmul", z, batch * k * n);
    assert_len("matmul", y, batch * m * n);
    let v = [batch, m, k, n].map(|x| x as i64);
    let g = g();
    let mut a = g.stream.launch_builder(g.func("matmul_naive"));
    a.arg(&x.slice).arg(&z.slice).arg(&mut y.slice).arg(&v[0]).arg(&v[1]).arg(&v[2]).arg(&v[3]);
    launch(a, cfg_1d(batch * m * n), "matmul_naive");
}

/// `y[o, i] = log sum_k exp x[o, k, i]` (stable).
pub fn logsumexp_fwd(x: &DeviceBuf, y: &mut DeviceBuf, outer: usize, n: usize, inner: usize) {
    assert_len("logsumexp_fwd", x, outer * n * inner);
    assert_len("logsumexp_fwd", y, outer * inner);
    let v = [outer, n, inner].map(|x| x as i64);
    let g = g();
    let mut a = g.stream.launch_builder(g.func("logsumexp_fwd"));
    a.arg(&x.slice).arg(&mut y.slice).arg(&v[0]).arg(&v[1]).arg(&v[2]);
    launch(a, cfg_1d(outer * inner), "logsumexp_fwd");
}

/// `dx[o, k, i] = g[o, i] exp(x[o, k, i] - y[o, i])`.
pub fn logsumexp_bwd(
    x: &DeviceBuf,
    y: &DeviceBuf,
    gr: &DeviceBuf,
    dx: &mut DeviceBuf,
    outer: usize,
    n: usize,
    inner: usize,
) {
    assert_len("logsumexp_bwd", x, outer * n * inner);
    assert_len("logsumexp_bwd", dx, outer * n * inner);
    assert_len("logsumexp_bwd", y, outer * inner);
    assert_len("logsumexp_bwd", gr, outer * inner);
    let v = [outer, n, inner].map(|x| x as i64);
    let g = g();
    let mut a = g.stream.launch_builder(g.func("logsumexp_bwd"));
    a.arg(&x.slice).arg(&y.slice).arg(&gr.slice).arg(&mut dx.slice).arg(&v[0]).arg(&v[1]).arg(&v[2]);
    launch(a, cfg_1d(outer * n * inner), "logsumexp_bwd");
}

/// Shape of a conv2d: batch, channels, lattice, odd kernel size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    /// batch
    pub n: usize,
    /// input channels
    pub cin: usize,
    /// output channels
    pub cout: usize,
    /// lattice height
    pub h: usize,
    /// lattice width
    pub w: usize,
    /// kernel size (odd, at most h and w)
    pub k: usize,
}

impl ConvShape {
    fn dims(&self) -> [i32; 6] {
        [self.n, self.cin, self.cout, self.h, self.w, self.k]
            .map(|x| i32::try_from(x).expect("conv2d dimension fits i32"))
    }
    /// The key of the shape-specialized kernels: `[cin, cout, h, w, k]`.
    fn key(&self) -> [usize; 5] {
        [self.cin, self.cout, self.h, self.w, self.k]
    }
    #[track_caller]
    fn check(&self) {
        assert!(self.k % 2 == 1 && self.k <= self.h && self.k <= self.w, "conv2d: bad kernel {self:?}");
        assert!(
            self.n * self.cin.max(self.cout) * self.h * self.w < i32::MAX as usize / 2,
            "conv2d: {self:?} too large for 32-bit indices"
        );
    }
}

/// Threads per block of the conv forward / input-gradient kernels.
const CONV_BLOCK: u32 = 128;

fn push_dims<'a>(a: &mut LaunchArgs<'a>, d: &'a [i32; 6]) {
    for v in d {
        a.arg(v);
    }
}

/// Samples per block of the tiled kernels (`SPB` in conv2d.cu).
fn tiled_spb(s: ConvShape) -> usize {
    let hw = s.h * s.w;
    if hw >= 256 {
        1
    } else {
        256 / hw
    }
}

/// Shared memory (bytes) of a tiled kernel whose input has `cin` channels and output `cout`
/// (forward: the conv's; input gradient: swapped), or `None` where the generic kernels run:
/// specialization off, more than 32 channels, or tiles over the 48 KiB every block may use.
fn tiled_smem(s: ConvShape, cin: usize, cout: usize) -> Option<usize> {
    let r4 = |c: usize| c.div_ceil(4) * 4;
    let bytes = 4 * (cin * s.k * s.k * r4(cout) + tiled_spb(s) * cin * s.h * s.w);
    (crate::conv_specialization() && r4(cout) <= 32 && cin <= 32 && bytes <= SMEM_LIMIT).then_some(bytes)
}

fn tiled_cfg(s: ConvShape, smem: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (s.n.div_ceil(tiled_spb(s)) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: smem as u32,
    }
}

/// `y = act(conv2d(x, w) + b)` (`act`: 0, leaky or tanh code; `slope` for leaky).
pub fn conv2d_fwd(
    x: &DeviceBuf,
    w: &DeviceBuf,
    b: Option<&DeviceBuf>,
    y: &mut DeviceBuf,
    s: ConvShape,
    act: i32,
    slope: f32,
) {
    s.check();
    assert_len("conv2d_fwd x", x, s.n * s.cin * s.h * s.w);
    assert_len("conv2d_fwd w", w, s.cout * s.cin * s.k * s.k);
    assert_len("conv2d_fwd y", y, s.n * s.cout * s.h * s.w);
    if let Some(b) = b {
        assert_len("conv2d_fwd b", b, s.cout);
    }
    let d = s.dims();
    let g = g();
    if let Some(smem) = tiled_smem(s, s.cin, s.cout) {
        let f = g.conv_func("conv2d_fwd_tiled", s.key());
        let mut a = g.stream.launch_builder(&f);
        a.arg(&x.slice).arg(&w.slice);
        match b {
            Some(b) => a.arg(&b.slice),
            None => a.arg(&NULL),
        };
        a.arg(&mut y.slice).arg(&d[0]).arg(&act).arg(&slope);
        launch(a, tiled_cfg(s, smem), "conv2d_fwd_tiled");
        return;
    }
    let f = g.conv_func("conv2d_fwd", s.key());
    let mut a = g.stream.launch_builder(&f);
    a.arg(&x.slice).arg(&w.slice);
    match b {
        Some(b) => {
            assert_len("conv2d_fwd b", b, s.cout);
            a.arg(&b.slice)
        }
        None => a.arg(&NULL),
    };
    a.arg(&mut y.slice);
    push_dims(&mut a, &d);
    a.arg(&act).arg(&slope);
    let pix = (s.n * s.h * s.w) as u64;
    let cfg = LaunchConfig {
        grid_dim: (pix.div_ceil(CONV_BLOCK as u64) as u32, s.cout.div_ceil(CONV_TILE) as u32, 1),
        block_dim: (CONV_BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    launch(a, cfg, "conv2d_fwd");
}

/// The activation a conv's backward pass undoes on the fly: its code, slope and the conv's
/// output `y` (the derivative is taken from `y`). `None`: no activation.
pub type ActGrad<'a> = Option<(i32, f32, &'a DeviceBuf)>;

/// Pushes the conv output `y` of an [`ActGrad`] (or a null pointer).
fn push_act<'a>(a: &mut LaunchArgs<'a>, act: &'a ActGrad<'a>) {
    match act {
        Some((_, _, y)) => a.arg(&y.slice),
        None => a.arg(&NULL),
    };
}

/// `dx` of conv2d from the gradient `gr` at its output; with `act`, `gr` is the gradient
/// after the activation and `act'` (from the output) is applied on the fly.
pub fn conv2d_bwd_input(gr: &DeviceBuf, act: ActGrad<'_>, w: &DeviceBuf, dx: &mut DeviceBuf, s: ConvShape) {
    s.check();
    assert_len("conv2d_bwd_input g", gr, s.n * s.cout * s.h * s.w);
    if let Some((_, _, y)) = act {
        assert_len("conv2d_bwd_input y", y, s.n * s.cout * s.h * s.w);
    }
    assert_len("conv2d_bwd_input w", w, s.cout * s.cin * s.k * s.k);
    assert_len("conv2d_bwd_input dx", dx, s.n * s.cin * s.h * s.w);
    let d = s.dims();
    let codes = act.map_or((0, 0.0), |(c, sl, _)| (c, sl));
    let g = g();
    if let Some(smem) = tiled_smem(s, s.cout, s.cin) {
        let f = g.conv_func("conv2d_bwd_input_tiled", s.key());
        let mut a = g.stream.launch_builder(&f);
        a.arg(&gr.slice);
        push_act(&mut a, &act);
        a.arg(&w.slice).arg(&mut dx.slice).arg(&d[0]).arg(&codes.0).arg(&codes.1);
        launch(a, tiled_cfg(s, smem), "conv2d_bwd_input_tiled");
        return;
    }
    let f = g.conv_func("conv2d_bwd_input", s.key());
    let mut a = g.stream.launch_builder(&f);
    a.arg(&gr.slice);
    push_act(&mut a, &act);
    a.arg(&w.slice).arg(&mut dx.slice);
    push_dims(&mut a, &d);
    a.arg(&codes.0).arg(&codes.1);
    let pix = (s.n * s.h * s.w) as u64;
    let cfg = LaunchConfig {
        grid_dim: (pix.div_ceil(CONV_BLOCK as u64) as u32, s.cin.div_ceil(CONV_TILE) as u32, 1),
        block_dim: (CONV_BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    launch(a, cfg, "conv2d_bwd_input");
}

/// Which weight-gradient kernel [`conv2d_bwd_weight`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightGradKernel {
    /// Planes staged in shared memory, output channels in registers (when they fit).
    Smem,
    /// One thread per weight entry, reading global memory.
    Direct,
}

/// Shared memory of the staged weight-gradient kernel for shape `s` with `threads` per block
/// and `stage` samples per synchronization.
fn wgrad_smem_bytes(s: ConvShape, threads: usize, stage: usize) -> usize {
    4 * (stage * (s.cin + CONV_TILE) * s.h * s.w + s.k * (s.h + s.w) + threads * CONV_TILE)
}

/// Samples the staged weight-gradient kernel stages per synchronization: as many as fit
/// (up to 8).
fn wgrad_stage(s: ConvShape, threads: usize) -> usize {
    (1..=8).rev().find(|&st| wgrad_smem_bytes(s, threads, st) <= SMEM_LIMIT).unwrap_or(1)
}

/// The kernel [`conv2d_bwd_weight`] picks for a shape.
pub fn weight_grad_kernel(s: ConvShape) -> WeightGradKernel {
    if wgrad_smem_bytes(s, 256, 1) <= SMEM_LIMIT {
        WeightGradKernel::Smem
    } else {
        WeightGradKernel::Direct
    }
}

/// Samples per chunk of the weight gradient: enough chunks (about 512) to fill the GPU.
fn samples_per_chunk(n: usize) -> usize {
    n.div_ceil(512).max(1)
}

/// `dw = sum_{n, pixels} g x(shifted)` and `db = sum_{n, pixels} g` of conv2d, in a fixed
/// summation order (partials per chunk of samples, then a sum over chunks); with `act`,
/// `act'` is applied to `gr` on the fly as in [`conv2d_bwd_input`]. The kernel is chosen by
/// [`weight_grad_kernel`] unless `force` names one.
pub fn conv2d_bwd_weight(
    gr: &DeviceBuf,
    act: ActGrad<'_>,
    x: &DeviceBuf,
    dw: &mut DeviceBuf,
    db: &mut DeviceBuf,
    s: ConvShape,
    force: Option<WeightGradKernel>,
) {
    s.check();
    let wlen = s.cout * s.cin * s.k * s.k;
    assert_len("conv2d_bwd_weight g", gr, s.n * s.cout * s.h * s.w);
    if let Some((_, _, y)) = act {
        assert_len("conv2d_bwd_weight y", y, s.n * s.cout * s.h * s.w);
    }
    assert_len("conv2d_bwd_weight x", x, s.n * s.cin * s.h * s.w);
    assert_len("conv2d_bwd_weight dw", dw, wlen);
    assert_len("conv2d_bwd_weight db", db, s.cout);
    let plen = wlen + s.cout;
    let spc = samples_per_chunk(s.n);
    let chunks = s.n.div_ceil(spc);
    let mut partial = DeviceBuf::uninit(chunks * plen);
    let d = s.dims();
    let spc_i = spc as i32;
    let codes = act.map_or((0, 0.0), |(c, sl, _)| (c, sl));
    let kind = force.unwrap_or_else(|| weight_grad_kernel(s));
    let g = g();
    let units = s.cin * s.k * s.k + 1;
    match kind {
        WeightGradKernel::Smem => {
            let threads = 256usize;
            let stage = wgrad_stage(s, threads);
            let smem = wgrad_smem_bytes(s, threads, stage);
            assert!(smem <= SMEM_LIMIT, "conv2d_bwd_weight: {s:?} needs {smem} bytes of shared memory");
            let stage_i = stage as i32;
            let f = g.conv_func("conv2d_bwd_weight_smem", s.key());
            let mut a = g.stream.launch_builder(&f);
            a.arg(&gr.slice);
            push_act(&mut a, &act);
            a.arg(&x.slice).arg(&mut partial.slice);
            push_dims(&mut a, &d);
            a.arg(&codes.0).arg(&codes.1).arg(&spc_i).arg(&stage_i);
            let cfg = LaunchConfig {
                grid_dim: (chunks as u32, s.cout.div_ceil(CONV_TILE) as u32, units.div_ceil(threads) as u32),
                block_dim: (threads as u32, 1, 1),
                shared_mem_bytes: smem as u32,
            };
            launch(a, cfg, "conv2d_bwd_weight_smem");
        }
        WeightGradKernel::Direct => {
            let f = g.conv_func("conv2d_bwd_weight_direct", s.key());
            let mut a = g.stream.launch_builder(&f);
            a.arg(&gr.slice);
            push_act(&mut a, &act);
            a.arg(&x.slice).arg(&mut partial.slice);
            push_dims(&mut a, &d);
            a.arg(&codes.0).arg(&codes.1).arg(&spc_i);
            let cfg = LaunchConfig {
                grid_dim: ((plen as u64).div_ceil(BLOCK as u64) as u32, chunks as u32, 1),
                block_dim: (BLOCK, 1, 1),
                shared_mem_bytes: 0,
            };
            launch(a, cfg, "conv2d_bwd_weight_direct");
        }
    }
    // sum over chunks, weights into dw and biases into db
    let (n, inner, split) = (chunks as i64, plen as i64, wlen as i64);
    let mut a = g.stream.launch_builder(g.func("reduce_rows_split"));
    a.arg(&partial.slice).arg(&mut dw.slice).arg(&mut db.slice).arg(&n).arg(&inner).arg(&split);
    let blocks = (plen as u64 * 32).div_ceil(BLOCK as u64) as u32;
    launch(
        a,
        LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 },
        "reduce_rows_split",
    );
}

/// The adjoint of narrow in one pass: `y (outer, n, inner)` holds `g (outer, len, inner)`
/// at `start` along the middle axis and zeros elsewhere.
pub fn unnarrow(gr: &DeviceBuf, y: &mut DeviceBuf, outer: usize, n: usize, start: usize, len: usize, inner: usize) {
    assert!(start + len <= n, "unnarrow: block out of range");
    assert_len("unnarrow g", gr, outer * len * inner);
    assert_len("unnarrow y", y, outer * n * inner);
    let v = [outer, n, start, len, inner].map(|x| x as i64);
    let g = g();
    let mut a = g.stream.launch_builder(g.func("unnarrow"));
    a.arg(&gr.slice).arg(&mut y.slice);
    for x in &v {
        a.arg(x);
    }
    launch(a, cfg_1d(outer * n * inner), "unnarrow");
}

/// A device copy of a pointer table and the lengths of the tensors it describes.
fn tables(ptrs: &[u64], lens: &[usize]) -> (cudarc::driver::CudaSlice<u64>, cudarc::driver::CudaSlice<i64>) {
    let g = g();
    let lens: Vec<i64> = lens.iter().map(|&l| l as i64).collect();
    (check(g.stream.clone_htod(ptrs), "copy to device"), check(g.stream.clone_htod(&lens), "copy to device"))
}

/// Grid of a multi-tensor launch: y = tensor, x = blocks over the longest.
fn cfg_multi(lens: &[usize]) -> LaunchConfig {
    let longest = lens.iter().copied().max().unwrap_or(1);
    let blocks = (longest as u64).div_ceil(BLOCK as u64).clamp(1, 1024) as u32;
    LaunchConfig { grid_dim: (blocks, lens.len().max(1) as u32, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

/// For each buffer, whether it holds a NaN or an infinity: one launch for all of them and
/// one copy back (one wait for the stream).
pub fn nonfinite_flags(bufs: &[&DeviceBuf]) -> Vec<bool> {
    if bufs.is_empty() {
        return Vec::new();
    }
    let g = g();
    let ptrs: Vec<u64> = bufs.iter().map(|b| b.device_ptr()).collect();
    let lens: Vec<usize> = bufs.iter().map(|b| b.len()).collect();
    let (table, lens_d) = tables(&ptrs, &lens);
    let mut flags = check(g.stream.alloc_zeros::<u32>(bufs.len()), "alloc");
    let mut a = g.stream.launch_builder(g.func("nonfinite_multi"));
    a.arg(&table).arg(&lens_d).arg(&mut flags);
    launch(a, cfg_multi(&lens), "nonfinite_multi");
    let mut out = vec![0u32; bufs.len()];
    check(g.stream.memcpy_dtoh(&flags, &mut out), "copy to host");
    out.into_iter().map(|f| f != 0).collect()
}

/// One Adam update of many tensors in one launch: each entry is (parameter, gradient,
/// first moment, second moment), updated in place.
pub fn adam_multi(entries: &mut [(&mut DeviceBuf, &DeviceBuf, &mut DeviceBuf, &mut DeviceBuf)], s: AdamStep) {
    if entries.is_empty() {
        return;
    }
    let mut ptrs = Vec::with_capacity(4 * entries.len());
    let mut lens = Vec::with_capacity(entries.len());
    for (p, gr, m, v) in entries.iter() {
        let n = p.len();
        assert_len("adam_multi g", gr, n);
        assert_len("adam_multi m", m, n);
        assert_len("adam_multi v", v, n);
        ptrs.extend([p.device_ptr(), gr.device_ptr(), m.device_ptr(), v.device_ptr()]);
        lens.push(n);
    }
    let (table, lens_d) = tables(&ptrs, &lens);
    let g = g();
    let mut a = g.stream.launch_builder(g.func("adam_multi"));
    a.arg(&table).arg(&lens_d);
    a.arg(&s.b1).arg(&s.b2).arg(&s.ob1).arg(&s.ob2).arg(&s.step_size).arg(&s.inv_sqrt_bc2).arg(&s.eps);
    launch(a, cfg_multi(&lens), "adam_multi");
}
