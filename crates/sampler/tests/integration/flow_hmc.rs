//! The sampler core on an analytic map (the flow's audits are in
//! `latflow_flow`'s `tests/integration/flow_hmc.rs`): `x_i = a z_i + b sinh(z_i)`, elementwise, so
//! `log|det J| = sum_i log(a + b cosh z_i)`.
use latflow_physics::{Lattice, Phi4};
use latflow_sampler::flow_hmc::*;
use latflow_sampler::hmc::{ChainRecord, HmcConfig, Integrator, RunConfig};
use latflow_sampler::stats::{gamma_method_replicas, S_TAU_DEFAULT};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// Central differences of U (step 1e-5) against the analytic force.
const FD_TOL: f64 = 1e-6;

struct Sinh {
    dof: usize,
    a: f64,
    b: f64,
}

impl LatentMap for Sinh {
    fn dof(&self) -> usize {
        self.dof
    }
    fn forward(&self, z: &[f64], x: &mut [f64], logdet: &mut [f64]) {
        for (c, ld) in logdet.iter_mut().enumerate() {
            let r = c * self.dof..(c + 1) * self.dof;
            *ld = 0.0;
            for (x, z) in x[r.clone()].iter_mut().zip(&z[r]) {
                *x = self.a * z + self.b * z.sinh();
                *ld += (self.a + self.b * z.cosh()).ln();
            }
        }
    }
    fn pullback(
        &self,
        z: &[f64],
        x: &mut [f64],
        logdet: &mut [f64],
        cotangent: &(dyn Fn(&[f64], &mut [f64]) + Sync),
        grad: &mut [f64],
    ) {
        self.forward(z, x, logdet);
        let mut g = vec![0.0; x.len()];
        cotangent(x, &mut g);
        for ((gr, g), z) in grad.iter_mut().zip(&g).zip(z) {
            let j = self.a + self.b * z.cosh();
            *gr = j * g - self.b * z.sinh() / j;
        }
    }
    fn reverse(&self, x: &[f64], z: &mut [f64]) {
        for (z, &x) in z.iter_mut().zip(x) {
            // Newton on a z + b sinh z = x (monotone)
            let mut v = x / (self.a + self.b);
            for _ in 0..100 {
                v -= (self.a * v + self.b * v.sinh() - x) / (self.a + self.b * v.cosh());
            }
            *z = v;
        }
    }
}

#[test]
fn force_is_the_gradient_of_the_potential() {
    let phi4 = Phi4::new(Lattice::new(&[4, 4]), -1.0, 0.5);
    let map = Sinh { dof: 16, a: 0.7, b: 0.2 };
    let pot = LatentPotential::new(&map, &phi4);
    let mut rng = StdRng::seed_from_u64(1);
    let z: Vec<f64> = (0..32).map(|_| rng.sample::<f64, _>(StandardNormal)).collect();
    let (mut x, mut u, mut f) = (vec![0.0; 32], vec![0.0; 2], vec![0.0; 32]);
    pot.potential_force(&z, &mut x, &mut u, &mut f);
    let mut u2 = vec![0.0; 2];
    pot.potential(&z, &mut x, &mut u2);
    assert_eq!(u, u2);
    let h = 1e-5;
    for i in [0, 5, 16, 31] {
        let at = |d: f64| {
            let mut zz = z.clone();
            zz[i] += d;
            let (mut x, mut u) = (vec![0.0; 32], vec![0.0; 2]);
            pot.potential(&zz, &mut x, &mut u);
            u[i / 16]
        };
        let fd = (at(h) - at(-h)) / (2.0 * h);
        assert!((fd - f[i]).abs() < FD_TOL * fd.abs().max(1.0), "dU/dz[{i}]: fd {fd} vs {}", f[i]);
    }
    // the reverse pass starts chains where given
    let z0 = latent_start(&map, &x);
    assert!(z0.iter().zip(&z).all(|(a, b)| (a - b).abs() < 1e-12));
}

/// `<exp(-dH)> = 1` (Creutz) for flow-HMC through the map, and the images `x` sample
/// `exp(-S)`: `<M^2>` agrees with plain HMC's within 4 combined sigma (Gamma-method
/// errors over the chains).
#[test]
fn exp_minus_dh_averages_to_one_and_images_sample_the_action() {
    let phi4 = Phi4::new(Lattice::new(&[4, 4]), -1.0, 0.5);
    let map = Sinh { dof: 16, a: 0.7, b: 0.2 };
    let pot = LatentPotential::new(&map, &phi4);
    let hmc = HmcConfig { trajectory_length: 1.0, n_steps: 8, flip: false, integrator: Integrator::Leapfrog };
    let cfg = RunConfig { hmc, n_chains: 4, n_therm: 200, n_traj: 3000, seed: 3 };
    let m2 = |x: &[f64], o: &mut [f64]| o[0] = (x.iter().sum::<f64>() / 16.0).powi(2);
    let recs = run_flow_hmc(pot, &cfg, vec![0.1; 64], 1, m2, None, None).unwrap();
    let series: Vec<Vec<f64>> = recs.iter().map(|r| r.delta_h.iter().map(|d| (-d).exp()).collect()).collect();
    let refs: Vec<&[f64]> = series.iter().map(|s| s.as_slice()).collect();
    let g = gamma_method_replicas(&refs, S_TAU_DEFAULT);
    assert!((g.mean - 1.0).abs() < 3.0 * g.error, "<exp(-dH)> = {g}");
    let acc = recs.iter().map(|r| r.acceptance_rate()).sum::<f64>() / 4.0;
    assert!(acc > 0.5 && acc < 1.0, "acceptance {acc}");
    let plain = latflow_sampler::hmc::run_chains(&phi4, &cfg, 1, |_, _| vec![0.1; 16], m2, None);
    let stat = |r: &[ChainRecord]| {
        let s: Vec<&[f64]> = r.iter().map(|r| r.observables[0].as_slice()).collect();
        gamma_method_replicas(&s, S_TAU_DEFAULT)
    };
    let (a, b) = (stat(&recs), stat(&plain));
    assert!((a.mean - b.mean).abs() < 4.0 * a.error.hypot(b.error), "<M^2>: flow-HMC {a} vs HMC {b}");
}

/// A sink that fails at record `fail_at` of chain 0.
struct FailingSink {
    chain: usize,
    fail_at: usize,
}

impl latflow_sampler::hmc::ChainSink for FailingSink {
    fn record(
        &mut self,
        t: usize,
        _: &[f64],
        _: &latflow_sampler::hmc::TrajectoryInfo,
        _: &[f64],
    ) -> Result<(), String> {
        if self.chain == 0 && t == self.fail_at {
            return Err("chain 0 cannot write".into());
        }
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<(), String> {
        Ok(())
    }
}

/// The chains run as one batch per thread; a sink's error still stops every batch (each
/// checks before its next trajectory) and is the error returned.
#[test]
fn a_sink_error_stops_every_batch() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let phi4 = Phi4::new(Lattice::new(&[4, 4]), -1.0, 0.5);
    let map = Sinh { dof: 16, a: 0.7, b: 0.2 };
    let cfg = RunConfig { n_chains: 8, n_therm: 0, n_traj: 400, seed: 4, ..RunConfig::default() };
    let progress = AtomicUsize::new(0);
    let make =
        |c: usize| -> Box<dyn latflow_sampler::hmc::ChainSink> { Box::new(FailingSink { chain: c, fail_at: 1 }) };
    let m = |_: &[f64], o: &mut [f64]| o[0] = 0.0;
    let pot = LatentPotential::new(&map, &phi4);
    let err = run_flow_hmc(pot, &cfg, vec![0.1; 8 * 16], 1, m, Some(&progress), Some(&make)).unwrap_err();
    assert_eq!(err, "chain 0 cannot write");
    // every batch stops within a trajectory or so of the failure, far from the 3200
    let done = progress.load(Ordering::Relaxed);
    assert!(done <= 8 * 4, "{done} trajectories ran after chain 0's sink failed at its second record");
}
