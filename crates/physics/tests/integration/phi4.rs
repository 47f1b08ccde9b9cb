use latflow_physics::phi4::*;
use latflow_physics::*;
use latflow_tensor::Var;
use latflow_tensor::{gradcheck, GradcheckConfig, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Agreement of two evaluations of the same f64 expression (different summation order).
const F64_TOL: f64 = 1e-12;

fn shapes() -> Vec<Vec<usize>> {
    vec![vec![6], vec![4, 3], vec![3, 2], vec![8, 8], vec![3, 4, 2]]
}

#[test]
fn slice_action_matches_tensor_action() {
    let mut rng = StdRng::seed_from_u64(1);
    for shape in shapes() {
        let s = Phi4::new(Lattice::new(&shape), -4.0, 8.0);
        let mut tshape = vec![3];
        tshape.extend(&shape);
        let phi = Tensor::<f64>::randn(&tshape, &mut rng);
        let sv = s.action_var(&Var::constant(phi.clone()));
        for (b, x) in phi.data().chunks(s.dof()).enumerate() {
            let (a, t) = (s.action(x), sv.value().data()[b]);
            assert!((a - t).abs() < F64_TOL * t.abs().max(1.0), "{shape:?}: {a} vs {t}");
        }
    }
}

#[test]
fn autodiff_force_equals_analytic_force() {
    let mut rng = StdRng::seed_from_u64(2);
    for shape in shapes() {
        let s = Phi4::new(Lattice::new(&shape), -4.0, 8.0);
        let mut tshape = vec![2];
        tshape.extend(&shape);
        // typical field values (|phi| ~ 1): keeps the central differences of phi^4 well conditioned
        let phi = Tensor::<f64>::randn(&tshape, &mut rng).map(|v| 0.5 * v);
        // the tape gradient is audited by central differences ...
        let report =
            gradcheck(|v: &[Var<f64>]| s.action_var(&v[0]), std::slice::from_ref(&phi), GradcheckConfig::default());
        assert!(report.passed(), "{shape:?}: {report:?}");
        // ... and equals the analytic force
        let x = Var::param(phi.clone());
        let g = s.action_var(&x).sum().backward().get_or_zeros(&x);
        let mut f = vec![0.0; s.dof()];
        for (cfg, gc) in phi.data().chunks(s.dof()).zip(g.data().chunks(s.dof())) {
            s.force(cfg, &mut f);
            for (a, b) in f.iter().zip(gc) {
                assert!((a - b).abs() < F64_TOL * b.abs().max(1.0), "{shape:?}: analytic {a} vs tape {b}");
            }
        }
    }
}

#[test]
fn general_force_path_equals_2d_path() {
    // the 2D fast paths against the neighbour-table formulas written out
    let mut rng = StdRng::seed_from_u64(3);
    let s = Phi4::new(Lattice::new(&[5, 7]), -1.5, 0.7);
    let t = Phi4::new(Lattice::new(&[5, 7, 1]), -1.5, 0.7); // 3D with L_2 = 1: no kinetic term in 2, same action
    let phi0 = Tensor::<f64>::randn(&[35], &mut rng);
    let (a2, a3) = (s.action(phi0.data()), t.action(phi0.data()));
    assert!((a2 - a3).abs() < F64_TOL * a3.abs().max(1.0), "{a2} vs {a3}");
    let phi = Tensor::<f64>::randn(&[35], &mut rng);
    let mut f = vec![0.0; 35];
    s.force(phi.data(), &mut f);
    let lat = s.lattice();
    for n in 0..35 {
        let p = phi.data()[n];
        let nb: f64 = (0..2).map(|mu| phi.data()[lat.fwd(n, mu)] + phi.data()[lat.bwd(n, mu)]).sum();
        let want = 2.0 * (4.0 + s.m2) * p + 4.0 * s.lam * p.powi(3) - 2.0 * nb;
        assert!((f[n] - want).abs() < F64_TOL * want.abs().max(1.0));
    }
}
