use latflow_physics::u1::*;
use latflow_physics::*;
use latflow_tensor::Var;
use latflow_tensor::{gradcheck, GradcheckConfig, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::f64::consts::PI;

/// Agreement of two f64 evaluations of the same sum in different orders.
const F64_TOL: f64 = 1e-12;
/// Gauge invariance and integrality up to rounding of sums of O(V) angles.
const ANGLE_TOL: f64 = 1e-10;

fn random_links(g: &U1, rng: &mut StdRng) -> Vec<f64> {
    (0..g.dof()).map(|_| rng.gen_range(0.0..2.0 * PI)).collect()
}

#[test]
fn slice_action_matches_tensor_action_2d_and_3d() {
    let mut rng = StdRng::seed_from_u64(1);
    for shape in [vec![4, 4], vec![3, 5], vec![3, 2, 4]] {
        let g = U1::new(Lattice::new(&shape), 1.7);
        let mut tshape = vec![2, shape.len()];
        tshape.extend(&shape);
        let x = Tensor::<f64>::uniform(&tshape, 0.0, 2.0 * PI, &mut rng);
        let sv = g.action_var(&Var::constant(x.clone()));
        for (b, c) in x.data().chunks(g.dof()).enumerate() {
            let (a, t) = (g.action(c), sv.value().data()[b]);
            assert!((a - t).abs() < F64_TOL * t.abs().max(1.0), "{shape:?}: {a} vs {t}");
        }
    }
}

#[test]
fn autodiff_force_equals_analytic_force() {
    let mut rng = StdRng::seed_from_u64(2);
    for shape in [vec![4, 4], vec![3, 5], vec![3, 2, 4]] {
        let g = U1::new(Lattice::new(&shape), 1.3);
        let mut tshape = vec![2, shape.len()];
        tshape.extend(&shape);
        let x = Tensor::<f64>::uniform(&tshape, 0.0, 2.0 * PI, &mut rng);
        let report =
            gradcheck(|v: &[Var<f64>]| g.action_var(&v[0]), std::slice::from_ref(&x), GradcheckConfig::default());
        assert!(report.passed(), "{shape:?}: {report:?}");
        let xv = Var::param(x.clone());
        let grad = g.action_var(&xv).sum().backward().get_or_zeros(&xv);
        let mut f = vec![0.0; g.dof()];
        for (c, gc) in x.data().chunks(g.dof()).zip(grad.data().chunks(g.dof())) {
            g.force(c, &mut f);
            for (a, b) in f.iter().zip(gc) {
                assert!((a - b).abs() < F64_TOL * b.abs().max(1.0), "{shape:?}: analytic {a} vs tape {b}");
            }
        }
    }
}

#[test]
fn action_and_charge_are_gauge_invariant_and_q_is_an_integer() {
    let mut rng = StdRng::seed_from_u64(3);
    let g = U1::new(Lattice::new(&[8, 8]), 2.0);
    let mut nonzero = 0;
    for _ in 0..50 {
        let mut x = random_links(&g, &mut rng);
        let (s, q) = (g.action(&x), g.topological_charge(&x));
        assert!((q - q.round()).abs() < ANGLE_TOL, "Q = {q} is not an integer");
        nonzero += (q.round() != 0.0) as usize;
        let alpha: Vec<f64> = (0..64).map(|_| rng.gen_range(-PI..PI)).collect();
        g.gauge_transform(&mut x, &alpha);
        assert!((g.action(&x) - s).abs() < ANGLE_TOL, "S changed under a gauge transformation");
        assert_eq!(g.topological_charge(&x).round(), q.round(), "Q changed under a gauge transformation");
        assert!((g.topological_charge(&x) - q).abs() < ANGLE_TOL);
    }
    assert!(nonzero > 10, "random links should visit many sectors, got {nonzero} of 50 nonzero");
}

#[test]
fn gauge_invariance_in_3d() {
    let mut rng = StdRng::seed_from_u64(4);
    let g = U1::new(Lattice::new(&[3, 4, 2]), 1.0);
    let mut x = random_links(&g, &mut rng);
    let s = g.action(&x);
    let alpha: Vec<f64> = (0..24).map(|_| rng.gen_range(-PI..PI)).collect();
    g.gauge_transform(&mut x, &alpha);
    assert!((g.action(&x) - s).abs() < ANGLE_TOL);
}

#[test]
fn unit_instanton_has_charge_one() {
    // theta_1(x, y) = 2 pi x / V, theta_0(L-1, y) = -2 pi y / L: every plaquette is 2 pi / V.
    let l = 8;
    let g = U1::new(Lattice::new(&[l, l]), 2.0);
    let v = l * l;
    let mut x = vec![0.0; 2 * v];
    for a in 0..l {
        for b in 0..l {
            x[v + a * l + b] = 2.0 * PI * a as f64 / v as f64;
        }
        x[(l - 1) * l + a] = -2.0 * PI * a as f64 / l as f64;
    }
    let mut p = vec![0.0; v];
    g.plaquettes(&x, 0, 1, &mut p);
    assert!(p.iter().all(|&q| (wrap_angle(q) - 2.0 * PI / v as f64).abs() < ANGLE_TOL));
    assert!((g.topological_charge(&x) - 1.0).abs() < ANGLE_TOL);
    assert!((g.action(&x) + 2.0 * v as f64 * (2.0 * PI / v as f64).cos()).abs() < ANGLE_TOL);
    // and the mirror image has charge -1
    let y: Vec<f64> = x.iter().map(|t| -t).collect();
    assert!((g.topological_charge(&y) + 1.0).abs() < ANGLE_TOL);
}

#[test]
fn exact_q2_limits() {
    // beta -> 0: uniform plaquettes, Q = sum of V uniform(-1/2, 1/2) conditioned to an integer;
    // for large V its variance approaches V / 12.
    let q2 = exact_q2_2d(1e-9, 16);
    assert!((q2 - 16.0 / 12.0).abs() < 0.05, "{q2}");
    // monotone in beta and volume
    assert!(exact_q2_2d(6.0, 256) < exact_q2_2d(2.0, 256));
    assert!(exact_q2_2d(2.0, 256) > exact_q2_2d(2.0, 64));
}

#[test]
fn fast_sin_matches_std() {
    let mut rng = StdRng::seed_from_u64(9);
    let mut worst = 0.0f64;
    for i in 0..200_000 {
        let x = if i < 100_000 { rng.gen_range(-20.0..20.0) } else { rng.gen_range(-1e5..1e5) };
        worst = worst.max((fast_sin(x) - x.sin()).abs());
    }
    for x in [0.0, PI / 4.0, PI / 2.0, PI, -PI, 1e-300, 3.0 * PI / 4.0] {
        worst = worst.max((fast_sin(x) - f64::sin(x)).abs());
    }
    assert!(worst < 4e-16, "max |fast_sin - sin| = {worst:e}");
}

#[test]
fn wrap_is_in_range() {
    for x in [-10.0, -PI, -3.0, 0.0, 3.0, PI, 10.0] {
        let w = wrap_angle(x);
        assert!((-PI..PI).contains(&w), "{x} -> {w}");
        assert!(((x - w) / (2.0 * PI) - ((x - w) / (2.0 * PI)).round()).abs() < 1e-12);
    }
}
