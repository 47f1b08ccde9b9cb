//! The GPU half of the affine coupling and its log-Jacobian (feature `cuda`): launchers
//! of `kernel.cu`, compiled once per process. Shapes were checked by the ops already.

use latflow_cuda_kernels::module::CudaModule;
use latflow_cuda_kernels::DeviceBuf;
use latflow_tensor::{Float, Tensor};

static MODULE: CudaModule = CudaModule::new(
    "affine_couple",
    include_str!("kernel.cu"),
    &["affine_couple", "affine_couple_bwd", "masked_channel_sum", "masked_channel_sum_bwd"],
);

/// The module (the NVRTC compile test checks it).
pub(crate) fn module() -> &'static CudaModule {
    &MODULE
}

/// `y` of the coupling: `x (N, S)`, `st (N, 2, S)`, mask `m (S)`.
pub(super) fn couple<T: Float>(x: &Tensor<T>, st: &Tensor<T>, m: &Tensor<T>, reverse: bool) -> Tensor<T> {
    let (total, sites) = (x.len(), m.len());
    assert!(sites > 0 && total % sites == 0, "affine_couple: {total} elements vs {sites} sites");
    assert!(st.len() >= 2 * total, "affine_couple: st holds {} floats, needs {}", st.len(), 2 * total);
    let mut y = DeviceBuf::uninit(total);
    let (t, s, r) = (total as i64, sites as i64, i32::from(reverse));
    let l = MODULE.launch("affine_couple").input(x.device_buf()).input(st.device_buf()).input(m.device_buf());
    // SAFETY: affine_couple(const float* x, const float* st, const float* m, float* y,
    // i64 total, i64 sites, int reverse); x and y hold `total` floats, st 2 total, m sites.
    unsafe { l.output(&mut y).scalar(&t).scalar(&s).scalar(&r).grid_stride(total) };
    Tensor::from_device_buf(x.shape(), y)
}

/// `(dx, dst)` of the coupling from `g (N, S)`.
pub(super) fn couple_grad<T: Float>(
    x: &Tensor<T>,
    st: &Tensor<T>,
    m: &Tensor<T>,
    reverse: bool,
    g: &Tensor<T>,
) -> (Tensor<T>, Tensor<T>) {
    let (total, sites) = (x.len(), m.len());
    assert!(sites > 0 && total % sites == 0, "affine_couple_bwd: {total} elements vs {sites} sites");
    assert!(st.len() >= 2 * total && g.len() >= total, "affine_couple_bwd: st {} / g {} floats", st.len(), g.len());
    let (mut dx, mut dst) = (DeviceBuf::uninit(total), DeviceBuf::uninit(2 * total));
    let (t, s, r) = (total as i64, sites as i64, i32::from(reverse));
    let l = MODULE.launch("affine_couple_bwd").input(x.device_buf()).input(st.device_buf()).input(m.device_buf());
    let l = l.input(g.device_buf()).output(&mut dx).output(&mut dst);
    // SAFETY: affine_couple_bwd(x, st, m, gy, dx, dst, i64 total, i64 sites, int reverse);
    // x, gy, dx hold `total` floats, st and dst 2 total, m sites.
    unsafe { l.scalar(&t).scalar(&s).scalar(&r).grid_stride(total) };
    (Tensor::from_device_buf(x.shape(), dx), Tensor::from_device_buf(st.shape(), dst))
}

/// `out[n] = sum_p m[p] st[n, channel, p]` for `st (n, channels, sites)`: one warp per sample.
pub(super) fn masked_channel_sum<T: Float>(st: &Tensor<T>, m: &Tensor<T>, channel: usize) -> Tensor<T> {
    let (n, channels, sites) = (st.shape()[0], st.shape()[1], m.len());
    assert!(channel < channels, "masked_channel_sum: channel {channel} of {channels}");
    assert!(st.len() >= n * channels * sites, "masked_channel_sum: st holds {} floats", st.len());
    let mut y = DeviceBuf::uninit(n);
    let v = [n, channels, channel, sites].map(|x| x as i64);
    let l = MODULE.launch("masked_channel_sum").input(st.device_buf()).input(m.device_buf()).output(&mut y);
    // SAFETY: masked_channel_sum(st, m, out, i64 n, i64 channels, i64 channel, i64 sites);
    // st holds n channels sites floats, out n; one warp per sample.
    unsafe { l.scalar(&v[0]).scalar(&v[1]).scalar(&v[2]).scalar(&v[3]).warp_per_item(n) };
    Tensor::from_device_buf(&[n], y)
}

/// Its adjoint: `dst[n, c, p] = g[n] m[p]` on `channel`, else 0, of shape `shape`.
pub(super) fn masked_channel_sum_grad<T: Float>(
    g: &Tensor<T>,
    m: &Tensor<T>,
    shape: &[usize],
    channel: usize,
) -> Tensor<T> {
    let (n, channels, sites) = (shape[0], shape[1], m.len());
    assert!(g.len() >= n, "masked_channel_sum_bwd: g holds {} floats, needs {n}", g.len());
    let total = n * channels * sites;
    let mut d = DeviceBuf::uninit(total);
    let v = [n, channels, channel, sites].map(|x| x as i64);
    let l = MODULE.launch("masked_channel_sum_bwd").input(g.device_buf()).input(m.device_buf()).output(&mut d);
    // SAFETY: masked_channel_sum_bwd(g, m, dst, i64 n, i64 channels, i64 channel, i64 sites);
    // g holds n floats, dst n channels sites.
    unsafe { l.scalar(&v[0]).scalar(&v[1]).scalar(&v[2]).scalar(&v[3]).grid_stride(total) };
    Tensor::from_device_buf(shape, d)
}
