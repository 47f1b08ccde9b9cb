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

#[cfg(test)]
mod tests {
    //! The fused ops against the elementwise ops they replace (the tutorial's
    //! formulation): values bit for bit (f64 and f32, CPU), log-Jacobians and gradients
    //! to rounding (f64).
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::f64::consts::PI;

    /// f64: the fused log-Jacobian and the gradients evaluate the same formulas in another order.
    const TOL_F64: f64 = 1e-11;

    /// The composed ops (what `NcpPlaqCoupling::transform` did before the fused ops).
    fn composed<T: Float>(x: &Var<T>, s: &Var<T>, t: &Var<T>) -> (Var<T>, Var<T>) {
        let shape = s.shape().to_vec();
        let n = shape[1];
        let half = x.unsqueeze(1).mul_scalar(0.5);
        let es = s.exp();
        let mix = es.mul(&half.tan().broadcast_to(&shape)).atan().mul_scalar(2.0).rem_euclid(2.0 * PI).mean_axes(&[1]);
        let c2 = half.cos().square().broadcast_to(&shape);
        let s2 = half.sin().square().broadcast_to(&shape);
        let lj = s.neg().exp().mul(&c2).add(&es.mul(&s2)).log().neg();
        let axes: Vec<usize> = (1..shape.len() - 1).collect();
        let logj = lj.logsumexp(1).add_scalar(-(n as f64).ln()).sum_axes(&axes);
        (mix.add(t).rem_euclid(2.0 * PI), logj)
    }

    fn max_rel(a: &Tensor<f64>, b: &Tensor<f64>) -> f64 {
        let scale = b.data().iter().fold(1e-300f64, |m, x| m.max(x.abs()));
        a.data().iter().zip(b.data()).map(|(x, y)| (x - y).abs() / scale).fold(0.0, f64::max)
    }

    #[test]
    fn fused_ncp_equals_the_composed_ops() {
        let mut rng = StdRng::seed_from_u64(21);
        for n_mix in [1, 2, 3] {
            let x0 = Tensor::<f64>::uniform(&[3, 4, 2], 0.0, 2.0 * PI, &mut rng);
            let s0 = Tensor::<f64>::randn(&[3, n_mix, 4, 2], &mut rng);
            let t0 = Tensor::<f64>::uniform(&[3, 4, 2], -1.0, 1.0, &mut rng);
            let r = Var::constant(Tensor::<f64>::randn(&[3, 4, 2], &mut rng));
            let run = |fused: bool| {
                let (x, s, t) = (Var::param(x0.clone()), Var::param(s0.clone()), Var::param(t0.clone()));
                let (y, lj) =
                    if fused { (ncp_mixture(&x, &s, &t), ncp_log_jacobian(&x, &s)) } else { composed(&x, &s, &t) };
                let g = y.mul(&r).sum().add(&lj.sum()).backward();
                let grads: Vec<Tensor<f64>> = [&x, &s, &t].iter().map(|v| g.get(v).unwrap().clone()).collect();
                (y.value().clone(), lj.value().clone(), grads)
            };
            let (a, b) = (run(true), run(false));
            assert_eq!(a.0, b.0, "n_mix {n_mix}: y differs");
            let e = max_rel(&a.1, &b.1);
            assert!(e <= TOL_F64, "n_mix {n_mix}: log J differs by {e:e}");
            for (i, (u, v)) in a.2.iter().zip(&b.2).enumerate() {
                let e = max_rel(u, v);
                assert!(e <= TOL_F64, "n_mix {n_mix}: gradient of input {i} differs by {e:e}");
            }
            // f32, the training path's values (SIMD tan/exp/atan on both sides)
            let (x, s, t) =
                (Var::constant(x0.cast::<f32>()), Var::constant(s0.cast::<f32>()), Var::constant(t0.cast::<f32>()));
            assert_eq!(ncp_mixture(&x, &s, &t).value(), composed(&x, &s, &t).0.value(), "n_mix {n_mix}: f32 y differs");
            // offsets far outside (-2 pi, 4 pi) and a NaN: the kernel's slow path
            let mut tf = Tensor::<f64>::uniform(&[3, 4, 2], -40.0, 40.0, &mut rng).cast::<f32>();
            tf.data_mut()[5] = f32::NAN;
            let t = Var::constant(tf);
            let (a, b) = (ncp_mixture(&x, &s, &t), composed(&x, &s, &t).0);
            for (p, q) in a.value().data().iter().zip(b.value().data()) {
                assert!(p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan()), "n_mix {n_mix}: {p} vs {q}");
            }
        }
    }
}
