//! The fused `cos_sin` (the U(1) nets' input) against the ops it replaces.

use latflow_tensor::{Tensor, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// f64: the fused gradient evaluates the same formula in another order.
const TOL_F64: f64 = 1e-11;

fn max_rel(a: &Tensor<f64>, b: &Tensor<f64>) -> f64 {
    let scale = b.data().iter().fold(1e-300f64, |m, x| m.max(x.abs()));
    a.data().iter().zip(b.data()).map(|(x, y)| (x - y).abs() / scale).fold(0.0, f64::max)
}

/// The U(1) nets' input `x.cos_sin()` against `stack([cos x, sin x], 1)`: values bit for
/// bit (f32: SIMD on both sides; f64), gradients to rounding.
#[test]
fn fused_cos_sin_equals_stack_of_cos_and_sin() {
    let mut rng = StdRng::seed_from_u64(5);
    let x0 = Tensor::<f64>::uniform(&[3, 5, 4], -9.0, 9.0, &mut rng);
    let r = Var::constant(Tensor::<f64>::randn(&[3, 2, 5, 4], &mut rng));
    let run = |fused: bool| {
        let x = Var::param(x0.clone());
        let y = if fused { x.cos_sin() } else { Var::stack(&[x.cos(), x.sin()], 1) };
        let g = y.mul(&r).sum().backward();
        (y.value().clone(), g.get(&x).unwrap().clone())
    };
    let (a, b) = (run(true), run(false));
    assert_eq!(a.0, b.0, "f64 values differ");
    let e = max_rel(&a.1, &b.1);
    assert!(e <= TOL_F64, "gradient differs by {e:e}");
    let x = Var::constant(x0.cast::<f32>());
    assert_eq!(x.cos_sin().value(), Var::stack(&[x.cos(), x.sin()], 1).value(), "f32 values differ");
}
