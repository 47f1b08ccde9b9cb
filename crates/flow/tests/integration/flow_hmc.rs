//! Audits of flow-HMC through real flows (f64, small lattices; the sampler core is
//! `latflow_sampler::flow_hmc`, HMC on `U(z) = S(f(z)) - log|det J_f(z)|`, Foreman et al.
//! arXiv:2112.01586):
//! - the force (one input-only reverse sweep of the flow) against central differences of U;
//! - a trajectory, a momentum flip and the same trajectory return to the start;
//! - with the identity flow (no layers) flow-HMC is plain HMC, trajectory for trajectory;
//! - `<exp(-dH)> = 1`, and the images `x = f(z)` sample `exp(-S)` (which `<exp(-dH)>` alone
//!   does not show: a wrong log-Jacobian still conserves it).

use crate::u1_common;

use latflow_comm::Comm;
use latflow_flow::model::Flow;
use latflow_flow::net::Activation;
use latflow_flow::phi4::Phi4FlowConfig;
use latflow_flow::prior::NormalPrior;
use latflow_flow::u1::{CircleMixture, HaarPrior, PlaquetteU1, U1FlowConfig, UltralocalU1};
use latflow_physics::u1::{exact_q2_2d, wrap_angle};
use latflow_physics::{Action, Lattice, Phi4, U1};
use latflow_sampler::flow_hmc::{
    latent_start, run_flow_hmc, run_flow_hmc_over, FlowHmcChains, LatentMap, LatentPotential,
};
use latflow_sampler::hmc::{
    chain_seed, kinetic, leapfrog_with, ChainRecord, HmcChain, HmcConfig, Integrator, RunConfig,
};
use latflow_sampler::stats::{gamma_method_replicas, S_TAU_DEFAULT};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use std::f64::consts::PI;
use u1_common::strong_flow;

/// Central differences of U (step 1e-6: truncation ~1e-12 U''', rounding ~1e-16 |U| / 1e-6
/// ~ 1e-9 on |U| ~ 30) against the force, relative to max(|dU/dz|, 1).
const FD_TOL: f64 = 1e-6;
/// A 10-step trajectory, a momentum flip and the same 10 steps back (the 1e-10).
const REVERSE_TOL: f64 = 1e-10;
/// Flow-HMC with the identity flow vs plain HMC: the same arithmetic except U(1)'s angles,
/// which flow-HMC wraps before the action (a rounding of 2 pi k per link).
const IDENTITY_TOL: f64 = 1e-12;
/// `f(f^{-1}(x0))` vs `x0` for U(1) (the NCP inverse, as `u1_flow.rs`'s round trip).
const START_TOL: f64 = 1e-9;
/// How far from the mean a statistical check may be, in (autocorrelation-aware) sigma.
const SIGMAS: f64 = 3.0;
/// One leapfrog step's energy error of a smooth map is `c eps^3 + O(eps^4)`: from `eps =
/// 0.004` to `0.001` it falls by 64, up to the next order (a chain whose `c` is small
/// relative to the `eps^4` term reads off 64 by tens of percent; seen: 43 to 75) and the
/// rounding of dH ~ 1e-10 (1e-14 on |H| ~ 100): a factor 2 either way.
const EPS3_LOW: f64 = 32.0;
const EPS3_HIGH: f64 = 128.0;

/// A phi^4 flow of 4 affine couplings with O(1) scales and shifts (last convolutions x1.5; x3 makes the
/// quartic action so steep that a step of 0.1 blows up).
fn strong_phi4(l: usize, seed: u64) -> Flow<f64> {
    let config = Phi4FlowConfig { l, layers: 4, hidden: vec![4], ..Phi4FlowConfig::default() };
    let mut flow = config.build::<f64>(&mut StdRng::seed_from_u64(seed));
    u1_common::scale_last_convolutions(&mut flow, 1.5);
    flow
}

fn small_u1(seed: u64) -> Flow<f64> {
    strong_flow(&U1FlowConfig { l: 4, layers: 4, hidden: vec![4], ..U1FlowConfig::default() }, seed, 3.0)
}

fn normals(n: usize, rng: &mut StdRng) -> Vec<f64> {
    (0..n).map(|_| rng.sample::<f64, _>(StandardNormal)).collect()
}

fn check_force(map: &dyn LatentMap, action: &dyn Action, z: &[f64]) {
    let pot = LatentPotential::new(map, action);
    let (d, n) = (map.dof(), z.len() / map.dof());
    let (mut x, mut u, mut f) = (vec![0.0; z.len()], vec![0.0; n], vec![0.0; z.len()]);
    pot.potential_force(z, &mut x, &mut u, &mut f);
    assert!(f.iter().all(|v| v.is_finite()) && f.iter().any(|v| v.abs() > 1e-3));
    let h = 1e-6;
    for i in (0..z.len()).step_by(7) {
        let at = |delta: f64| {
            let mut zz = z.to_vec();
            zz[i] += delta;
            let (mut x, mut u) = (vec![0.0; z.len()], vec![0.0; n]);
            pot.potential(&zz, &mut x, &mut u);
            u[i / d]
        };
        let fd = (at(h) - at(-h)) / (2.0 * h);
        assert!(
            (fd - f[i]).abs() < FD_TOL * fd.abs().max(1.0),
            "dU/dz[{i}]: central difference {fd} vs force {}",
            f[i]
        );
    }
}

#[test]
fn force_is_the_gradient_of_s_of_f_minus_log_det() {
    let mut rng = StdRng::seed_from_u64(1);
    let flow = strong_phi4(4, 2);
    let phi4 = Phi4::new(Lattice::new(&[4, 4]), -1.0, 0.5);
    check_force(&flow, &phi4, &normals(2 * 16, &mut rng));
    let flow = small_u1(3);
    let u1 = U1::new(Lattice::new(&[4, 4]), 2.0);
    let z: Vec<f64> = (0..2 * 32).map(|_| rng.gen_range(0.0..2.0 * PI)).collect();
    check_force(&flow, &u1, &z);
    check_force(&strong_flow(&small_u1_config(Activation::Tanh), 3, 3.0), &u1, &z);
    check_force(&PlaquetteU1::new(4, CircleMixture::new(vec![-1.5, -0.3])), &u1, &z);
}

fn check_reversible(pot: LatentPotential, z0: Vec<f64>, rng: &mut StdRng) {
    let n = z0.len() / pot.dof();
    let p0 = normals(z0.len(), rng);
    let (mut z, mut p, mut f) = (z0.clone(), p0.clone(), vec![0.0; z0.len()]);
    let (mut x, mut u) = (vec![0.0; z0.len()], vec![0.0; n]);
    pot.potential_force(&z, &mut x, &mut u, &mut f);
    let h0: f64 = u.iter().sum::<f64>() + kinetic(&p);
    let mut run = |z: &mut Vec<f64>, p: &mut Vec<f64>, f: &mut Vec<f64>| {
        leapfrog_with(z, p, f, 0.1, 10, |z, f| pot.potential_force(z, &mut x, &mut u, f));
    };
    run(&mut z, &mut p, &mut f);
    let moved = z.iter().zip(&z0).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(moved > 0.1, "the trajectory did not move ({moved})");
    let (mut x1, mut u1) = (vec![0.0; z0.len()], vec![0.0; n]);
    pot.potential(&z, &mut x1, &mut u1);
    let dh = u1.iter().sum::<f64>() + kinetic(&p) - h0;
    assert!(dh.abs() < 0.5 * h0.abs().max(1.0), "dH = {dh} is not small");
    for v in p.iter_mut() {
        *v = -*v;
    }
    run(&mut z, &mut p, &mut f);
    let dz = z.iter().zip(&z0).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    let dp = p.iter().zip(&p0).map(|(a, b)| (a + b).abs()).fold(0.0, f64::max);
    println!("back at the start to |dz| {dz:e}, |dp| {dp:e}");
    assert!(dz < REVERSE_TOL && dp < REVERSE_TOL, "back at the start to |dz| {dz:e}, |dp| {dp:e}");
}

#[test]
fn trajectory_momentum_flip_trajectory_returns_to_the_start() {
    let mut rng = StdRng::seed_from_u64(4);
    let phi4 = Phi4::new(Lattice::new(&[4, 4]), -1.0, 0.5);
    let z0 = normals(3 * 16, &mut rng);
    check_reversible(LatentPotential::new(&strong_phi4(4, 5), &phi4), z0, &mut rng);
    let u1 = U1::new(Lattice::new(&[4, 4]), 2.0);
    let z0: Vec<f64> = (0..3 * 32).map(|_| rng.gen_range(0.0..2.0 * PI)).collect();
    check_reversible(LatentPotential::new(&small_u1(6), &u1), z0.clone(), &mut rng);
    let plaquette = PlaquetteU1::new(4, CircleMixture::new(vec![-1.5, -0.3]));
    check_reversible(LatentPotential::new(&plaquette, &u1), z0, &mut rng);
}

/// Flow-HMC through a flow without layers against `HmcChain`, chain by chain with the same
/// generators: the same configurations, dH and decisions after every trajectory.
fn check_identity(flow: &Flow<f64>, action: &dyn Action, x0: Vec<f64>, wrapped: bool) {
    let (d, n) = (action.dof(), x0.len() / action.dof());
    let cfg = HmcConfig { trajectory_length: 1.0, n_steps: 7, flip: false, integrator: Integrator::Leapfrog };
    let mut rngs: Vec<StdRng> = (0..n).map(|c| StdRng::seed_from_u64(chain_seed(9, c))).collect();
    let mut plain_rngs = rngs.clone();
    let mut chains = FlowHmcChains::new(LatentPotential::new(flow, action), latent_start(flow, &x0));
    let mut plain: Vec<HmcChain> = x0.chunks(d).map(|x| HmcChain::new(action, x.to_vec())).collect();
    let (mut accepted, mut rejected) = (0, 0);
    for t in 0..30 {
        let infos = chains.trajectory(&cfg, &mut rngs);
        for (c, info) in infos.iter().enumerate() {
            let pi = plain[c].trajectory(action, &cfg, &mut plain_rngs[c]);
            assert_eq!(info.accepted, pi.accepted, "trajectory {t} chain {c}");
            assert!((info.delta_h - pi.delta_h).abs() < IDENTITY_TOL, "dH {} vs {}", info.delta_h, pi.delta_h);
            let diff = |a: f64, b: f64| if wrapped { wrap_angle(a - b).abs() } else { (a - b).abs() };
            let dx = chains.config(c).iter().zip(plain[c].config()).map(|(a, b)| diff(*a, *b)).fold(0.0, f64::max);
            assert!(dx < IDENTITY_TOL, "trajectory {t} chain {c}: configurations differ by {dx:e}");
            if info.accepted {
                accepted += 1;
            } else {
                rejected += 1;
            }
        }
    }
    assert!(accepted > 10 && rejected > 0, "{accepted} accepted, {rejected} rejected: the comparison is weak");
}

#[test]
fn identity_flow_hmc_is_plain_hmc() {
    let mut rng = StdRng::seed_from_u64(7);
    let phi4 = Phi4::new(Lattice::new(&[6, 6]), -4.0, 8.0);
    let id: Flow<f64> = Flow::new(Box::new(NormalPrior::new(&[6, 6])), Vec::new());
    let x0: Vec<f64> = normals(3 * 36, &mut rng).iter().map(|v| 0.3 * v).collect();
    check_identity(&id, &phi4, x0, false);
    let u1 = U1::new(Lattice::new(&[4, 4]), 3.0);
    let id: Flow<f64> = Flow::new(Box::new(HaarPrior::new(4)), Vec::new());
    let x0: Vec<f64> = (0..3 * 32).map(|_| rng.gen_range(0.0..2.0 * PI)).collect();
    check_identity(&id, &u1, x0, true);
}

/// Chains started from given configurations by the reverse pass sit on them: `f(f^{-1}(x0))
/// = x0` (U(1): the numerical inverse of the NCP mixtures, to [`START_TOL`]).
#[test]
fn chains_started_by_the_reverse_pass_sit_on_the_given_configurations() {
    let flow = small_u1(15);
    let u1 = U1::new(Lattice::new(&[4, 4]), 2.0);
    let mut rng = StdRng::seed_from_u64(16);
    let x0: Vec<f64> = (0..3 * 32).map(|_| rng.gen_range(0.0..2.0 * PI)).collect();
    let z0 = latent_start(&flow, &x0);
    assert!(z0.iter().zip(&x0).any(|(z, x)| wrap_angle(z - x).abs() > 0.1), "the flow moved nothing");
    let chains = FlowHmcChains::new(LatentPotential::new(&flow, &u1), z0);
    for c in 0..3 {
        let d = chains.config(c).iter().zip(&x0[c * 32..(c + 1) * 32]).map(|(a, b)| wrap_angle(a - b).abs());
        let d = d.fold(0.0, f64::max);
        assert!(d < START_TOL, "chain {c} starts {d:e} away from its configuration");
        assert!(chains.latent(c).iter().all(|v| (0.0..2.0 * PI).contains(v)), "z on the torus");
    }
}

fn stat(recs: &[ChainRecord], k: usize) -> latflow_sampler::stats::GammaEstimate {
    let s: Vec<&[f64]> = recs.iter().map(|r| r.observables[k].as_slice()).collect();
    gamma_method_replicas(&s, S_TAU_DEFAULT)
}

fn exp_minus_dh(recs: &[ChainRecord]) -> latflow_sampler::stats::GammaEstimate {
    let series: Vec<Vec<f64>> = recs.iter().map(|r| r.delta_h.iter().map(|d| (-d).exp()).collect()).collect();
    let refs: Vec<&[f64]> = series.iter().map(|s| s.as_slice()).collect();
    gamma_method_replicas(&refs, S_TAU_DEFAULT)
}

/// U(1) on 4x4 at beta = 2 through a 4-layer flow: `<exp(-dH)> = 1` and `<Q^2>` equal to the
/// exact finite-volume value, each within [`SIGMAS`] Gamma-method sigma (8 chains started
/// from the prior, 600 trajectories after 50).
#[test]
fn u1_flow_hmc_conserves_exp_minus_dh_and_samples_the_exact_q2() {
    let flow = small_u1(8);
    let u1 = U1::new(Lattice::new(&[4, 4]), 2.0);
    let z0 = flow.prior.sample(8, &mut StdRng::seed_from_u64(11)).into_vec();
    check_u1_exp_minus_dh_and_q2(LatentPotential::new(&flow, &u1), &u1, z0, 10);
}

/// U(1) on 4x4 at beta = 2, 8 chains of 600 trajectories after 50 from `z0`, measuring
/// `Q^2`: `<exp(-dH)> = 1` and `<Q^2>` equal to the exact finite-volume value, each within
/// [`SIGMAS`] Gamma-method sigma, at an acceptance in (0.3, 1).
fn check_u1_exp_minus_dh_and_q2(pot: LatentPotential, u1: &U1, z0: Vec<f64>, seed: u64) {
    let hmc = HmcConfig { trajectory_length: 1.0, n_steps: 8, flip: false, integrator: Integrator::Leapfrog };
    let cfg = RunConfig { hmc, n_chains: 8, n_therm: 50, n_traj: 600, seed };
    let measure = |x: &[f64], o: &mut [f64]| o[0] = u1.topological_charge(x).powi(2);
    let recs = run_flow_hmc(pot, &cfg, z0, 1, measure, None, None).unwrap();
    let e = exp_minus_dh(&recs);
    assert!((e.mean - 1.0).abs() < SIGMAS * e.error, "<exp(-dH)> = {e}");
    let acc = recs.iter().map(|r| r.acceptance_rate()).sum::<f64>() / 8.0;
    assert!((0.3..1.0).contains(&acc), "acceptance {acc}");
    let q2 = stat(&recs, 0);
    let exact = exact_q2_2d(2.0, 16);
    assert!((q2.mean - exact).abs() < SIGMAS * q2.error, "<Q^2> = {q2}, exact {exact}");
}

/// The same audit through the fused ultralocal map (`UltralocalU1`, what `latflow fhmc`
/// runs for kernel-1 flows), with its f32 force and whole trajectories per thread: `H` from
/// its f64 forward pass, the chains started by its reverse pass from the prior's images.
#[test]
fn ultralocal_flow_hmc_conserves_exp_minus_dh_and_samples_the_exact_q2() {
    let config = U1FlowConfig { l: 4, layers: 8, hidden: vec![1], kernel: 1, ..U1FlowConfig::default() };
    // the nets as initialized: acceptance ~0.9 at 8 steps (scaled up, the map gets stiff and
    // the acceptance too low for <exp(-dH)> to converge in 600 trajectories)
    let flow = strong_flow(&config, 12, 1.0);
    let exact_map = UltralocalU1::from_flow(&flow).expect("kernel 1: ultralocal");
    let force_map = exact_map.clone().f32_force();
    let u1 = U1::new(Lattice::new(&[4, 4]), 2.0);
    let x0 = flow.prior.sample(8, &mut StdRng::seed_from_u64(13)).into_vec();
    let z0 = latent_start(&exact_map, &x0);
    // not the identity: the flow's log-Jacobians are O(1)
    let (mut x, mut ld) = (vec![0.0; z0.len()], vec![0.0; 8]);
    exact_map.forward(&z0, &mut x, &mut ld);
    let spread = ld.iter().map(|v| v.abs()).sum::<f64>() / 8.0;
    assert!(spread > 0.5, "mean |log det J| {spread}: the flow is nearly the identity");
    let pot = LatentPotential::new(&exact_map, &u1).with_force_map(&force_map);
    check_u1_exp_minus_dh_and_q2(pot, &u1, z0, 12);
}

/// The same audit through the plaquette map (`PlaquetteU1`, `latflow fhmc
/// --plaquette-map`), its circle map fitted at beta 1.5 (a partial trivializing map at
/// beta 2): in f64, and with its force on f32 lanes in plaquette space (`H` from the f64 map).
#[test]
fn plaquette_map_flow_hmc_conserves_exp_minus_dh_and_samples_the_exact_q2() {
    let u1 = U1::new(Lattice::new(&[4, 4]), 2.0);
    let exact_map = PlaquetteU1::new(4, CircleMixture::fit(1.5, 2));
    let force_map = exact_map.clone().with_wilson_lanes(2.0);
    let mut rng = StdRng::seed_from_u64(15);
    let x0: Vec<f64> = (0..8 * 32).map(|_| rng.gen_range(0.0..2.0 * PI)).collect();
    let z0 = latent_start(&exact_map, &x0);
    let (mut x, mut ld) = (vec![0.0; z0.len()], vec![0.0; 8]);
    exact_map.forward(&z0, &mut x, &mut ld);
    let spread = ld.iter().map(|v| v.abs()).sum::<f64>() / 8.0;
    assert!(spread > 0.5, "mean |log det J| {spread}: the map is nearly the identity");
    check_u1_exp_minus_dh_and_q2(LatentPotential::new(&exact_map, &u1), &u1, z0.clone(), 14);
    check_u1_exp_minus_dh_and_q2(LatentPotential::new(&exact_map, &u1).with_force_map(&force_map), &u1, z0, 15);
}

/// phi^4 on 4x4 (M2 = -1, lam = 0.5) through a 4-layer flow: `<exp(-dH)> = 1` and `<M^2>`
/// equal to plain HMC's, within [`SIGMAS`] combined sigma.
#[test]
fn phi4_flow_hmc_conserves_exp_minus_dh_and_agrees_with_hmc() {
    let flow = strong_phi4(4, 12);
    let phi4 = Phi4::new(Lattice::new(&[4, 4]), -1.0, 0.5);
    let hmc = HmcConfig { trajectory_length: 1.0, n_steps: 8, flip: false, integrator: Integrator::Leapfrog };
    let cfg = RunConfig { hmc, n_chains: 8, n_therm: 50, n_traj: 600, seed: 13 };
    let z0 = flow.prior.sample(8, &mut StdRng::seed_from_u64(14)).into_vec();
    let m2 = |x: &[f64], o: &mut [f64]| o[0] = (x.iter().sum::<f64>() / 16.0).powi(2);
    let recs = run_flow_hmc(LatentPotential::new(&flow, &phi4), &cfg, z0, 1, m2, None, None).unwrap();
    let e = exp_minus_dh(&recs);
    assert!((e.mean - 1.0).abs() < SIGMAS * e.error, "<exp(-dH)> = {e}");
    let plain_cfg = RunConfig { n_traj: 4000, ..cfg };
    let plain = latflow_sampler::hmc::run_chains(&phi4, &plain_cfg, 1, |_, _| vec![0.0; 16], m2, None);
    let (a, b) = (stat(&recs, 0), stat(&plain, 0));
    assert!((a.mean - b.mean).abs() < SIGMAS * a.error.hypot(b.error), "<M^2>: flow-HMC {a} vs HMC {b}");
    assert!(a.error < 0.1 * a.mean, "flow-HMC <M^2> = {a}: too imprecise to test anything");
}

/// A small U(1) tanh flow (as [`small_u1`]) in f64 and its f32 evaluation (every parameter
/// rounded to f32).
fn mixed_u1(seed: u64) -> (Flow<f64>, Flow<f32>) {
    mixed_u1_on(4, seed)
}

/// [`mixed_u1`] on `l x l`.
fn mixed_u1_on(l: usize, seed: u64) -> (Flow<f64>, Flow<f32>) {
    let config = U1FlowConfig { l, ..small_u1_config(Activation::Tanh) };
    let flow = strong_flow(&config, seed, 3.0);
    let mut f32flow = config.build::<f32>(&mut StdRng::seed_from_u64(0));
    for (dst, src) in f32flow.params_mut().into_iter().zip(flow.params()) {
        for (d, s) in dst.data_mut().iter_mut().zip(src.data()) {
            *d = *s as f32;
        }
    }
    (flow, f32flow)
}

fn small_u1_config(activation: Activation) -> U1FlowConfig {
    U1FlowConfig { l: 4, layers: 4, hidden: vec![4], activation, ..U1FlowConfig::default() }
}

/// Energy error of one leapfrog step of size `eps` from `(z, p)`, per chain.
fn one_step_dh(pot: &LatentPotential, z0: &[f64], p0: &[f64], eps: f64) -> Vec<f64> {
    let n = z0.len() / pot.dof();
    let (mut x, mut u0, mut f) = (vec![0.0; z0.len()], vec![0.0; n], vec![0.0; z0.len()]);
    pot.potential_force(z0, &mut x, &mut u0, &mut f);
    let (mut z, mut p) = (z0.to_vec(), p0.to_vec());
    let mut u1 = vec![0.0; n];
    leapfrog_with(&mut z, &mut p, &mut f, eps, 1, |z, f| pot.potential_force(z, &mut x, &mut u1, f));
    let d = pot.dof();
    (0..n).map(|c| u1[c] + kinetic(&p[c * d..(c + 1) * d]) - u0[c] - kinetic(&p0[c * d..(c + 1) * d])).collect()
}

/// A flow with tanh activations is smooth: one leapfrog step's energy error falls as
/// `eps^3` (x64 from `eps` to `eps / 4`) on every chain. With the tutorial's LeakyReLU the
/// same flow has kinks wherever a hidden unit changes sign, and some chain breaks the law
/// (which shows the check can see one).
#[test]
fn a_tanh_flow_is_smooth_one_leapfrog_step_errs_as_eps_cubed() {
    let u1 = U1::new(Lattice::new(&[4, 4]), 2.0);
    let mut rng = StdRng::seed_from_u64(21);
    let n = 16;
    let z0: Vec<f64> = (0..n * 32).map(|_| rng.gen_range(0.0..2.0 * PI)).collect();
    let p0 = normals(n * 32, &mut rng);
    let ratios = |activation: Activation| -> Vec<f64> {
        let flow = strong_flow(&small_u1_config(activation), 22, 3.0);
        let pot = LatentPotential::new(&flow, &u1);
        let (a, b) = (one_step_dh(&pot, &z0, &p0, 0.004), one_step_dh(&pot, &z0, &p0, 0.001));
        a.iter().zip(&b).map(|(a, b)| a / b).collect()
    };
    let smooth = ratios(Activation::Tanh);
    println!("tanh: dH(eps) / dH(eps/4) = {smooth:.1?}");
    assert!(smooth.iter().all(|r| (EPS3_LOW..EPS3_HIGH).contains(r)), "tanh flow: ratios {smooth:?}, expected ~64");
    let kinked = ratios(Activation::TUTORIAL);
    println!("leaky: dH(eps) / dH(eps/4) = {kinked:.1?}");
    assert!(kinked.iter().any(|r| !(EPS3_LOW..EPS3_HIGH).contains(r)), "LeakyReLU flow: ratios {kinked:?}");
}

/// Flow-HMC with the force from the flow in f32 and `H` in f64 is exact: `<exp(-dH)> = 1`
/// and `<Q^2>` equal to the exact value within [`SIGMAS`] sigma (as the f64 audit above),
/// with an acceptance close to the all-f64 run's.
#[test]
fn mixed_precision_flow_hmc_is_exact() {
    let (flow, flow32) = mixed_u1(8);
    let u1 = U1::new(Lattice::new(&[4, 4]), 2.0);
    let hmc = HmcConfig { trajectory_length: 1.0, n_steps: 8, flip: false, integrator: Integrator::Leapfrog };
    let cfg = RunConfig { hmc, n_chains: 8, n_therm: 50, n_traj: 600, seed: 10 };
    let z0 = flow.prior.sample(8, &mut StdRng::seed_from_u64(11)).into_vec();
    let g = u1.clone();
    let measure = |x: &[f64], o: &mut [f64]| o[0] = g.topological_charge(x).powi(2);
    let mixed = LatentPotential::new(&flow, &u1).with_force_map(&flow32);
    let recs = run_flow_hmc(mixed, &cfg, z0.clone(), 1, measure, None, None).unwrap();
    let e = exp_minus_dh(&recs);
    assert!((e.mean - 1.0).abs() < SIGMAS * e.error, "<exp(-dH)> = {e}");
    let acc = recs.iter().map(|r| r.acceptance_rate()).sum::<f64>() / 8.0;
    let exact_cfg = RunConfig { n_traj: 100, ..cfg };
    let all_f64 = run_flow_hmc(LatentPotential::new(&flow, &u1), &exact_cfg, z0, 1, measure, None, None).unwrap();
    let acc64 = all_f64.iter().map(|r| r.acceptance_rate()).sum::<f64>() / 8.0;
    println!("acceptance: f32 force {acc:.3}, f64 force {acc64:.3}");
    assert!((0.3..1.0).contains(&acc) && (acc - acc64).abs() < 0.1, "acceptance {acc} (f64 force: {acc64})");
    let q2 = stat(&recs, 0);
    let exact = exact_q2_2d(2.0, 16);
    assert!((q2.mean - exact).abs() < SIGMAS * q2.error, "<Q^2> = {q2}, exact {exact}");
}

/// With the f32 force a trajectory, a momentum flip and the same trajectory still return to
/// the start to [`REVERSE_TOL`]: the force is a fixed function of `z` and only the f64
/// updates round (a rounding of `z` could move the f32 force by an f32 ulp; the 20 steps
/// here come back to 1e-15).
#[test]
fn mixed_precision_trajectories_are_reversible() {
    let (flow, flow32) = mixed_u1(6);
    let u1 = U1::new(Lattice::new(&[4, 4]), 2.0);
    let mut rng = StdRng::seed_from_u64(4);
    let z0: Vec<f64> = (0..3 * 32).map(|_| rng.gen_range(0.0..2.0 * PI)).collect();
    check_reversible(LatentPotential::new(&flow, &u1).with_force_map(&flow32), z0, &mut rng);
}

/// Flow-HMC's chains spread over ranks (threads as ranks here; `tests/mpi.rs` runs the
/// binary under `mpirun`) are those of one process bit for bit, with the force in f32 and in
/// f64: each chain's numbers depend on that chain alone, also when a rank's batch holds one
/// chain where one process's holds five (the flow's kernels treat every configuration of a
/// batch alike).
#[test]
fn flow_hmc_over_ranks_is_one_process_bit_for_bit() {
    // 8x8: the f32 conv kernels of the tutorial's lattices (AVX-512 where the CPU has it)
    let (flow, flow32) = mixed_u1_on(8, 30);
    let u1 = U1::new(Lattice::new(&[8, 8]), 2.0);
    let hmc = HmcConfig { trajectory_length: 1.0, n_steps: 6, flip: false, integrator: Integrator::Leapfrog };
    let cfg = RunConfig { hmc, n_chains: 5, n_therm: 5, n_traj: 20, seed: 31 };
    let z0 = flow.prior.sample(5, &mut StdRng::seed_from_u64(32)).into_vec();
    let g = u1.clone();
    let measure = |x: &[f64], o: &mut [f64]| o[0] = g.topological_charge(x);
    let bits = |recs: &[ChainRecord]| -> Vec<Vec<u64>> {
        recs.iter()
            .map(|r| {
                let mut v: Vec<u64> =
                    r.observables[0].iter().chain(&r.delta_h).chain(&r.last).map(|x| x.to_bits()).collect();
                v.extend(r.accepted.iter().map(|&a| u64::from(a)));
                v
            })
            .collect()
    };
    for f32_force in [true, false] {
        let pot = || {
            let p = LatentPotential::new(&flow, &u1);
            if f32_force {
                p.with_force_map(&flow32)
            } else {
                p
            }
        };
        let one = run_flow_hmc(pot(), &cfg, z0.clone(), 1, measure, None, None).unwrap();
        assert!(one.iter().any(|r| r.accepted.iter().any(|&a| a)), "no chain moved");
        for size in [2, 4] {
            let per_rank = latflow_comm::ThreadRanks::run(size, |comm| {
                let mine = latflow_comm::share(5, comm.size(), comm.rank());
                let z = z0[mine.start * 128..mine.end * 128].to_vec();
                run_flow_hmc_over(pot(), &cfg, z, 1, measure, None, None, comm).unwrap()
            });
            let gathered = per_rank[0].as_ref().expect("rank 0 holds the records");
            assert!(per_rank[1..].iter().all(Option::is_none), "only rank 0 receives the records");
            assert_eq!(bits(gathered), bits(&one), "{size} ranks, f32 force {f32_force}");
        }
    }
}
