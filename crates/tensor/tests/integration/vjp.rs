//! `Var::vjp`, the seeded reverse sweep flow-HMC's force uses: it equals `backward` of
//! `sum_k <c_k, y_k>` (several outputs sharing a graph), agrees with central differences
//! (f64), and with the weights entered as constants it reports (and computes) the input's
//! gradient alone.

use latflow_tensor::{Tensor, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// vjp vs backward of the same scalar: the same rules summed in another order.
const SAME_TOL: f64 = 1e-12;
/// Central differences (step 1e-6) of a small conv net: truncation ~h^2, rounding ~1e-16/h.
const FD_TOL: f64 = 1e-7;

/// A small conv net `x (N, 1, 6, 6) -> (y (N, 2, 6, 6), t (N,))` with `t` a per-sample sum,
/// like a coupling's output and log-Jacobian.
fn net(x: &Var<f64>, w1: &Var<f64>, b1: &Var<f64>, w2: &Var<f64>) -> (Var<f64>, Var<f64>) {
    let h = x.conv2d(w1, Some(b1)).tanh();
    let y = h.conv2d(w2, None).leaky_relu(0.01).add(&x.broadcast_to(&[2, 2, 6, 6]));
    let t = h.square().sum_axes(&[1, 2, 3]);
    (y, t)
}

#[test]
fn vjp_equals_backward_and_central_differences_and_skips_constant_weights() {
    let mut rng = StdRng::seed_from_u64(7);
    let x0 = Tensor::<f64>::uniform(&[2, 1, 6, 6], -1.0, 1.0, &mut rng);
    let (w1, b1, w2) = (
        Tensor::<f64>::uniform(&[3, 1, 3, 3], -0.5, 0.5, &mut rng),
        Tensor::<f64>::uniform(&[3], -0.5, 0.5, &mut rng),
        Tensor::<f64>::uniform(&[2, 3, 3, 3], -0.5, 0.5, &mut rng),
    );
    let cy = Tensor::<f64>::uniform(&[2, 2, 6, 6], -1.0, 1.0, &mut rng);
    let ct = Tensor::from_vec(&[2], vec![-1.0, 0.5]);
    // input-only: weights as constants
    let x = Var::param(x0.clone());
    let (cw1, cb1, cw2) = (Var::constant(w1.clone()), Var::constant(b1.clone()), Var::constant(w2.clone()));
    let (y, t) = net(&x, &cw1, &cb1, &cw2);
    let g = Var::vjp(&[(&y, cy.clone()), (&t, ct.clone())]);
    let gx = g.get(&x).expect("the input's gradient").clone();
    assert!(g.get(&cw1).is_none() && g.get(&cb1).is_none() && g.get(&cw2).is_none());
    // the same as backward of sum <c, y>
    let scalar = |x: &Var<f64>, w1: &Var<f64>, b1: &Var<f64>, w2: &Var<f64>| {
        let (y, t) = net(x, w1, b1, w2);
        y.mul_const(&cy).sum().add(&t.mul_const(&ct).sum())
    };
    let x2 = Var::param(x0.clone());
    let gb = scalar(&x2, &cw1, &cb1, &cw2).backward();
    let d = gx.data().iter().zip(gb.get(&x2).unwrap().data()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(d < SAME_TOL, "vjp vs backward: {d:e}");
    // central differences on a few entries
    let h = 1e-6;
    for i in [0, 7, 35, 36, 71] {
        let at = |delta: f64| {
            let mut v = x0.clone();
            v.data_mut()[i] += delta;
            scalar(&Var::constant(v), &cw1, &cb1, &cw2).value().item()
        };
        let fd = (at(h) - at(-h)) / (2.0 * h);
        assert!((fd - gx.data()[i]).abs() < FD_TOL * fd.abs().max(1.0), "entry {i}: fd {fd} vs vjp {}", gx.data()[i]);
    }
    // with the weights as parameters vjp reports theirs too, and the input's is unchanged
    let (pw1, pb1, pw2) = (Var::param(w1), Var::param(b1), Var::param(w2));
    let x3 = Var::param(x0);
    let (y, t) = net(&x3, &pw1, &pb1, &pw2);
    let gp = Var::vjp(&[(&y, cy), (&t, ct)]);
    assert!(gp.get(&pw1).is_some() && gp.get(&pb1).is_some() && gp.get(&pw2).is_some());
    let d = gp.get(&x3).unwrap().data().iter().zip(gx.data()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(d < SAME_TOL, "{d:e}");
}
