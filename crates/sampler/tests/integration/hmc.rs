use latflow_physics::{Action, Lattice, Phi4, U1};
use latflow_sampler::hmc::*;
use latflow_sampler::stats::{gamma_method_replicas, S_TAU_DEFAULT};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal, Uniform};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Reversibility tolerance of a 10-step f64 trajectory (the brief's 1e-10).
const REVERSE_TOL: f64 = 1e-10;

fn check_reversible<A: Action>(action: &A, x0: Vec<f64>, rng: &mut StdRng) {
    check_reversible_with(Integrator::Leapfrog, action, x0, rng)
}

fn check_reversible_with<A: Action>(integrator: Integrator, action: &A, x0: Vec<f64>, rng: &mut StdRng) {
    let n = x0.len();
    let p0: Vec<f64> = (0..n).map(|_| rng.sample::<f64, _>(StandardNormal)).collect();
    let (mut x, mut p, mut f) = (x0.clone(), p0.clone(), vec![0.0; n]);
    action.force(&x, &mut f);
    let h0 = hamiltonian(action, &x, &p);
    let leapfrog = |a: &A, x: &mut [f64], p: &mut [f64], f: &mut [f64], eps: f64, n: usize| {
        integrate_with(integrator, x, p, f, eps, n, |x, f| a.force(x, f))
    };
    leapfrog(action, &mut x, &mut p, &mut f, 0.1, 10);
    let h1 = hamiltonian(action, &x, &p);
    assert!(x.iter().zip(&x0).any(|(a, b)| (a - b).abs() > 1e-3), "the trajectory did not move");
    assert!((h1 - h0).abs() < 0.5 * h0.abs().max(1.0), "dH = {} is not small", h1 - h0);
    for v in p.iter_mut() {
        *v = -*v;
    }
    leapfrog(action, &mut x, &mut p, &mut f, 0.1, 10);
    for i in 0..n {
        assert!((x[i] - x0[i]).abs() < REVERSE_TOL, "x[{i}]: {} vs {}", x[i], x0[i]);
        assert!((p[i] + p0[i]).abs() < REVERSE_TOL, "p[{i}]: {} vs {}", -p[i], p0[i]);
    }
}

#[test]
fn leapfrog_is_reversible_phi4_and_u1() {
    let mut rng = StdRng::seed_from_u64(1);
    let phi4 = Phi4::new(Lattice::new(&[8, 8]), -4.0, 8.0);
    let x0: Vec<f64> = (0..64).map(|_| 0.5 * rng.sample::<f64, _>(StandardNormal)).collect();
    check_reversible(&phi4, x0, &mut rng);
    let phi4_3d = Phi4::new(Lattice::new(&[4, 3, 5]), -1.0, 0.5);
    let x0: Vec<f64> = (0..60).map(|_| 0.5 * rng.sample::<f64, _>(StandardNormal)).collect();
    check_reversible(&phi4_3d, x0, &mut rng);
    let u1 = U1::new(Lattice::new(&[8, 8]), 2.0);
    let x0: Vec<f64> = Uniform::new(0.0, std::f64::consts::TAU).sample_iter(&mut rng).take(128).collect();
    check_reversible(&u1, x0, &mut rng);
}

#[test]
fn leapfrog_error_is_second_order() {
    // dH after a fixed trajectory length scales like eps^2: halving eps divides it by ~4.
    let mut rng = StdRng::seed_from_u64(2);
    let a = Phi4::new(Lattice::new(&[4, 4]), -4.0, 8.0);
    let x0: Vec<f64> = (0..16).map(|_| 0.3 * rng.sample::<f64, _>(StandardNormal)).collect();
    let p0: Vec<f64> = (0..16).map(|_| rng.sample::<f64, _>(StandardNormal)).collect();
    let dh = |n: usize| {
        let (mut x, mut p, mut f) = (x0.clone(), p0.clone(), vec![0.0; 16]);
        a.force(&x, &mut f);
        let h0 = hamiltonian(&a, &x, &p);
        leapfrog(&a, &mut x, &mut p, &mut f, 1.0 / n as f64, n);
        (hamiltonian(&a, &x, &p) - h0).abs()
    };
    let ratio = dh(100) / dh(200);
    assert!((3.0..5.0).contains(&ratio), "dH(eps) / dH(eps/2) = {ratio}");
}

#[test]
fn omelyan_is_reversible_phi4_and_u1() {
    let mut rng = StdRng::seed_from_u64(11);
    let phi4 = Phi4::new(Lattice::new(&[8, 8]), -4.0, 8.0);
    let x0: Vec<f64> = (0..64).map(|_| 0.5 * rng.sample::<f64, _>(StandardNormal)).collect();
    check_reversible_with(Integrator::Omelyan, &phi4, x0, &mut rng);
    let u1 = U1::new(Lattice::new(&[8, 8]), 2.0);
    let x0: Vec<f64> = Uniform::new(0.0, std::f64::consts::TAU).sample_iter(&mut rng).take(128).collect();
    check_reversible_with(Integrator::Omelyan, &u1, x0, &mut rng);
}

/// `|dH|` after a trajectory of length 1 in `n` steps of `integrator`, averaged over 8
/// random starts of U(1) on 4x4 at beta = 2 (smooth: the eps^2 regime).
fn mean_abs_dh(integrator: Integrator, n: usize) -> f64 {
    let a = U1::new(Lattice::new(&[4, 4]), 2.0);
    let mut rng = StdRng::seed_from_u64(12);
    let mut sum = 0.0;
    for _ in 0..8 {
        let x0: Vec<f64> = Uniform::new(0.0, std::f64::consts::TAU).sample_iter(&mut rng).take(32).collect();
        let p0: Vec<f64> = (0..32).map(|_| rng.sample::<f64, _>(StandardNormal)).collect();
        let (mut x, mut p, mut f) = (x0, p0, vec![0.0; 32]);
        a.force(&x, &mut f);
        let h0 = hamiltonian(&a, &x, &p);
        let mut calls = 0;
        integrate_with(integrator, &mut x, &mut p, &mut f, 1.0 / n as f64, n, |x, f| {
            calls += 1;
            a.force(x, f)
        });
        assert_eq!(calls, n * integrator.forces_per_step());
        sum += (hamiltonian(&a, &x, &p) - h0).abs();
    }
    sum / 8.0
}

#[test]
fn omelyan_error_is_second_order_and_below_leapfrogs_at_equal_forces() {
    let ratio = mean_abs_dh(Integrator::Omelyan, 50) / mean_abs_dh(Integrator::Omelyan, 100);
    assert!((3.0..5.0).contains(&ratio), "Omelyan dH(eps) / dH(eps/2) = {ratio}");
    // 2 forces per step: 50 Omelyan steps cost what 100 leapfrog steps do; Omelyan et al.
    // give an error constant ~10x below leapfrog's, so about 4x less |dH| at equal forces
    let (om, lf) = (mean_abs_dh(Integrator::Omelyan, 50), mean_abs_dh(Integrator::Leapfrog, 100));
    assert!(om < 0.5 * lf, "Omelyan |dH| {om} against leapfrog's {lf} at 100 forces");
}

#[test]
fn exp_minus_dh_averages_to_one_with_omelyan() {
    let a = Phi4::new(Lattice::new(&[8, 8]), -4.0, 8.0);
    let hmc = HmcConfig { n_steps: 5, integrator: Integrator::Omelyan, ..HmcConfig::default() };
    let cfg = RunConfig { n_chains: 4, n_therm: 200, n_traj: 5000, seed: 6, hmc };
    let init = |_c: usize, rng: &mut StdRng| (0..64).map(|_| 0.1 * rng.sample::<f64, _>(StandardNormal)).collect();
    let recs = run_chains(&a, &cfg, 0, init, |_, _| {}, None);
    let acc = recs.iter().map(|r| r.acceptance_rate()).sum::<f64>() / 4.0;
    assert!((0.3..0.99).contains(&acc), "acceptance {acc}: the test wants visible dH");
    let series: Vec<Vec<f64>> = recs.iter().map(|r| r.delta_h.iter().map(|d| (-d).exp()).collect()).collect();
    let refs: Vec<&[f64]> = series.iter().map(|s| s.as_slice()).collect();
    let g = gamma_method_replicas(&refs, S_TAU_DEFAULT);
    assert!((g.mean - 1.0).abs() < 3.0 * g.error, "<exp(-dH)> = {g}");
    assert!(g.error < 0.05, "{g}");
}

#[test]
fn exp_minus_dh_averages_to_one() {
    // Creutz's identity <exp(-dH)> = 1; error from the Gamma method over the chains.
    let a = Phi4::new(Lattice::new(&[8, 8]), -4.0, 8.0);
    let cfg = RunConfig { n_chains: 4, n_therm: 200, n_traj: 5000, seed: 5, ..Default::default() };
    let init = |_c: usize, rng: &mut StdRng| (0..64).map(|_| 0.1 * rng.sample::<f64, _>(StandardNormal)).collect();
    let recs = run_chains(&a, &cfg, 0, init, |_, _| {}, None);
    let series: Vec<Vec<f64>> = recs.iter().map(|r| r.delta_h.iter().map(|d| (-d).exp()).collect()).collect();
    let refs: Vec<&[f64]> = series.iter().map(|s| s.as_slice()).collect();
    let g = gamma_method_replicas(&refs, S_TAU_DEFAULT);
    assert!((g.mean - 1.0).abs() < 3.0 * g.error, "<exp(-dH)> = {g}");
    assert!(g.error < 0.05, "{g}");
}

#[test]
fn chains_spread_over_ranks_are_the_chains_of_one_process() {
    let a = Phi4::new(Lattice::new(&[4, 4]), -4.0, 8.0);
    let cfg = RunConfig { n_chains: 5, n_therm: 10, n_traj: 200, seed: 4, ..Default::default() };
    let init =
        |c: usize, rng: &mut StdRng| (0..16).map(|_| 0.1 * c as f64 * rng.sample::<f64, _>(StandardNormal)).collect();
    let measure = |x: &[f64], o: &mut [f64]| {
        o[0] = x.iter().sum::<f64>();
        o[1] = x[3];
    };
    let one = run_chains(&a, &cfg, 2, init, measure, None);
    // 5 chains on 3 ranks: 2, 2, 1; on 7 ranks two ranks run none
    for ranks in [1, 2, 3, 7] {
        let got = latflow_comm::ThreadRanks::run(ranks, |comm| {
            run_chains_over(&a, &cfg, 2, init, measure, None, None, comm).unwrap()
        });
        assert_eq!(got[0].as_ref(), Some(&one), "{ranks} ranks");
        assert!(got[1..].iter().all(Option::is_none), "{ranks} ranks: only rank 0 gets the records");
    }
    assert_ne!(one[0], one[1], "the chains differ");
}

#[test]
fn run_chains_is_reproducible_and_counts_progress() {
    let a = Phi4::new(Lattice::new(&[4, 4]), -4.0, 8.0);
    let cfg = RunConfig { n_chains: 3, n_therm: 10, n_traj: 300, seed: 9, ..Default::default() };
    let init = |_c: usize, _rng: &mut StdRng| vec![0.0; 16];
    let measure = |x: &[f64], o: &mut [f64]| o[0] = x.iter().sum::<f64>();
    let counter = AtomicUsize::new(0);
    let r1 = run_chains(&a, &cfg, 1, init, measure, Some(&counter));
    let r2 = run_chains(&a, &cfg, 1, init, measure, None);
    assert_eq!(r1, r2);
    assert_eq!(counter.load(Ordering::Relaxed), 3 * 310);
    assert_ne!(r1[0].observables, r1[1].observables, "chains must not share a stream");
    assert_eq!(r1[0].observables[0].len(), 300);
}

/// In phi^4's broken phase (8x8, M2 = -4, lam = 1) plain HMC stays in one vacuum
/// (|<M>| near <|M|>), with the flip it visits both: <M> within 4 sigma of 0 and the
/// sign of M changes often; <|M|> agrees between the two (the flip leaves |M| alone).
#[test]
fn flips_make_the_broken_phase_ergodic() {
    let a = Phi4::new(Lattice::new(&[8, 8]), -4.0, 1.0);
    let init = |_c: usize, rng: &mut StdRng| (0..64).map(|_| 0.1 * rng.sample::<f64, _>(StandardNormal)).collect();
    let measure = |x: &[f64], o: &mut [f64]| {
        let m = x.iter().sum::<f64>() / 64.0;
        o[0] = m;
        o[1] = m.abs();
    };
    let run = |flip: bool| {
        let hmc = HmcConfig { flip, ..HmcConfig::default() };
        let cfg = RunConfig { hmc, n_chains: 4, n_therm: 200, n_traj: 4000, seed: 3 };
        run_chains(&a, &cfg, 2, init, measure, None)
    };
    let stat = |recs: &[ChainRecord], k: usize| {
        let s: Vec<&[f64]> = recs.iter().map(|r| r.observables[k].as_slice()).collect();
        gamma_method_replicas(&s, S_TAU_DEFAULT)
    };
    let (frozen, ergodic) = (run(false), run(true));
    let abs_m = stat(&frozen, 1).mean;
    assert!(abs_m > 0.5, "broken phase: <|M|> = {abs_m}");
    for r in &frozen {
        let m = r.observables[0].iter().sum::<f64>() / r.observables[0].len() as f64;
        assert!(m.abs() > 0.9 * abs_m, "without flips a chain stays in one vacuum: <M> = {m}");
    }
    let m = stat(&ergodic, 0);
    assert!(m.mean.abs() < 4.0 * m.error, "with flips <M> = {m}");
    let signs = ergodic[0].observables[0].windows(2).filter(|w| w[0].signum() != w[1].signum()).count();
    assert!(signs > 1000, "{signs} sign changes in 4000 trajectories");
    let (a0, a1) = (stat(&frozen, 1), stat(&ergodic, 1));
    assert!((a0.mean - a1.mean).abs() < 4.0 * (a0.error.hypot(a1.error)), "<|M|>: {a0} vs {a1}");
}

/// Records every recorded configuration's first value; fails after `fail_after`.
struct Probe {
    seen: std::sync::Arc<std::sync::Mutex<Vec<(usize, usize, f64)>>>,
    chain: usize,
    fail_after: usize,
}
impl ChainSink for Probe {
    fn record(&mut self, t: usize, x: &[f64], _: &TrajectoryInfo, _: &[f64]) -> Result<(), String> {
        if t == self.fail_after {
            return Err(format!("chain {} cannot write", self.chain));
        }
        self.seen.lock().unwrap().push((self.chain, t, x[0]));
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<(), String> {
        Ok(())
    }
}

/// The sinks see every recorded configuration of their chain in order, the records
/// are those of `run_chains`, and a sink's error stops the run with that error.
#[test]
fn sinks_see_every_recorded_configuration_and_errors_stop() {
    let a = Phi4::new(Lattice::new(&[4, 4]), -4.0, 8.0);
    let cfg = RunConfig { n_chains: 3, n_therm: 10, n_traj: 50, seed: 4, ..Default::default() };
    let init = |_c: usize, _rng: &mut StdRng| vec![0.1; 16];
    let measure = |x: &[f64], o: &mut [f64]| o[0] = x[0];
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sinks = |fail_after: usize| {
        let seen = seen.clone();
        move |c: usize| Box::new(Probe { seen: seen.clone(), chain: c, fail_after }) as Box<dyn ChainSink>
    };
    let ok = sinks(usize::MAX);
    let recs = run_chains_saving(&a, &cfg, 1, init, measure, None, Some(&ok)).unwrap();
    assert_eq!(recs, run_chains(&a, &cfg, 1, init, measure, None));
    let mut got = seen.lock().unwrap().clone();
    got.sort_by_key(|v| (v.0, v.1));
    let want: Vec<(usize, usize, f64)> =
        (0..3).flat_map(|c| (0..50).map(move |t| (c, t))).map(|(c, t)| (c, t, recs[c].observables[0][t])).collect();
    assert_eq!(got, want);
    let failing = sinks(20);
    let err = run_chains_saving(&a, &cfg, 1, init, measure, None, Some(&failing)).unwrap_err();
    assert!(err.contains("cannot write"), "{err}");
}
