//! Audits of the Z2-equivariant coupling ([`latflow_flow::phi4::Z2Coupling`], both kinds) and
//! of a flow's Z2 mixture ([`latflow_flow::z2`]), in f64: equivariance `f(-z) = -f(z)`,
//! `log J(-z) = log J(z)`; round trips and the finite-difference log-det (4x4); gradchecks of
//! the training loss through the Z2 layers and of the mixture loss (whose `log q(-x)` is the
//! reverse pass on the tape); the mixture's normalization by importance sampling; the
//! mixture as a proposal source; checkpoints.

use latflow_flow::checkpoint::{load_params, save};
use latflow_flow::model::{Flow, Record};
use latflow_flow::phi4::{Coupling, Phi4FlowConfig, PriorKind, Z2Coupling, Z2Kind};
use latflow_flow::train::{Objective, TrainConfig, Trainer};
use latflow_flow::z2::{mixture_log_prob_var, Z2Mixture};
use latflow_io::safetensors::SafeTensors;
use latflow_physics::phi4_action_var;
use latflow_sampler::ensemble::ProposalSource;
use latflow_tensor::{gradcheck, AdamConfig, GradcheckConfig, Tensor, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeMap;

use crate::common;
use common::log_abs_det;

/// `f(-z) + f(z)` and `log J(-z) - log J(z)`: exact negations in the symmetrized kind,
/// tanh's odd symmetry up to its last bit in the odd-net kind, over 16 layers.
const EQUIVARIANCE_TOL: f64 = 1e-12;
/// `reverse(forward(x)) - x` and cancelling log-Jacobians (as in `phi4_flow.rs`).
const ROUNDTRIP_TOL: f64 = 1e-8;
/// Sum of log-Jacobians vs the central-difference log|det| (as in `phi4_flow.rs`).
const FD_LOGDET_TOL: f64 = 1e-6;
/// Central-difference step of the Jacobian.
const FD_STEP: f64 = 1e-5;
/// Sigma allowed by the seeded statistical tests.
const N_SIGMA: f64 = 4.0;
/// The tutorial's couplings.
const M2: f64 = -4.0;
/// The tutorial's quartic coupling.
const LAM: f64 = 8.0;

const KINDS: [Z2Kind; 2] = [Z2Kind::Symmetrized, Z2Kind::OddNet];

/// A flow whose parameters are the init plus N(0, sigma^2) noise (far from the identity).
fn perturbed_flow(config: &Phi4FlowConfig, seed: u64, sigma: f64) -> Flow<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut flow = config.build::<f64>(&mut rng);
    for p in flow.params_mut() {
        let noise = Tensor::<f64>::randn(p.shape(), &mut rng);
        for (v, e) in p.data_mut().iter_mut().zip(noise.data()) {
            *v += sigma * e;
        }
    }
    flow
}

fn z2(kind: Z2Kind, l: usize, layers: usize) -> Phi4FlowConfig {
    Phi4FlowConfig { l, layers, coupling: Coupling::Z2(kind), ..Phi4FlowConfig::default() }
}

/// `(f(z), log q)` with constant parameters.
fn push(flow: &Flow<f64>, z: &Tensor<f64>) -> (Tensor<f64>, Tensor<f64>) {
    let params = flow.param_vars(Record::Off);
    let log_r = flow.prior.log_prob(z);
    let (x, logq) = flow.forward(Var::constant(z.clone()), Var::constant(log_r), &params);
    (x.value().clone(), logq.value().clone())
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn neg(t: &Tensor<f64>) -> Tensor<f64> {
    t.map(|v| -v)
}

#[test]
fn z2_couplings_are_equivariant_and_the_plain_one_is_not() {
    for kind in KINDS {
        let flow = perturbed_flow(&z2(kind, 8, 16), 1, 0.15);
        let z: Tensor<f64> = flow.prior.sample(4, &mut StdRng::seed_from_u64(2));
        let params = flow.param_vars(Record::Off);
        // layer by layer, then the whole flow
        let mut h = z.clone();
        for (i, layer) in flow.layers().iter().enumerate() {
            let p = flow.layer_params(i, &params);
            let (y, lj) = layer.forward(&Var::constant(h.clone()), p);
            let (ym, ljm) = layer.forward(&Var::constant(neg(&h)), p);
            let dy = max_abs_diff(ym.value().data(), neg(y.value()).data());
            let dl = max_abs_diff(ljm.value().data(), lj.value().data());
            assert!(dy < EQUIVARIANCE_TOL && dl < EQUIVARIANCE_TOL, "{kind:?} layer {i}: {dy:e}, {dl:e}");
            h = y.value().clone();
        }
        let (x, logq) = push(&flow, &z);
        let (xm, logqm) = push(&flow, &neg(&z));
        let (dx, dq) = (max_abs_diff(xm.data(), neg(&x).data()), max_abs_diff(logqm.data(), logq.data()));
        let moved = max_abs_diff(x.data(), z.data());
        println!("{kind:?}: max |f(-z) + f(z)| {dx:.1e}, max |d log q| {dq:.1e}, max |x - z| {moved:.2}");
        assert!(dx < EQUIVARIANCE_TOL && dq < EQUIVARIANCE_TOL, "{kind:?}: {dx:e} {dq:e}");
        assert!(moved > 1.0, "{kind:?}: flow too close to the identity");
    }
    // teeth: the tutorial's coupling (biases, LeakyReLU) is not equivariant
    let plain = perturbed_flow(&Phi4FlowConfig { layers: 4, ..Phi4FlowConfig::default() }, 1, 0.3);
    let z: Tensor<f64> = plain.prior.sample(4, &mut StdRng::seed_from_u64(2));
    let d = max_abs_diff(push(&plain, &neg(&z)).0.data(), neg(&push(&plain, &z).0).data());
    assert!(d > 1e-2, "the plain coupling looks equivariant ({d:e})");
}

#[test]
fn z2_layers_round_trip_with_cancelling_log_jacobians() {
    for kind in KINDS {
        let flow = perturbed_flow(&z2(kind, 8, 8), 3, 0.3);
        let z: Tensor<f64> = flow.prior.sample(6, &mut StdRng::seed_from_u64(4));
        let (x, logq) = push(&flow, &z);
        let (zb, logqb) = flow.reverse(&x);
        let (dz, dq) = (max_abs_diff(zb.data(), z.data()), max_abs_diff(logqb.data(), logq.data()));
        println!("{kind:?}: round trip max |dz| {dz:.1e}, |d log q| {dq:.1e}");
        assert!(dz < ROUNDTRIP_TOL && dq < ROUNDTRIP_TOL, "{kind:?}: {dz:e} {dq:e}");
        let params = flow.param_vars(Record::Off);
        let mut h = Var::constant(z.clone());
        for (i, layer) in flow.layers().iter().enumerate() {
            let p = flow.layer_params(i, &params);
            let (y, lj) = layer.forward(&h, p);
            let (back, ljb) = layer.reverse(&y, p);
            assert!(max_abs_diff(back.value().data(), h.value().data()) < ROUNDTRIP_TOL, "{kind:?} layer {i}");
            assert!(max_abs_diff(lj.value().data(), ljb.value().data()) < ROUNDTRIP_TOL, "{kind:?} layer {i}");
            h = y;
        }
    }
}

#[test]
fn z2_log_jacobian_equals_finite_difference_log_det_on_4x4() {
    for kind in KINDS {
        let (l, nb) = (4, 3);
        let flow = perturbed_flow(&z2(kind, l, 4), 11, 0.3);
        let z: Tensor<f64> = flow.prior.sample(nb, &mut StdRng::seed_from_u64(12));
        let log_r = flow.prior.log_prob(&z);
        let (_, logq) = push(&flow, &z);
        let dof = l * l;
        let mut jac = vec![vec![vec![0.0; dof]; dof]; nb];
        for j in 0..dof {
            let (mut zp, mut zm) = (z.clone(), z.clone());
            for b in 0..nb {
                zp.data_mut()[b * dof + j] += FD_STEP;
                zm.data_mut()[b * dof + j] -= FD_STEP;
            }
            let (xp, xm) = (push(&flow, &zp).0, push(&flow, &zm).0);
            for b in 0..nb {
                for i in 0..dof {
                    jac[b][i][j] = (xp.data()[b * dof + i] - xm.data()[b * dof + i]) / (2.0 * FD_STEP);
                }
            }
        }
        for b in 0..nb {
            let logj = log_r.data()[b] - logq.data()[b];
            let fd = log_abs_det(jac[b].clone());
            println!("{kind:?} sample {b}: sum log J {logj:.10} vs FD {fd:.10}");
            assert!((fd - logj).abs() < FD_LOGDET_TOL, "{kind:?} sample {b}: {logj} vs {fd}");
            assert!(logj.abs() > 0.1, "{kind:?}: the audit needs a non-trivial Jacobian, got {logj}");
        }
    }
}

/// Gradcheck of `f(params)` w.r.t. every parameter tensor of `flow`.
fn gradcheck_all(flow: &Flow<f64>, f: impl Fn(&[Var<f64>]) -> Var<f64>, what: &str) {
    let inputs: Vec<Tensor<f64>> = flow.params().into_iter().cloned().collect();
    let report = gradcheck(f, &inputs, GradcheckConfig::default());
    for ((n, _), e) in flow.named_params().iter().zip(&report.inputs) {
        println!("{what} {n:>14}: max rel {:.2e}", e.max_rel);
    }
    assert!(report.passed(), "{what}: {report:?}");
}

#[test]
fn gradcheck_of_the_loss_through_z2_layers() {
    for kind in KINDS {
        // 2 layers on 4x4 keep the symmetrized kind's 2 x 2 x 8 x 16 x 2 = 1024 LeakyReLU
        // inputs few enough that this seed puts none within reach of the kink
        let flow = perturbed_flow(&z2(kind, 4, 2), 31, 0.1);
        let z = flow.prior.sample(2, &mut StdRng::seed_from_u64(32)).map(|v| 0.5 * v);
        let zero = Tensor::zeros(&[2]);
        let f = |p: &[Var<f64>]| {
            let (x, logq) = flow.forward(Var::constant(z.clone()), Var::constant(zero.clone()), p);
            logq.add(&phi4_action_var(&x, M2, LAM)).mean()
        };
        gradcheck_all(&flow, f, &format!("{kind:?}"));
    }
}

#[test]
fn gradcheck_of_the_mixture_loss_through_the_reverse_pass() {
    // the plain coupling (q is not even, so log q(-x) differs from log q(x)) and the free prior
    for prior in [PriorKind::Normal, PriorKind::Free { m2: 0.5 }] {
        let config = Phi4FlowConfig { l: 4, layers: 2, prior, ..Phi4FlowConfig::default() };
        let flow = perturbed_flow(&config, 41, 0.1);
        let z = flow.prior.sample(2, &mut StdRng::seed_from_u64(42)).map(|v| 0.5 * v);
        let log_r = flow.prior.log_prob(&z);
        let f = |p: &[Var<f64>]| {
            let (x, logq) = flow.forward(Var::constant(z.clone()), Var::constant(log_r.clone()), p);
            mixture_log_prob_var(&flow, &x, &logq, p).add(&phi4_action_var(&x, M2, LAM)).mean()
        };
        // the two terms of the mixture both matter at these parameters
        let p = flow.param_vars(Record::Off);
        let (x, logq) = flow.forward(Var::constant(z.clone()), Var::constant(log_r.clone()), &p);
        let lqn = flow.log_prob(&neg(x.value()));
        println!("{prior:?}: log q(x) {:?}, log q(-x) {:?}", logq.value().data(), lqn.data());
        assert!(max_abs_diff(logq.value().data(), lqn.data()) > 0.1);
        gradcheck_all(&flow, f, &format!("mixture {prior:?}"));
    }
}

#[test]
fn mixture_density_matches_the_reverse_passes_and_is_normalized() {
    // q_mix = (q(x) + q(-x)) / 2 on a 2x2 lattice (4 dof): E_g[q_mix / g] = 1 for a broad
    // Gaussian g; the flow q itself is checked the same way
    let config = Phi4FlowConfig { l: 2, layers: 2, kernel: 1, ..Phi4FlowConfig::default() };
    let flow = perturbed_flow(&config, 51, 0.5);
    let mix = Z2Mixture::new(&flow);
    let (n, sg) = (400_000usize, 2.5f64);
    let x: Tensor<f64> = Tensor::randn(&[n, 2, 2], &mut StdRng::seed_from_u64(52)).map(|v| sg * v);
    let log_g: Vec<f64> = x
        .data()
        .chunks(4)
        .map(|c| {
            c.iter().map(|v| -0.5 * (v / sg).powi(2)).sum::<f64>() - 2.0 * (2.0 * std::f64::consts::PI * sg * sg).ln()
        })
        .collect();
    let lq = flow.log_prob(&x);
    let lqn = flow.log_prob(&neg(&x));
    let lmix = mix.log_prob(&x);
    for i in 0..8 {
        let want = ((lq.data()[i].exp() + lqn.data()[i].exp()) / 2.0).ln();
        assert!((lmix[i] - want).abs() < 1e-12, "log q_mix {} vs {want}", lmix[i]);
    }
    for (name, lp) in [("q", lq.data().to_vec()), ("q_mix", lmix)] {
        let w: Vec<f64> = lp.iter().zip(&log_g).map(|(a, b)| (a - b).exp()).collect();
        let mean = w.iter().sum::<f64>() / n as f64;
        let err = (w.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0) / n as f64).sqrt();
        println!("int {name} = {mean:.4} +- {err:.4}");
        assert!((mean - 1.0).abs() < N_SIGMA * err && err < 0.02, "{name}: {mean} +- {err}");
    }
}

#[test]
fn mixture_of_an_equivariant_flow_is_the_flow() {
    let flow = perturbed_flow(&z2(Z2Kind::OddNet, 4, 4), 61, 0.3);
    let (x, logq) = flow.sample(8, &mut StdRng::seed_from_u64(62));
    let lmix = Z2Mixture::new(&flow).log_prob(&x);
    let d = max_abs_diff(&lmix, logq.data());
    assert!(d < 1e-10, "log q_mix - log q = {d:e}");
}

#[test]
fn mixture_proposals_are_signed_flow_samples_with_their_mixture_density() {
    let flow = perturbed_flow(&Phi4FlowConfig { l: 4, layers: 4, ..Phi4FlowConfig::default() }, 71, 0.3);
    let mix = Z2Mixture::new(&flow);
    let n = 4000;
    let (phi, lq) = mix.propose(n, &mut StdRng::seed_from_u64(72));
    // the same rng draws the flow's samples first, then the signs
    let (x, _) = flow.sample(n, &mut StdRng::seed_from_u64(72));
    let mut flipped = 0;
    for (p, x) in phi.chunks(16).zip(x.data().chunks(16)) {
        if max_abs_diff(p, x) == 0.0 {
        } else if p.iter().zip(x).all(|(a, b)| *a == -*b) {
            flipped += 1;
        } else {
            panic!("a proposal is neither x nor -x");
        }
    }
    // fair signs: flipped ~ Binomial(n, 1/2)
    let sd = (n as f64 / 4.0).sqrt();
    println!("flipped {flipped} of {n} (expected {} +- {sd:.0})", n / 2);
    assert!((flipped as f64 - n as f64 / 2.0).abs() < N_SIGMA * sd);
    let want = mix.log_prob(&Tensor::from_vec(&[n, 4, 4], phi));
    assert!(max_abs_diff(&lq, &want) < 1e-10);
}

#[test]
fn mixture_objective_equals_the_flow_objective_for_an_equivariant_flow_and_trains() {
    let config = z2(Z2Kind::Symmetrized, 4, 2);
    let action = |x: &Var<f64>| phi4_action_var(x, M2, LAM);
    let tc = TrainConfig { batch: 16, adam: AdamConfig::default(), lr_final: None, steps: 3, seed: 5 };
    let run = |objective| {
        let mut tr = Trainer::new(config.build::<f64>(&mut StdRng::seed_from_u64(81)), tc.clone());
        tr.objective = objective;
        (0..3).map(|_| tr.step(&action).unwrap()).collect::<Vec<_>>()
    };
    let (a, b) = (run(Objective::Flow), run(Objective::Z2Mixture));
    for (ma, mb) in a.iter().zip(&b) {
        println!("step {}: loss {:.12} vs {:.12}", ma.step, ma.loss, mb.loss);
        assert!((ma.loss - mb.loss).abs() < 1e-9 && (ma.ess - mb.ess).abs() < 1e-9);
    }
    // a plain flow: the mixture loss is below the flow's own (log q_mix >= log q - log 2
    // elementwise, and here q(-x) << q(x) is not the case everywhere)
    let plain = Phi4FlowConfig { l: 4, layers: 2, ..Phi4FlowConfig::default() };
    let mut tr = Trainer::new(plain.build::<f64>(&mut StdRng::seed_from_u64(82)), tc.clone());
    tr.objective = Objective::Z2Mixture;
    assert_eq!(tr.objective.check(&tr.flow), Ok(()));
    // the U(1) flow's Haar prior has no tape form: an error before training, not a panic
    let u1 = latflow_flow::u1::U1FlowConfig { l: 4, layers: 2, ..Default::default() }
        .build::<f64>(&mut StdRng::seed_from_u64(0));
    assert!(Objective::Z2Mixture.check(&u1).unwrap_err().contains("tape form"));
    assert_eq!(Objective::Flow.check(&u1), Ok(()));
    for _ in 0..3 {
        let m = tr.step(&action).unwrap();
        assert!(m.loss.is_finite() && m.ess > 0.0 && m.ess <= 1.0);
    }
}

#[test]
fn z2_and_free_prior_checkpoints_round_trip_and_old_checkpoints_still_load() {
    let dir = std::env::temp_dir().join(format!("latflow-z2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, config) in [z2(Z2Kind::Symmetrized, 8, 4), z2(Z2Kind::OddNet, 8, 4)].iter().enumerate() {
        let trained = perturbed_flow(config, 90 + i as u64, 0.2);
        let path = dir.join(format!("z2_{i}.safetensors"));
        save(&path, &trained, &BTreeMap::new()).unwrap();
        let mut loaded = config.build::<f64>(&mut StdRng::seed_from_u64(0));
        assert_ne!(loaded, trained);
        load_params(&SafeTensors::read(&path).unwrap(), &mut loaded).unwrap();
        assert_eq!(loaded, trained);
        println!(
            "{:?}: {:?}",
            config.coupling,
            trained.named_params().iter().take(6).map(|p| &p.0).collect::<Vec<_>>()
        );
    }
    // a checkpoint of the default architecture loads into a free-prior flow (a prior has no
    // parameters) and the odd-net kind refuses it (other names)
    let plain = Phi4FlowConfig { layers: 4, ..Phi4FlowConfig::default() };
    let path = dir.join("plain.safetensors");
    save(&path, &perturbed_flow(&plain, 99, 0.2), &BTreeMap::new()).unwrap();
    let st = SafeTensors::read(&path).unwrap();
    let mut free = Phi4FlowConfig { prior: PriorKind::Free { m2: 0.5 }, ..plain.clone() }
        .build::<f64>(&mut StdRng::seed_from_u64(0));
    load_params(&st, &mut free).unwrap();
    let mut odd =
        Phi4FlowConfig { coupling: Coupling::Z2(Z2Kind::OddNet), ..plain }.build::<f64>(&mut StdRng::seed_from_u64(0));
    assert!(load_params(&st, &mut odd).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn default_architecture_is_unchanged() {
    let d = Phi4FlowConfig::default();
    assert_eq!((d.coupling, d.prior), (Coupling::Affine, PriorKind::Normal));
    assert!(Phi4FlowConfig { prior: PriorKind::Free { m2: 0.0 }, ..d.clone() }.validate().is_err());
    // a Z2 layer is what the builder made
    let f = z2(Z2Kind::OddNet, 4, 2).build::<f64>(&mut StdRng::seed_from_u64(0));
    let l = f.layers()[0].as_any().downcast_ref::<Z2Coupling<f64>>().unwrap();
    assert_eq!(l.kind(), Z2Kind::OddNet);
}

#[test]
fn coupling_and_prior_names_round_trip() {
    for c in [Coupling::Affine, Coupling::Z2(Z2Kind::Symmetrized), Coupling::Z2(Z2Kind::OddNet)] {
        assert_eq!(c.to_string().parse::<Coupling>(), Ok(c));
    }
    for p in [PriorKind::Normal, PriorKind::Free { m2: 0.67 }, PriorKind::Free { m2: 1.0 / 3.0 }] {
        assert_eq!(p.to_string().parse::<PriorKind>(), Ok(p));
    }
    assert_eq!(Coupling::default().to_string(), "affine");
    assert_eq!(PriorKind::default().to_string(), "normal");
    for bad in ["free:0", "free:-1", "free:nan", "free:inf", "free:", "free", "Normal", ""] {
        assert!(bad.parse::<PriorKind>().is_err(), "{bad}");
    }
    assert!("z2".parse::<Coupling>().unwrap_err().contains("z2sym"));
}
