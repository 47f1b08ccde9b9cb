//! A flow built at one lattice size runs at another (a multiple of its masks' period):
//! its parameters copied into the architecture built at the new size
//! ([`Flow::copy_params_from`]). Audits in f64 of flows made at 8x8 and applied at 16x16:
//! the new flow is invertible with cancelling log-Jacobians, U(1) gauge equivariance holds,
//! and (the test that the parameters really carry over) a 16x16 field that tiles an 8x8
//! one 2x2 times is mapped to the tiling of the 8x8 image with 4 times its log-Jacobian
//! (circular convolutions commute with translations, the masks' period divides 8).

use crate::u1_common;

use latflow_flow::model::{Flow, Record};
use latflow_flow::phi4::{Coupling, Phi4FlowConfig, Z2Kind};
use latflow_flow::u1::U1FlowConfig;
use latflow_physics::u1::wrap_angle;
use latflow_physics::{Lattice, U1};
use latflow_tensor::{Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::f64::consts::PI;
use u1_common::{push, random_links, strong_flow};

/// reverse(forward(z)) vs z and the log q of the two passes (phi^4: the affine coupling is
/// inverted in closed form, 16 layers of O(1) rounding on values O(1)).
const PHI4_ROUNDTRIP_TOL: f64 = 1e-10;
/// The same for U(1) (numerical inverse of the NCP mixture, ~1e-14 per plaquette, 16
/// layers; as `u1_flow.rs`).
const U1_ROUNDTRIP_TOL: f64 = 1e-9;
/// flow(g.U) vs g.flow(U) (as `u1_flow.rs`).
const EQUIVARIANCE_TOL: f64 = 1e-9;
/// f_16(tile(z)) vs tile(f_8(z)): the same arithmetic on the same numbers site by site
/// except the order of the log-Jacobian's sums over 4x the sites.
const TILE_TOL: f64 = 1e-11;

/// `(N, ..., 8, 8)` tiled 2x2 into `(N, ..., 16, 16)`.
fn tile2(t: &Tensor<f64>) -> Tensor<f64> {
    let s = t.shape();
    let (h, w) = (s[s.len() - 2], s[s.len() - 1]);
    let planes = t.len() / (h * w);
    let mut out = Vec::with_capacity(4 * t.len());
    for p in 0..planes {
        let plane = &t.data()[p * h * w..(p + 1) * h * w];
        for x in 0..2 * h {
            for y in 0..2 * w {
                out.push(plane[(x % h) * w + y % w]);
            }
        }
    }
    let mut shape = s.to_vec();
    let r = shape.len();
    shape[r - 2] *= 2;
    shape[r - 1] *= 2;
    Tensor::from_vec(&shape, out)
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn wrapped_max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| wrap_angle(x - y).abs()).fold(0.0, f64::max)
}

/// The flow of `build(16)` with the parameters of `small` (built at 8).
fn at_16(small: &Flow<f64>, build: impl Fn(usize) -> Flow<f64>) -> Flow<f64> {
    let mut big = build(16);
    big.copy_params_from(small).expect("same architecture");
    assert_eq!(big.params().len(), small.params().len());
    big
}

/// A phi^4 flow whose nets' last convolutions are scaled up (O(1) scales and shifts: a
/// fresh flow is close to the identity and would make the audits weak).
fn strong_phi4(config: &Phi4FlowConfig, seed: u64) -> Flow<f64> {
    let mut flow = config.build::<f64>(&mut StdRng::seed_from_u64(seed));
    u1_common::scale_last_convolutions(&mut flow, 3.0);
    flow
}

fn forward(flow: &Flow<f64>, z: &Tensor<f64>) -> (Tensor<f64>, Tensor<f64>) {
    let params = flow.param_vars(Record::Off);
    let log_r = Var::constant(flow.prior.log_prob(z));
    let (x, logq) = flow.forward(Var::constant(z.clone()), log_r, &params);
    (x.value().clone(), logq.value().clone())
}

#[test]
fn phi4_flows_made_at_8_run_at_16() {
    for coupling in [Coupling::Affine, Coupling::Z2(Z2Kind::Symmetrized)] {
        let config = |l: usize| Phi4FlowConfig { l, coupling, ..Phi4FlowConfig::default() };
        let small = strong_phi4(&config(8), 3);
        assert_eq!(small.period(), 2);
        let big = at_16(&small, |l| config(l).build(&mut StdRng::seed_from_u64(99)));
        // invertible with cancelling log-Jacobians at the new size
        let z = big.prior.sample(4, &mut StdRng::seed_from_u64(4));
        let (x, logq) = forward(&big, &z);
        assert!(max_diff(x.data(), z.data()) > 0.5, "{coupling}: the flow barely moves the field");
        let (z_back, logq_back) = big.reverse(&x);
        let (dz, dq) = (max_diff(z_back.data(), z.data()), max_diff(logq_back.data(), logq.data()));
        assert!(dz < PHI4_ROUNDTRIP_TOL && dq < PHI4_ROUNDTRIP_TOL, "{coupling}: |dz| {dz:e}, |d log q| {dq:e}");
        // the parameters carried over: a tiled field maps to the tiled image
        let z8 = small.prior.sample(3, &mut StdRng::seed_from_u64(5));
        let (x8, _) = forward(&small, &z8);
        let (x16, _) = forward(&big, &tile2(&z8));
        let d = max_diff(x16.data(), tile2(&x8).data());
        assert!(d < TILE_TOL, "{coupling}: f16(tile z) - tile f8(z) = {d:e}");
        // log q = log r - log J: the log-Jacobians add up over the 4 tiles
        let lj = |f: &Flow<f64>, z: &Tensor<f64>| {
            let (_, logq) = forward(f, z);
            let log_r = f.prior.log_prob(z);
            log_r.data().iter().zip(logq.data()).map(|(r, q)| r - q).collect::<Vec<f64>>()
        };
        let (lj8, lj16) = (lj(&small, &z8), lj(&big, &tile2(&z8)));
        for (a, b) in lj8.iter().zip(&lj16) {
            assert!((4.0 * a - b).abs() < TILE_TOL * b.abs().max(1.0), "{coupling}: log J {b} vs 4 x {a}");
        }
    }
}

#[test]
fn u1_flow_made_at_8_is_invertible_and_gauge_equivariant_at_16() {
    let config = |l: usize| U1FlowConfig { l, ..U1FlowConfig::default() };
    let small = strong_flow(&config(8), 31, 4.0);
    assert_eq!(small.period(), 4);
    let big = at_16(&small, |l| config(l).build(&mut StdRng::seed_from_u64(98)));
    let l = 16;
    // invertible, log-Jacobians cancel
    let z = big.prior.sample(3, &mut StdRng::seed_from_u64(32));
    let (x, logq) = forward(&big, &z);
    let (z_back, logq_back) = big.reverse(&x);
    let (dz, dq) = (wrapped_max_diff(z_back.data(), z.data()), max_diff(logq_back.data(), logq.data()));
    assert!(dz < U1_ROUNDTRIP_TOL && dq < U1_ROUNDTRIP_TOL, "|dz| {dz:e}, |d log q| {dq:e}");
    assert!(wrapped_max_diff(x.data(), z.data()) > 1.0, "the flow barely moves the links");
    // gauge equivariance at 16x16
    let u = random_links(3, l, 33);
    let g = U1::new(Lattice::new(&[l, l]), 1.0);
    let mut rng = StdRng::seed_from_u64(34);
    let alphas: Vec<Vec<f64>> = (0..3).map(|_| (0..l * l).map(|_| rng.gen_range(0.0..2.0 * PI)).collect()).collect();
    let transform = |x: &Tensor<f64>| {
        let mut y = x.clone();
        for (c, a) in y.data_mut().chunks_mut(2 * l * l).zip(&alphas) {
            g.gauge_transform(c, a);
            for v in c.iter_mut() {
                *v = v.rem_euclid(2.0 * PI);
            }
        }
        y
    };
    let (fu, lj) = push(&big, &u);
    let (fgu, lj_g) = push(&big, &transform(&u));
    let d = wrapped_max_diff(fgu.data(), transform(&fu).data());
    assert!(d < EQUIVARIANCE_TOL, "flow(g.U) - g.flow(U) = {d:e}");
    for (a, b) in lj.iter().zip(&lj_g) {
        assert!((a - b).abs() < EQUIVARIANCE_TOL * a.abs().max(1.0), "log J {a} vs {b}");
    }
    // the parameters carried over: tiled links map to the tiled image
    let u8 = random_links(2, 8, 35);
    let (f8, lj8) = push(&small, &u8);
    let (f16, lj16) = push(&big, &tile2(&u8));
    let d = wrapped_max_diff(f16.data(), tile2(&f8).data());
    assert!(d < TILE_TOL, "f16(tile U) - tile f8(U) = {d:e}");
    for (a, b) in lj8.iter().zip(&lj16) {
        assert!((4.0 * a - b).abs() < TILE_TOL * b.abs().max(1.0), "log J {b} vs 4 x {a}");
    }
}

#[test]
fn copying_parameters_needs_the_same_architecture() {
    let a = Phi4FlowConfig { l: 8, ..Phi4FlowConfig::default() }.build::<f64>(&mut StdRng::seed_from_u64(1));
    let mut b = Phi4FlowConfig { l: 16, hidden: vec![4], ..Phi4FlowConfig::default() }
        .build::<f64>(&mut StdRng::seed_from_u64(2));
    let before: Vec<Vec<f64>> = b.params().iter().map(|t| t.data().to_vec()).collect();
    let e = b.copy_params_from(&a).unwrap_err();
    assert!(e.contains("does not match") || e.contains("parameter tensors"), "{e}");
    let after: Vec<Vec<f64>> = b.params().iter().map(|t| t.data().to_vec()).collect();
    assert_eq!(before, after, "a failed copy leaves the flow unchanged");
    let mut c = Phi4FlowConfig { l: 16, ..Phi4FlowConfig::default() }.build::<f64>(&mut StdRng::seed_from_u64(3));
    assert_ne!(c.named_params()[0].1.data(), a.named_params()[0].1.data());
    c.copy_params_from(&a).unwrap();
    assert_eq!(c.named_params()[0].1.data(), a.named_params()[0].1.data());
    assert_eq!(c.prior.shape(), &[16, 16]);
}
