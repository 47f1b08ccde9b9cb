//! The fused ops against the elementwise ops they replace (the tutorial's
//! formulation): values bit for bit (f64 and f32, CPU), log-Jacobians and gradients
//! to rounding (f64).
use crate::common::max_rel;
use latflow_flow::ops::ncp_mixture::{ncp_log_jacobian, ncp_mixture};
use latflow_tensor::{Float, Tensor, Var};
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
