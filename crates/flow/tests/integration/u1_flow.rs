//! Audits of the U(1) flow (f64): gauge equivariance, invertibility, the log-Jacobian
//! against a finite-difference Jacobian, and gradcheck of the training loss.

use crate::common;
use crate::u1_common;

use common::log_abs_det;
use latflow_flow::model::{Layer, Record};
use latflow_flow::train::TapeAction;
use latflow_flow::u1::{topological_charges, GaugeEquivCoupling, U1FlowConfig, U1GaugeAction};
use latflow_physics::u1::wrap_angle;
use latflow_physics::{Lattice, U1};
use latflow_tensor::{gradcheck, GradcheckConfig, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::f64::consts::PI;
use u1_common::{push, random_links, strong_flow};

/// flow(g.U) vs g.flow(U), angles compared with wrap, and log q(g.U) vs log q(U): both
/// sides evaluate the same plaquettes up to a 2 pi k shift, so they agree to rounding
/// of O(10) angle operations per layer over 16 layers.
const EQUIVARIANCE_TOL: f64 = 1e-9;
/// reverse(forward(U)) vs U (wrapped) and the log-Jacobians of the two passes: the
/// numerical inverse is at the f64 floor (~1e-14 per plaquette, see u1_ncp.rs), 16
/// layers compound it.
const ROUNDTRIP_TOL: f64 = 1e-9;
/// Sum of log-Jacobians vs log|det| of a central-difference Jacobian (step 1e-6, error
/// ~h^2 f''' + 1e-16/h per entry, ~1e-9 on entries of size O(1)).
const FD_LOGDET_TOL: f64 = 1e-6;

/// Gradcheck settings for the 16-layer flow. A central difference is wrong when a
/// LeakyReLU pre-activation lies within the step of its kink; 16 layers hold ~3e4
/// pre-activations that a bias moves, so at the default step 1e-5 about one of them is
/// hit per run (seen here: a 3e-3 error at step 1e-5 that vanished at 1e-6 and 1e-7).
/// Step 3e-6 makes that 3x rarer; its rounding noise (~2e-9 absolute on a loss of
/// size ~50) is judged against a floor of 1e-2, i.e. gradients below 1e-2 must agree to
/// 1e-8 absolute (truncation error ~h^2 = 1e-11).
const DEEP_GRADCHECK: GradcheckConfig = GradcheckConfig { step: 3e-6, floor: 1e-2, tolerance: 1e-6, seed: 0 };

fn wrapped_max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| wrap_angle(x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn flow_is_gauge_equivariant_and_density_gauge_invariant() {
    let l = 8;
    let flow = strong_flow(&U1FlowConfig::default(), 11, 4.0);
    let u = random_links(4, l, 12);
    let g = U1::new(Lattice::new(&[l, l]), 1.0);
    let mut rng = StdRng::seed_from_u64(13);
    let alphas: Vec<Vec<f64>> = (0..4).map(|_| (0..l * l).map(|_| rng.gen_range(0.0..2.0 * PI)).collect()).collect();
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
    let (fu, lj) = push(&flow, &u);
    let (fgu, lj_g) = push(&flow, &transform(&u));
    let gfu = transform(&fu);
    let d = wrapped_max_diff(fgu.data(), gfu.data());
    assert!(d < EQUIVARIANCE_TOL, "flow(g.U) - g.flow(U) = {d:e}");
    for (a, b) in lj.iter().zip(&lj_g) {
        assert!((a - b).abs() < EQUIVARIANCE_TOL * a.abs().max(1.0), "log J {a} vs {b}");
    }
    // and the flow moves the links a lot (the audit is not trivially true)
    assert!(wrapped_max_diff(fu.data(), u.data()) > 1.0);
    // the plaquette-level observables are gauge invariant too
    let (q, qg) = (topological_charges(&fu), topological_charges(&gfu));
    for (a, b) in q.iter().zip(&qg) {
        assert!((a - b).abs() < EQUIVARIANCE_TOL);
    }
}

#[test]
fn reverse_inverts_forward_and_log_jacobians_cancel() {
    let l = 8;
    let flow = strong_flow(&U1FlowConfig::default(), 21, 4.0);
    let z: Tensor<f64> = flow.prior.sample(8, &mut StdRng::seed_from_u64(22));
    let log_r = flow.prior.log_prob(&z);
    let params = flow.param_vars(Record::Off);
    let (x, logq) = flow.forward(Var::constant(z.clone()), Var::constant(log_r), &params);
    let (z_back, logq_back) = flow.reverse(x.value());
    let dz = wrapped_max_diff(z_back.data(), z.data());
    let dq = logq.value().data().iter().zip(logq_back.data()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    println!("round trip: max |dz| {dz:.2e}, max |d log q| {dq:.2e}");
    assert!(dz < ROUNDTRIP_TOL, "reverse(forward(z)) - z = {dz:e}");
    assert!(dq < ROUNDTRIP_TOL, "log q forward vs reverse differ by {dq:e}");
    assert!(z_back.data().iter().all(|v| (0.0..2.0 * PI).contains(v)));
    // per layer: the reverse's log-Jacobian is the forward's at the preimage
    let layer = &flow.layers()[5];
    let p: Vec<Var<f64>> = flow.param_vars(Record::Off)[5 * 6..6 * 6].to_vec();
    let u = random_links(3, l, 23);
    let (y, lj) = layer.forward(&Var::constant(u.clone()), &p);
    let (u_back, lj_back) = layer.reverse(&y, &p);
    assert!(wrapped_max_diff(u_back.value().data(), u.data()) < ROUNDTRIP_TOL);
    for (a, b) in lj.value().data().iter().zip(lj_back.value().data()) {
        assert!((a - b).abs() < ROUNDTRIP_TOL, "layer log J {a} vs {b}");
    }
}

#[test]
fn log_jacobian_equals_finite_difference_log_det_on_4x4() {
    let (l, nb) = (4, 3);
    // 8 layers: both directions, all four offsets (one active stripe per layer on 4x4)
    let config = U1FlowConfig { l, layers: 8, ..U1FlowConfig::default() };
    let flow = strong_flow(&config, 31, 4.0);
    let z = random_links(nb, l, 32);
    let (_, logj) = push(&flow, &z);
    let dof = 2 * l * l;
    let h = 1e-6;
    // jac[b][i][j] = d x_i / d z_j for sample b; samples are independent, so perturb
    // coordinate j of every sample at once
    let mut jac = vec![vec![vec![0.0; dof]; dof]; nb];
    for j in 0..dof {
        let mut zp = z.clone();
        let mut zm = z.clone();
        for b in 0..nb {
            zp.data_mut()[b * dof + j] += h;
            zm.data_mut()[b * dof + j] -= h;
        }
        let (xp, _) = push(&flow, &zp);
        let (xm, _) = push(&flow, &zm);
        for b in 0..nb {
            for i in 0..dof {
                let k = b * dof + i;
                jac[b][i][j] = wrap_angle(xp.data()[k] - xm.data()[k]) / (2.0 * h);
            }
        }
    }
    for b in 0..nb {
        let fd = log_abs_det(jac[b].clone());
        println!("sample {b}: log J {:.10} vs FD log|det| {fd:.10}", logj[b]);
        assert!((fd - logj[b]).abs() < FD_LOGDET_TOL, "sample {b}: log J {} vs FD {fd}", logj[b]);
        assert!(logj[b].abs() > 0.5, "the audit needs a non-trivial Jacobian, got {}", logj[b]);
    }
}

/// The training loss `mean(log q + S)` less the constant `log r = -V_links ln 2 pi`
/// (same gradient; dropping the constant of size ~60 per sample keeps the rounding noise
/// of the central differences, ~1e-16 |loss| / h, well below the tolerance).
fn loss(flow: &latflow_flow::model::Flow<f64>, z: &Tensor<f64>, params: &[Var<f64>], beta: f64) -> Var<f64> {
    let log_r = Var::constant(Tensor::zeros(&[z.shape()[0]]));
    let (x, logq) = flow.forward(Var::constant(z.clone()), log_r, params);
    logq.add(&U1GaugeAction { beta }.action(&x)).mean()
}

#[test]
fn gradcheck_loss_wrt_every_parameter_of_a_small_flow() {
    // 4x4, 4 layers (mu = 0, 1 at offsets 0, 1), hidden [4, 4] to keep the 2 x 1340
    // loss evaluations fast: every element of every parameter tensor of every layer
    let config = U1FlowConfig { l: 4, layers: 4, hidden: vec![4, 4], ..U1FlowConfig::default() };
    let flow = strong_flow(&config, 41, 3.0);
    let z = random_links(2, 4, 42);
    let inputs: Vec<Tensor<f64>> = flow.named_params().into_iter().map(|(_, t)| t.clone()).collect();
    let report = gradcheck(|v: &[Var<f64>]| loss(&flow, &z, v, 2.0), &inputs, GradcheckConfig::default());
    println!("small flow: max rel {:.2e}, max abs {:.2e}", report.max_rel(), report.max_abs());
    assert!(report.passed(), "{report:?}");
}

#[test]
fn gradcheck_loss_wrt_a_sample_of_every_layer_of_the_default_flow() {
    // 8x8, 16 layers: the biases of all three convolutions of every layer are audited,
    // the weights enter as constants (the small-flow test audits weights too).
    let flow = strong_flow(&U1FlowConfig::default(), 51, 1.0);
    let z = random_links(2, 8, 52);
    let all: Vec<Tensor<f64>> = flow.named_params().into_iter().map(|(_, t)| t.clone()).collect();
    let names: Vec<String> = flow.named_params().into_iter().map(|(n, _)| n).collect();
    let audited: Vec<usize> = (0..all.len()).filter(|&i| names[i].ends_with("bias")).collect();
    assert_eq!(audited.len(), 16 * 3);
    let inputs: Vec<Tensor<f64>> = audited.iter().map(|&i| all[i].clone()).collect();
    let f = |v: &[Var<f64>]| {
        let mut params: Vec<Var<f64>> = all.iter().map(|t| Var::constant(t.clone())).collect();
        for (k, &i) in audited.iter().enumerate() {
            params[i] = v[k].clone();
        }
        loss(&flow, &z, &params, 2.0)
    };
    let report = gradcheck(f, &inputs, DEEP_GRADCHECK);
    println!("default flow biases: max rel {:.2e}, max abs {:.2e}", report.max_rel(), report.max_abs());
    assert!(report.passed(), "{report:?}");
}

#[test]
fn fast_forward_equals_the_tutorials_masked_forward_bit_for_bit() {
    let flow = strong_flow(&U1FlowConfig::default(), 61, 3.0);
    let params = flow.param_vars(Record::Params);
    let u = random_links(3, 8, 62);
    let mut at = 0;
    for (i, layer) in flow.layers().iter().enumerate() {
        let p = &params[at..at + 6];
        at += 6;
        let x = Var::constant(u.clone());
        let (y, lj) = layer.forward(&x, p);
        let (ym, ljm) = as_gauge(layer.as_ref()).forward_masked(&x, p);
        assert_eq!(y.value(), ym.value(), "layer {i}: links differ");
        for (a, b) in lj.value().data().iter().zip(ljm.value().data()) {
            assert!((a - b).abs() <= 1e-12 * a.abs().max(1.0), "layer {i}: log J {a} vs {b}");
        }
        // and the same gradients
        let proj = Tensor::<f64>::uniform(y.shape(), -1.0, 1.0, &mut StdRng::seed_from_u64(i as u64));
        let pv = Var::constant(proj);
        let g = y.mul(&pv).sum().add(&lj.sum()).backward();
        let gm = ym.mul(&pv).sum().add(&ljm.sum()).backward();
        for q in p {
            let (a, b) = (g.get_or_zeros(q), gm.get_or_zeros(q));
            for (x, y) in a.data().iter().zip(b.data()) {
                assert!((x - y).abs() <= 1e-10 * x.abs().max(1.0), "layer {i}: gradient {x} vs {y}");
            }
        }
    }
    // f32 too: the values the training path computes
    let flow32 = U1FlowConfig::default().build::<f32>(&mut StdRng::seed_from_u64(63));
    let p32 = flow32.param_vars(Record::Off);
    let u32_: Tensor<f32> = u.cast();
    for (i, layer) in flow32.layers().iter().enumerate() {
        let x = Var::constant(u32_.clone());
        let (y, _) = layer.forward(&x, &p32[6 * i..6 * i + 6]);
        let (ym, _) = as_gauge(layer.as_ref()).forward_masked(&x, &p32[6 * i..6 * i + 6]);
        assert_eq!(y.value(), ym.value(), "f32 layer {i}");
    }
}

/// The concrete gauge-equivariant coupling behind a layer of a U(1) flow.
fn as_gauge<T: latflow_tensor::Float>(layer: &dyn Layer<T>) -> &GaugeEquivCoupling<T> {
    layer.as_any().downcast_ref().expect("U(1) flows hold gauge-equivariant couplings")
}
