use latflow_physics::ops::u1_plaquette::*;
use latflow_tensor::{Tensor, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::f64::consts::PI;

/// `u1_plaquette01` against the select/roll ops it replaces
/// (`P = t0 + roll(t1, x, -1) - roll(t0, y, -1) - t1`): values bit for bit (f64, f32),
/// gradients exactly (both are sums of +-g), on square and non-square lattices.
#[test]
fn fused_u1_plaquette01_equals_select_and_roll_ops() {
    let mut rng = StdRng::seed_from_u64(8);
    for (h, w) in [(8, 8), (4, 6), (3, 5), (1, 2)] {
        let l0 = Tensor::<f64>::uniform(&[2, 2, h, w], 0.0, 2.0 * PI, &mut rng);
        let r = Var::constant(Tensor::<f64>::randn(&[2, h, w], &mut rng));
        let composed = |l: &Var<f64>| {
            let (t0, t1) = (l.select(1, 0), l.select(1, 1));
            t0.add(&t1.roll(1, -1)).sub(&t0.roll(2, -1)).sub(&t1)
        };
        let l = Var::param(l0.clone());
        let (a, b) = (u1_plaquette01(&l), composed(&l));
        assert_eq!(a.value(), b.value(), "{h}x{w}: values differ");
        let (ga, gb) = (a.mul(&r).sum().backward(), b.mul(&r).sum().backward());
        assert_eq!(ga.get(&l), gb.get(&l), "{h}x{w}: gradients differ");
        let l32 = Var::constant(l0.cast::<f32>());
        let (t0, t1) = (l32.select(1, 0), l32.select(1, 1));
        let want = t0.add(&t1.roll(1, -1)).sub(&t0.roll(2, -1)).sub(&t1);
        assert_eq!(u1_plaquette01(&l32).value(), want.value(), "{h}x{w}: f32 values differ");
    }
}
