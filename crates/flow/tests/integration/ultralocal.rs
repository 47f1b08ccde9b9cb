//! The ultralocal U(1) map without the tape (`latflow_flow::u1::UltralocalU1`) against the
//! tape's flow it comes from: the same `x` and `log|det J|`, the same flow-HMC force in f64
//! and within f32 rounding in f32, a reverse pass that inverts the forward one, and no
//! ultralocal map for a flow whose nets see their neighbours.

use crate::u1_common::strong_flow;
use latflow_flow::net::Activation;
use latflow_flow::u1::{U1FlowConfig, UltralocalU1};
use latflow_physics::{Action, Lattice, U1};
use latflow_sampler::flow_hmc::LatentMap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::f64::consts::PI;

/// `x` (wrapped) and `log|det J|` against the tape's f64 flow: the same arithmetic up to
/// the lifted atan (no branch) and the order of the sums.
const FORWARD_TOL: f64 = 1e-11;
/// The f64 force against the tape's (one reverse sweep each), relative to max(|F|, 1).
const FORCE_TOL: f64 = 1e-10;
/// The f32 force against the f64 one, relative to max(|F|_max, 1): f32 rounding through 16
/// layers of O(1) Jacobians.
const FORCE_F32_TOL: f64 = 2e-3;
/// `f(f^{-1}(x))` against `x`: the NCP inverse's Newton tolerance (1e-12) through 16 layers.
const ROUND_TRIP_TOL: f64 = 1e-9;

fn config(l: usize, kernel: usize) -> U1FlowConfig {
    U1FlowConfig { l, layers: 16, n_mix: 2, hidden: vec![1], kernel, activation: Activation::Tanh }
}

fn wrapped_max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(p, q)| ((p - q + PI).rem_euclid(2.0 * PI) - PI).abs()).fold(0.0, f64::max)
}

fn random_z(n: usize, d: usize, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    // latent fields off the torus too: leapfrog moves z freely between wraps
    (0..n * d).map(|_| rng.gen_range(-2.0 * PI..4.0 * PI)).collect()
}

#[test]
fn forward_and_log_jacobian_equal_the_tapes() {
    let flow = strong_flow(&config(8, 1), 11, 3.0);
    let map = UltralocalU1::from_flow(&flow).expect("kernel-1 couplings are ultralocal");
    assert_eq!(map.n_layers(), 16);
    let (n, d) = (5, map.dof());
    let z = random_z(n, d, 1);
    let (mut x_tape, mut ld_tape) = (vec![0.0; n * d], vec![0.0; n]);
    LatentMap::forward(&flow, &z, &mut x_tape, &mut ld_tape);
    let (mut x, mut ld) = (vec![0.0; n * d], vec![0.0; n]);
    map.forward(&z, &mut x, &mut ld);
    let dx = wrapped_max_diff(&x, &x_tape);
    assert!(dx < FORWARD_TOL, "x differs by {dx}");
    for (a, b) in ld.iter().zip(&ld_tape) {
        assert!((a - b).abs() < FORWARD_TOL * b.abs().max(1.0), "log|det J| {a} vs the tape's {b}");
        assert!(b.abs() > 1.0, "a strong flow's log|det J| is O(1) or more, got {b}");
    }
}

#[test]
fn force_equals_the_tapes_in_f64_and_within_rounding_in_f32() {
    // 1, 2 and 3 components: the f32 force takes the components in pairs, an odd one alone
    for n_mix in [2, 1, 3] {
        force_against_the_tape(n_mix);
    }
}

fn force_against_the_tape(n_mix: usize) {
    let l = 8;
    let flow = strong_flow(&U1FlowConfig { n_mix, ..config(l, 1) }, 12, 3.0);
    let map = UltralocalU1::from_flow(&flow).unwrap();
    let u1 = U1::new(Lattice::new(&[l, l]), 3.0);
    let cot = |x: &[f64], g: &mut [f64]| {
        for (xc, gc) in x.chunks(2 * l * l).zip(g.chunks_mut(2 * l * l)) {
            u1.force(xc, gc);
        }
    };
    let (n, d) = (7, map.dof());
    let z = random_z(n, d, 2);
    let run = |m: &dyn LatentMap| {
        let (mut x, mut ld, mut g) = (vec![0.0; n * d], vec![0.0; n], vec![0.0; n * d]);
        m.pullback(&z, &mut x, &mut ld, &cot, &mut g);
        (x, ld, g)
    };
    let (_, _, g_tape) = run(&flow);
    let (x64, ld64, g64) = run(&map);
    let scale = g_tape.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (a, b) in g64.iter().zip(&g_tape) {
        assert!((a - b).abs() < FORCE_TOL * b.abs().max(1.0), "{n_mix} components: force {a} vs the tape's {b}");
    }
    // the pullback's x and log|det J| are the forward pass's (scalar libm there, 4-lane
    // vectors here)
    let (mut x, mut ld) = (vec![0.0; n * d], vec![0.0; n]);
    map.forward(&z, &mut x, &mut ld);
    assert!(wrapped_max_diff(&x, &x64) < FORWARD_TOL);
    assert!(ld.iter().zip(&ld64).all(|(a, b)| (a - b).abs() < FORWARD_TOL * b.abs().max(1.0)));
    let (x32, ld32, g32) = run(&map.clone().f32_force());
    let err = g32.iter().zip(&g64).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / scale;
    assert!(err < FORCE_F32_TOL, "{n_mix} components: f32 force off by {err} of max |F| = {scale}");
    assert!(wrapped_max_diff(&x32, &x) < 1e-4, "the force map's x");
    assert!(ld32.iter().all(|v| v.is_nan()), "the force map does not compute log|det J|");
}

#[test]
fn reverse_inverts_forward() {
    let flow = strong_flow(&config(8, 1), 13, 3.0);
    let map = UltralocalU1::from_flow(&flow).unwrap();
    let (n, d) = (4, map.dof());
    let mut rng = StdRng::seed_from_u64(3);
    let x0: Vec<f64> = (0..n * d).map(|_| rng.gen_range(0.0..2.0 * PI)).collect();
    let mut z = vec![0.0; n * d];
    map.reverse(&x0, &mut z);
    let (mut x, mut ld) = (vec![0.0; n * d], vec![0.0; n]);
    map.forward(&z, &mut x, &mut ld);
    let e = wrapped_max_diff(&x, &x0);
    assert!(e < ROUND_TRIP_TOL, "f(f^-1(x)) off by {e}");
    // and the tape's reverse lands on the same latent field
    let mut z_tape = vec![0.0; n * d];
    LatentMap::reverse(&flow, &x0, &mut z_tape);
    assert!(wrapped_max_diff(&z, &z_tape) < ROUND_TRIP_TOL);
}

#[test]
fn kernel_three_flows_and_other_layers_are_not_ultralocal() {
    assert!(UltralocalU1::from_flow(&strong_flow(&config(8, 3), 14, 3.0)).is_none());
    let phi4 = latflow_flow::phi4::Phi4FlowConfig { l: 8, hidden: vec![1], kernel: 1, ..Default::default() }
        .build::<f64>(&mut StdRng::seed_from_u64(1));
    assert!(UltralocalU1::from_flow(&phi4).is_none());
}

/// The forward pass runs 4 configurations per vector: a configuration's `x` and
/// `log|det J|` must not depend on which others share its vector (flow-HMC's `H`).
#[test]
fn forward_does_not_depend_on_the_batch() {
    let flow = strong_flow(&config(8, 1), 15, 3.0);
    let map = UltralocalU1::from_flow(&flow).unwrap();
    let d = map.dof();
    let z = random_z(7, d, 4);
    let (mut x, mut ld) = (vec![0.0; 7 * d], vec![0.0; 7]);
    map.forward(&z, &mut x, &mut ld);
    for c in 0..7 {
        let (mut x1, mut l1) = (vec![0.0; d], vec![0.0; 1]);
        map.forward(&z[c * d..(c + 1) * d], &mut x1, &mut l1);
        assert_eq!(&x1[..], &x[c * d..(c + 1) * d]);
        assert_eq!(l1[0], ld[c]);
    }
}

/// The Wilson action's gradient on the lanes (`with_wilson_lanes`) against the f32 force
/// map that calls the action's f64 force: the same flow, f32 rounding apart; with the
/// identity map, the action's force itself.
#[test]
fn wilson_on_the_lanes_equals_the_actions_force() {
    let (l, beta) = (8, 3.0);
    let u1 = U1::new(Lattice::new(&[l, l]), beta);
    let cot = |x: &[f64], g: &mut [f64]| {
        for (xc, gc) in x.chunks(2 * l * l).zip(g.chunks_mut(2 * l * l)) {
            u1.force(xc, gc);
        }
    };
    let never = |_: &[f64], _: &mut [f64]| panic!("the lanes force calls no cotangent");
    // 11 configurations: one whole vector of 8 and a part-filled one
    let (n, d) = (11, 2 * l * l);
    let z = random_z(n, d, 5);
    let run = |m: &UltralocalU1, c: &(dyn Fn(&[f64], &mut [f64]) + Sync)| {
        let (mut x, mut ld, mut g) = (vec![0.0; n * d], vec![0.0; n], vec![0.0; n * d]);
        m.pullback(&z, &mut x, &mut ld, c, &mut g);
        (x, g)
    };
    let flow = strong_flow(&config(l, 1), 16, 3.0);
    let map = UltralocalU1::from_flow(&flow).unwrap();
    for (name, m) in [("flow", map), ("identity", UltralocalU1::identity(l))] {
        let (x_ref, g_ref) = run(&m.clone().f32_force(), &cot);
        let (x, g) = run(&m.clone().with_wilson_lanes(beta), &never);
        assert_eq!(x, x_ref, "{name}: the same forward pass");
        let scale = g_ref.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let err = g.iter().zip(&g_ref).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / scale;
        assert!(err < FORCE_F32_TOL, "{name}: lanes force off by {err} of max |F| = {scale}");
    }
    // the identity: x = z (wrapped), the force is the action's
    let (x, g) = run(&UltralocalU1::identity(l).with_wilson_lanes(beta), &never);
    assert!(wrapped_max_diff(&x, &z) < 1e-5);
    let mut g64 = vec![0.0; n * d];
    cot(&z, &mut g64);
    let err = g.iter().zip(&g64).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / beta;
    assert!(err < FORCE_F32_TOL, "identity: force off by {err} of beta");
}
