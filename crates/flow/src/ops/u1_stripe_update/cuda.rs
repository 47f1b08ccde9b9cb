//! The GPU half of the stripe update (feature `cuda`): launchers of `kernel.cu`, compiled
//! once per process. Shapes were checked by the op already.

use latflow_cuda_kernels::module::CudaModule;
use latflow_cuda_kernels::DeviceBuf;
use latflow_tensor::{Float, Tensor};

static MODULE: CudaModule =
    CudaModule::new("u1_stripe_update", include_str!("kernel.cu"), &["u1_stripe_update", "u1_stripe_update_bwd"]);

/// The module (the NVRTC compile test checks it).
pub(crate) fn module() -> &'static CudaModule {
    &MODULE
}

/// `(n, h, w)` of links `(n, 2, h, w)` as the kernels' types, checked.
fn dims(s: &[usize], mu: usize, off: usize) -> (i64, i32, i32) {
    let (h, w) = (s[2], s[3]);
    assert!(
        mu < 2 && off < 4 && h.is_multiple_of(4) && w.is_multiple_of(4),
        "u1_stripe_update: mu {mu}, off {off}, {h}x{w}"
    );
    (s[0] as i64, i32::try_from(h).expect("lattice fits i32"), i32::try_from(w).expect("lattice fits i32"))
}

/// New links from `links (n, 2, h, w)`, `ya`, `xa` `(n, A, B)`.
pub(super) fn stripe_update<T: Float>(
    links: &Tensor<T>,
    ya: &Tensor<T>,
    xa: &Tensor<T>,
    mu: usize,
    off: usize,
) -> Tensor<T> {
    let s = links.shape();
    let (ni, hi, wi) = dims(s, mu, off);
    let quarter = links.len() / 8;
    assert!(ya.len() >= quarter && xa.len() >= quarter, "u1_stripe_update: y_a {} / x_a {} floats", ya.len(), xa.len());
    let mut o = DeviceBuf::uninit(links.len());
    let (m, of) = (mu as i32, off as i32);
    let l = MODULE.launch("u1_stripe_update").input(links.device_buf()).input(ya.device_buf()).input(xa.device_buf());
    // SAFETY: u1_stripe_update(links, ya, xa, out, i64 n, int h, int w, int mu, int off);
    // links and out hold 2 n h w floats, ya and xa n h w / 4.
    unsafe { l.output(&mut o).scalar(&ni).scalar(&hi).scalar(&wi).scalar(&m).scalar(&of).grid_stride(links.len()) };
    Tensor::from_device_buf(s, o)
}

/// `(dya, dxa)` of the stripe update from `g (n, 2, h, w)` (`dxa = -dya`).
pub(super) fn stripe_update_grad<T: Float>(
    g: &Tensor<T>,
    ya_shape: &[usize],
    mu: usize,
    off: usize,
) -> (Tensor<T>, Tensor<T>) {
    let s = g.shape();
    let (ni, hi, wi) = dims(s, mu, off);
    let quarter = g.len() / 8;
    let (mut dya, mut dxa) = (DeviceBuf::uninit(quarter), DeviceBuf::uninit(quarter));
    let (m, of) = (mu as i32, off as i32);
    let l = MODULE.launch("u1_stripe_update_bwd").input(g.device_buf()).output(&mut dya).output(&mut dxa);
    // SAFETY: u1_stripe_update_bwd(g, dya, dxa, i64 n, int h, int w, int mu, int off); g
    // holds 2 n h w floats, dya and dxa n h w / 4.
    unsafe { l.scalar(&ni).scalar(&hi).scalar(&wi).scalar(&m).scalar(&of).grid_stride(quarter) };
    (Tensor::from_device_buf(ya_shape, dya), Tensor::from_device_buf(ya_shape, dxa))
}
