//! Physics targets of HMC against the tutorial's values (arXiv:2101.08176) and, for
//! U(1), the exact finite-volume result. Seeded; the errors come from the Gamma method
//! over independent chains (so they include autocorrelation), and each comparison
//! allows `SIGMA` standard deviations of the combined error.

use latflow_physics::observables::two_point_susceptibility;
use latflow_physics::u1::exact_q2_2d;
use latflow_physics::{Action, Lattice, Phi4, U1};
use latflow_sampler::hmc::{run_chains, ChainRecord, HmcConfig, RunConfig};
use latflow_sampler::stats::{gamma_method_replicas, tunnelling_rate, GammaEstimate, S_TAU_DEFAULT};
use rand::Rng;
use std::f64::consts::TAU;

/// Allowed deviation in units of the combined one-sigma error.
const SIGMA: f64 = 3.0;

fn gamma(recs: &[ChainRecord], k: usize, f: impl Fn(f64) -> f64) -> GammaEstimate {
    let s: Vec<Vec<f64>> = recs.iter().map(|r| r.observables[k].iter().map(|&v| f(v)).collect()).collect();
    let refs: Vec<&[f64]> = s.iter().map(|x| x.as_slice()).collect();
    gamma_method_replicas(&refs, S_TAU_DEFAULT)
}

fn assert_agrees(name: &str, ours: &GammaEstimate, target: f64, target_err: f64) {
    let sigma = (ours.error.powi(2) + target_err.powi(2)).sqrt();
    eprintln!("{name}: {ours}; target {target} +- {target_err}; pull {:.2}", (ours.mean - target) / sigma);
    assert!((ours.mean - target).abs() < SIGMA * sigma, "{name}: {ours} vs {target} +- {target_err}");
}

/// phi^4 on 8x8 at M2 = -4, lam = 8: chi_2 = 0.75 +- 0.01 (the tutorial's HMC value).
#[test]
fn phi4_two_point_susceptibility_matches_tutorial() {
    let a = Phi4::new(Lattice::new(&[8, 8]), -4.0, 8.0);
    let cfg = RunConfig { hmc: HmcConfig::default(), n_chains: 4, n_therm: 500, n_traj: 25_000, seed: 1 };
    let init = |_c: usize, r: &mut rand::rngs::StdRng| (0..64).map(|_| r.gen_range(-0.1..0.1)).collect();
    let recs = run_chains(&a, &cfg, 1, init, |x, o| o[0] = two_point_susceptibility(x), None);
    let chi2 = gamma(&recs, 0, |v| v);
    assert!(chi2.window_found && chi2.error < 0.01, "{chi2}");
    assert_agrees("phi4 chi_2", &chi2, 0.75, 0.01);
    let acc = recs.iter().map(|r| r.acceptance_rate()).sum::<f64>() / recs.len() as f64;
    assert!(acc > 0.7, "acceptance {acc}");
}

fn run_u1(beta: f64, l: usize, n_chains: usize, n_traj: usize, seed: u64) -> Vec<ChainRecord> {
    let g = U1::new(Lattice::new(&[l, l]), beta);
    let cfg = RunConfig { hmc: HmcConfig::default(), n_chains, n_therm: 500, n_traj, seed };
    let init = |_c: usize, r: &mut rand::rngs::StdRng| (0..g.dof()).map(|_| r.gen_range(0.0..TAU)).collect();
    run_chains(&g, &cfg, 1, init, |x, o| o[0] = g.topological_charge(x), None)
}

/// U(1) on 8x8 at beta = 2: <Q^2> = 1.23 +- 0.02 (the tutorial's HMC value) and the
/// exact finite-volume value 1.2393.
#[test]
fn u1_topological_susceptibility_matches_tutorial_and_exact() {
    let recs = run_u1(2.0, 8, 4, 25_000, 2);
    let q2 = gamma(&recs, 0, |q| q * q);
    assert!(q2.window_found && q2.error < 0.02, "{q2}");
    assert_agrees("u1 <Q^2> vs tutorial", &q2, 1.23, 0.02);
    assert_agrees("u1 <Q^2> vs exact", &q2, exact_q2_2d(2.0, 64), 0.0);
    let q = gamma(&recs, 0, |q| q);
    assert_agrees("u1 <Q>", &q, 0.0, 0.0);
    for r in &recs {
        assert!(r.observables[0].iter().all(|q| (q - q.round()).abs() < 1e-9), "Q must be an integer");
    }
}

/// Topological freezing: at fixed physical volume (<Q^2> ~ 1.2 in both) the finer
/// lattice, beta = 6 on 16x16, tunnels between sectors far less often than beta = 2 on
/// 8x8, and the integrated autocorrelation time of Q grows by more than an order of
/// magnitude (at beta = 6 the chain is too short for the window to close, so its
/// tau_int is a lower bound, which only strengthens the inequality).
#[test]
fn u1_topological_freezing_at_large_beta() {
    let coarse = run_u1(2.0, 8, 2, 10_000, 3);
    let fine = run_u1(6.0, 16, 2, 10_000, 3);
    let (tc, tf) = (gamma(&coarse, 0, |q| q), gamma(&fine, 0, |q| q));
    let rate =
        |recs: &[ChainRecord]| recs.iter().map(|r| tunnelling_rate(&r.observables[0])).sum::<f64>() / recs.len() as f64;
    let (rc, rf) = (rate(&coarse), rate(&fine));
    eprintln!("tau_int(Q): beta 2 8x8 {tc}; beta 6 16x16 {tf}; tunnelling rates {rc:.4} vs {rf:.4}");
    assert!(tf.tau_int > 10.0 * tc.tau_int, "tau_int(Q) {} (beta 6) vs {} (beta 2)", tf.tau_int, tc.tau_int);
    assert!(rf < 0.1 * rc, "tunnelling rate {rf} (beta 6) vs {rc} (beta 2)");
}
