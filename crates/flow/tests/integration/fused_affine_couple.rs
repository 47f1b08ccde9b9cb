//! The fused ops against the masked elementwise ops they replace: same values and
//! same gradients (f64), both directions.
use crate::common::max_rel;
use latflow_flow::ops::affine_couple::{affine_couple, masked_channel_sum};
use latflow_tensor::{Tensor, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// f64: the fused kernels evaluate the same formulas in another order.
const TOL_F64: f64 = 1e-12;

#[test]
fn fused_coupling_equals_the_composed_ops() {
    let mut rng = StdRng::seed_from_u64(11);
    let (n, h, w) = (3, 4, 6);
    for parity in 0..2 {
        let mask = Tensor::from_vec(&[h, w], (0..h * w).map(|i| ((i / w + i % w + parity) % 2) as f64).collect());
        let inv = mask.map(|m| 1.0 - m);
        for reverse in [false, true] {
            let x0 = Tensor::<f64>::randn(&[n, h, w], &mut rng);
            let st0 = Tensor::<f64>::randn(&[n, 2, h, w], &mut rng).map(|v| 0.7 * v);
            let r = Var::constant(Tensor::<f64>::randn(&[n, h, w], &mut rng));
            let r2 = Var::constant(Tensor::<f64>::randn(&[n], &mut rng));
            let run = |fused: bool| {
                let (x, st) = (Var::param(x0.clone()), Var::param(st0.clone()));
                let (y, logj) = if fused {
                    (affine_couple(&x, &st, &mask, reverse), masked_channel_sum(&st, 0, &inv))
                } else {
                    let s = st.select(1, 0).mul_const(&inv);
                    let t = st.select(1, 1);
                    let active = if reverse {
                        x.sub(&t).mul(&s.neg().exp()).mul_const(&inv)
                    } else {
                        x.mul(&s.exp()).add(&t).mul_const(&inv)
                    };
                    (x.mul_const(&mask).add(&active), s.sum_axes(&[1, 2]))
                };
                let g = y.mul(&r).sum().add(&logj.mul(&r2).sum()).backward();
                (y.value().clone(), logj.value().clone(), g.get(&x).unwrap().clone(), g.get(&st).unwrap().clone())
            };
            let (a, b) = (run(true), run(false));
            for (what, u, v) in [("y", &a.0, &b.0), ("log J", &a.1, &b.1), ("dx", &a.2, &b.2), ("dst", &a.3, &b.3)] {
                let e = max_rel(u, v);
                assert!(e <= TOL_F64, "parity {parity} reverse {reverse}: {what} differs by {e:e}");
            }
        }
    }
}

#[test]
#[should_panic(expected = "affine_couple: shape mismatch")]
fn fused_coupling_rejects_mismatched_shapes() {
    let x = Var::constant(Tensor::<f64>::zeros(&[2, 4, 4]));
    let st = Var::constant(Tensor::<f64>::zeros(&[2, 3, 4, 4]));
    let _ = affine_couple(&x, &st, &Tensor::ones(&[4, 4]), false);
}
