//! The GPU half of the NCP mixture and its log-Jacobian (feature `cuda`): launchers of
//! `kernel.cu`, compiled once per process. Shapes were checked by the ops already.

use latflow_cuda_kernels::module::CudaModule;
use latflow_cuda_kernels::DeviceBuf;
use latflow_tensor::{Float, Tensor};

static MODULE: CudaModule = CudaModule::new(
    "ncp_mixture",
    include_str!("kernel.cu"),
    &["ncp_mix_fwd", "ncp_mix_bwd", "ncp_logj_fwd", "ncp_logj_bwd"],
);

/// The module (the NVRTC compile test checks it).
pub(crate) fn module() -> &'static CudaModule {
    &MODULE
}

/// Most mixture components the kernels take (`NCP_MAX` in kernel.cu).
const NCP_MAX: usize = 16;

/// `(batch, n as i32, sites)` for `x (batch, S)`, `s (batch, n, S)`, checked.
fn dims<T: Float>(x: &Tensor<T>, s: &Tensor<T>, n: usize) -> (i64, i32, i64) {
    let batch = x.shape()[0];
    assert!((1..=NCP_MAX).contains(&n), "NCP kernels: {n} mixture components (1 to {NCP_MAX})");
    assert!(batch > 0 && x.len().is_multiple_of(batch), "NCP kernels: {} sites vs batch {batch}", x.len());
    assert!(s.len() >= n * x.len(), "NCP kernels: s holds {} floats, needs {}", s.len(), n * x.len());
    (batch as i64, n as i32, (x.len() / batch) as i64)
}

/// `y = ((1/n) sum_i mod(2 atan(e^{s_i} tan(x/2)), 2 pi) + t) mod 2 pi`.
pub(super) fn mixture<T: Float>(x: &Tensor<T>, s: &Tensor<T>, t: &Tensor<T>, n: usize) -> Tensor<T> {
    let (b, ni, si) = dims(x, s, n);
    assert!(t.len() >= x.len(), "ncp_mixture: t holds {} floats", t.len());
    let mut y = DeviceBuf::uninit(x.len());
    let l = MODULE.launch("ncp_mix_fwd").input(x.device_buf()).input(s.device_buf()).input(t.device_buf());
    // SAFETY: ncp_mix_fwd(x, s, t, y, i64 batch, int n, i64 sites); x, t, y hold batch
    // sites floats, s n times that.
    unsafe { l.output(&mut y).scalar(&b).scalar(&ni).scalar(&si).grid_stride(x.len()) };
    Tensor::from_device_buf(x.shape(), y)
}

/// `(dx, ds)` of the mixture from `g`.
pub(super) fn mixture_grad<T: Float>(x: &Tensor<T>, s: &Tensor<T>, n: usize, g: &Tensor<T>) -> (Tensor<T>, Tensor<T>) {
    let (b, ni, si) = dims(x, s, n);
    assert!(g.len() >= x.len(), "ncp_mixture grad: g holds {} floats", g.len());
    let (mut dx, mut ds) = (DeviceBuf::uninit(x.len()), DeviceBuf::uninit(s.len()));
    let l = MODULE.launch("ncp_mix_bwd").input(x.device_buf()).input(s.device_buf()).input(g.device_buf());
    // SAFETY: ncp_mix_bwd(x, s, g, dx, ds, i64 batch, int n, i64 sites); x, g, dx hold
    // batch sites floats, s and ds n times that.
    unsafe { l.output(&mut dx).output(&mut ds).scalar(&b).scalar(&ni).scalar(&si).grid_stride(x.len()) };
    (Tensor::from_device_buf(x.shape(), dx), Tensor::from_device_buf(s.shape(), ds))
}

/// `log J (batch,)` of the mixture: one warp per sample.
pub(super) fn log_jacobian<T: Float>(x: &Tensor<T>, s: &Tensor<T>, n: usize) -> Tensor<T> {
    let (b, ni, si) = dims(x, s, n);
    let batch = x.shape()[0];
    let mut y = DeviceBuf::uninit(batch);
    let l = MODULE.launch("ncp_logj_fwd").input(x.device_buf()).input(s.device_buf()).output(&mut y);
    // SAFETY: ncp_logj_fwd(x, s, out, i64 batch, int n, i64 sites); out holds batch floats,
    // one warp per sample.
    unsafe { l.scalar(&b).scalar(&ni).scalar(&si).warp_per_item(batch) };
    Tensor::from_device_buf(&[batch], y)
}

/// `(dx, ds)` of the log-Jacobian from `g (batch,)`.
pub(super) fn log_jacobian_grad<T: Float>(
    x: &Tensor<T>,
    s: &Tensor<T>,
    n: usize,
    g: &Tensor<T>,
) -> (Tensor<T>, Tensor<T>) {
    let (b, ni, si) = dims(x, s, n);
    assert!(g.len() >= x.shape()[0], "ncp_log_jacobian grad: g holds {} floats", g.len());
    let (mut dx, mut ds) = (DeviceBuf::uninit(x.len()), DeviceBuf::uninit(s.len()));
    let l = MODULE.launch("ncp_logj_bwd").input(x.device_buf()).input(s.device_buf()).input(g.device_buf());
    // SAFETY: ncp_logj_bwd(x, s, g, dx, ds, i64 batch, int n, i64 sites); g holds batch
    // floats, x and dx batch sites, s and ds n times that.
    unsafe { l.output(&mut dx).output(&mut ds).scalar(&b).scalar(&ni).scalar(&si).grid_stride(x.len()) };
    (Tensor::from_device_buf(x.shape(), dx), Tensor::from_device_buf(s.shape(), ds))
}
