//! The GPU half of the (0, 1) plaquette (feature `cuda`): launchers of `kernel.cu`,
//! compiled once per process. Shapes were checked by the op already.

use latflow_cuda_kernels::module::CudaModule;
use latflow_cuda_kernels::DeviceBuf;
use latflow_tensor::{Float, Tensor};

static MODULE: CudaModule = CudaModule::new("u1_plaquette", include_str!("kernel.cu"), &["u1_plaq01", "u1_plaq01_bwd"]);

/// The module (the NVRTC compile test checks it).
pub(crate) fn module() -> &'static CudaModule {
    &MODULE
}

/// `(n, h, w)` as the kernels' types.
fn dims(n: usize, h: usize, w: usize) -> (i64, i32, i32) {
    (n as i64, i32::try_from(h).expect("lattice fits i32"), i32::try_from(w).expect("lattice fits i32"))
}

/// The plaquette `p (n, h, w)` of links `(n, 2, h, w)`.
pub(super) fn plaquette01<T: Float>(links: &Tensor<T>) -> Tensor<T> {
    let s = links.shape();
    let (ni, hi, wi) = dims(s[0], s[2], s[3]);
    let len = s[0] * s[2] * s[3];
    let mut p = DeviceBuf::uninit(len);
    let l = MODULE.launch("u1_plaq01").input(links.device_buf()).output(&mut p);
    // SAFETY: u1_plaq01(links, p, i64 n, int h, int w); links hold 2 n h w floats, p n h w.
    unsafe { l.scalar(&ni).scalar(&hi).scalar(&wi).grid_stride(len) };
    Tensor::from_device_buf(&[s[0], s[2], s[3]], p)
}

/// Its adjoint: `dlinks` of `shape (n, 2, h, w)` from `g (n, h, w)`.
pub(super) fn plaquette01_grad<T: Float>(g: &Tensor<T>, shape: &[usize]) -> Tensor<T> {
    let (ni, hi, wi) = dims(shape[0], shape[2], shape[3]);
    let len = 2 * shape[0] * shape[2] * shape[3];
    assert!(g.len() >= len / 2, "u1_plaq01_bwd: g holds {} floats, needs {}", g.len(), len / 2);
    let mut d = DeviceBuf::uninit(len);
    let l = MODULE.launch("u1_plaq01_bwd").input(g.device_buf()).output(&mut d);
    // SAFETY: u1_plaq01_bwd(g, dl, i64 n, int h, int w); g holds n h w floats, dl 2 n h w.
    unsafe { l.scalar(&ni).scalar(&hi).scalar(&wi).grid_stride(len) };
    Tensor::from_device_buf(shape, d)
}
