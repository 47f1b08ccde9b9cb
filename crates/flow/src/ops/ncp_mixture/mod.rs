//! The non-compact-projection (NCP) mixture of the U(1) flows (arXiv:2101.08176 section
//! V.B, Rezende et al. arXiv:2002.02428) as one op ([`ncp_mixture`]) and its
//! log-Jacobian as another ([`ncp_log_jacobian`]). Forward and backward here, the CPU
//! kernels (and the formulas of the derivatives) in [`cpu`], the CUDA half in `cuda.rs`
//! with its kernels in `kernel.cu` (feature `cuda`).

pub mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
#[cfg(feature = "cuda")]
pub(crate) use cuda::module as cuda_module;

use latflow_tensor::{CustomOp, Float, Tensor, Var};

/// The mixture `y(x, s, t)` of `n` components.
struct NcpMixture {
    n: usize,
}

impl<T: Float> CustomOp<T> for NcpMixture {
    fn name(&self) -> &'static str {
        "ncp_mixture"
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let (x, s, t) = (inputs[0], inputs[1], inputs[2]);
        #[cfg(feature = "cuda")]
        if x.is_cuda() {
            return cuda::mixture(x, s, t, self.n);
        }
        let mut y = latflow_tensor::pool::buffer(x.len());
        cpu::mixture(x.data(), s.data(), t.data(), self.n, x.shape()[0], &mut y);
        Tensor::from_vec(x.shape(), y)
    }

    fn backward(
        &self,
        inputs: &[&Tensor<T>],
        _y: &Tensor<T>,
        g: &Tensor<T>,
        _needs: &[bool],
    ) -> Vec<Option<Tensor<T>>> {
        // dy/dx = (1/n) sum_i e_i / (c^2 + e_i^2 r^2), dy/ds_i = (1/n) 2 e_i r c / (c^2 + e_i^2 r^2),
        // dy/dt = 1 (cpu.rs)
        let (x, s) = (inputs[0], inputs[1]);
        #[cfg(feature = "cuda")]
        if g.is_cuda() {
            let (dx, ds) = cuda::mixture_grad(x, s, self.n, g);
            return vec![Some(dx), Some(ds), Some(g.clone())];
        }
        let (mut dx, mut ds) = (latflow_tensor::pool::buffer(x.len()), latflow_tensor::pool::buffer(s.len()));
        cpu::mixture_grad(x.data(), s.data(), self.n, x.shape()[0], g.data(), &mut dx, &mut ds);
        vec![Some(Tensor::from_vec(x.shape(), dx)), Some(Tensor::from_vec(s.shape(), ds)), Some(g.clone())]
    }
}

/// Its log-Jacobian per sample, `logJ(x, s)`.
struct NcpLogJacobian {
    n: usize,
}

impl<T: Float> CustomOp<T> for NcpLogJacobian {
    fn name(&self) -> &'static str {
        "ncp_log_jacobian"
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let (x, s) = (inputs[0], inputs[1]);
        let b = x.shape()[0];
        #[cfg(feature = "cuda")]
        if x.is_cuda() {
            return cuda::log_jacobian(x, s, self.n);
        }
        let mut out = latflow_tensor::pool::buffer(b);
        cpu::log_jacobian(x.data(), s.data(), self.n, b, &mut out);
        Tensor::from_vec(&[b], out)
    }

    fn backward(
        &self,
        inputs: &[&Tensor<T>],
        _y: &Tensor<T>,
        g: &Tensor<T>,
        _needs: &[bool],
    ) -> Vec<Option<Tensor<T>>> {
        // d logJ = sum_i softmax(q)_i dq_i, q_i = -log(e_i^-1 cos^2 h + e_i sin^2 h) (cpu.rs)
        let (x, s) = (inputs[0], inputs[1]);
        #[cfg(feature = "cuda")]
        if g.is_cuda() {
            let (dx, ds) = cuda::log_jacobian_grad(x, s, self.n, g);
            return vec![Some(dx), Some(ds)];
        }
        let (mut dx, mut ds) = (latflow_tensor::pool::buffer(x.len()), latflow_tensor::pool::buffer(s.len()));
        cpu::log_jacobian_grad(x.data(), s.data(), self.n, x.shape()[0], g.data(), &mut dx, &mut ds);
        vec![Some(Tensor::from_vec(x.shape(), dx)), Some(Tensor::from_vec(s.shape(), ds))]
    }
}

/// The number of mixture components for `x (N, S...)`, `s (N, n, S...)`.
#[track_caller]
fn check_ncp(xs: &[usize], ss: &[usize], op: &str) -> usize {
    assert!(
        !xs.is_empty() && ss.len() == xs.len() + 1 && ss[0] == xs[0] && ss[2..] == xs[1..] && ss[1] >= 1,
        "{op}: shape mismatch, x {xs:?} vs s {ss:?}"
    );
    ss[1]
}

/// The NCP mixture as one op: `x (N, S...)`, `s (N, n, S...)` the `n` scales,
/// `t (N, S...)` the offset;
/// `y = ((1/n) sum_i mod(2 atan(e^{s_i} tan(x/2)), 2 pi) + t) mod 2 pi`. Values are bit
/// for bit those of the elementwise ops it replaces (on the CPU); derivatives in [`cpu`].
///
/// # Panics
/// On shape mismatches.
#[track_caller]
pub fn ncp_mixture<T: Float>(x: &Var<T>, s: &Var<T>, t: &Var<T>) -> Var<T> {
    let n = check_ncp(x.shape(), s.shape(), "ncp_mixture");
    assert!(t.shape() == x.shape(), "ncp_mixture: shape mismatch, x {:?} vs t {:?}", x.shape(), t.shape());
    Var::apply_custom(&[x, s, t], NcpMixture { n })
}

/// The NCP mixture's `log|det J|` per sample, shape `(N,)`:
/// `sum_sites [logsumexp_i(-log(e^{-s_i} cos^2(x/2) + e^{s_i} sin^2(x/2))) - ln n]`.
///
/// # Panics
/// On shape mismatches.
#[track_caller]
pub fn ncp_log_jacobian<T: Float>(x: &Var<T>, s: &Var<T>) -> Var<T> {
    let n = check_ncp(x.shape(), s.shape(), "ncp_log_jacobian");
    Var::apply_custom(&[x, s], NcpLogJacobian { n })
}
