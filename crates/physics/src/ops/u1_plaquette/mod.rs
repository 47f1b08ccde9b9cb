//! The plaquette of the (0, 1) plane of 2D U(1) links as one op ([`u1_plaquette01`]).
//! Forward and backward here, the CPU kernels in [`cpu`], the CUDA half in `cuda.rs` with
//! its kernels in `kernel.cu` (feature `cuda`).

pub mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
#[cfg(feature = "cuda")]
pub(crate) use cuda::module as cuda_module;

use latflow_tensor::{CustomOp, Float, Tensor, Var};

/// The (0, 1) plaquette of U(1) links `(N, 2, H, W)`.
struct U1Plaquette01;

impl<T: Float> CustomOp<T> for U1Plaquette01 {
    fn name(&self) -> &'static str {
        "u1_plaquette01"
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let x = inputs[0];
        #[cfg(feature = "cuda")]
        if x.is_cuda() {
            return cuda::plaquette01(x);
        }
        let s = x.shape();
        let mut p = latflow_tensor::pool::buffer(s[0] * s[2] * s[3]);
        cpu::plaquette01(x.data(), s[0], s[2], s[3], &mut p);
        Tensor::from_vec(&[s[0], s[2], s[3]], p)
    }

    fn backward(
        &self,
        inputs: &[&Tensor<T>],
        _y: &Tensor<T>,
        g: &Tensor<T>,
        _needs: &[bool],
    ) -> Vec<Option<Tensor<T>>> {
        // P = t0(x,y) + t1(x+1,y) - t0(x,y+1) - t1(x,y): dt0 = g(x,y) - g(x,y-1),
        // dt1 = g(x-1,y) - g(x,y)
        let s = inputs[0].shape();
        #[cfg(feature = "cuda")]
        if g.is_cuda() {
            return vec![Some(cuda::plaquette01_grad(g, s))];
        }
        let mut d = latflow_tensor::pool::buffer(inputs[0].len());
        cpu::plaquette01_grad(g.data(), s[0], s[2], s[3], &mut d);
        vec![Some(Tensor::from_vec(s, d))]
    }
}

/// The plaquette angle of the (0, 1) plane of U(1) links `(N, 2, H, W)`:
/// `P(x, y) = t0(x, y) + t1(x+1, y) - t0(x, y+1) - t1(x, y)` (periodic), shape
/// `(N, H, W)`, as one op (the same values as the select/roll/add ops it replaces).
///
/// ```
/// use latflow_physics::ops::GaugeOps;
/// use latflow_tensor::{Tensor, Var};
/// // 4x4 lattice, t0 = 0, t1(x, y) = x: P = t1(x+1, y) - t1(x, y) = 1 (and -3 at x = 3)
/// let mut v = vec![0.0f64; 32];
/// for i in 0..16 {
///     v[16 + i] = (i / 4) as f64;
/// }
/// let p = Var::constant(Tensor::from_vec(&[1, 2, 4, 4], v)).u1_plaquette01();
/// assert_eq!(p.value().data()[0], 1.0);
/// assert_eq!(p.value().data()[12], -3.0);
/// ```
///
/// # Panics
/// If `links` is not `(N, 2, H, W)`.
#[track_caller]
pub fn u1_plaquette01<T: Float>(links: &Var<T>) -> Var<T> {
    let s = links.shape();
    assert!(s.len() == 4 && s[1] == 2, "u1_plaquette01: links must be (N, 2, H, W), got {s:?}");
    Var::apply_custom(&[links], U1Plaquette01)
}
