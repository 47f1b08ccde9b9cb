//! Hybrid Monte Carlo (Duane, Kennedy, Pendleton, Roweth, Phys. Lett. B 195 (1987) 216)
//! for any [`Action`] on `f64` slices: Gaussian momenta, a leapfrog trajectory of
//! `n_steps` steps of size `eps = trajectory_length / n_steps`, and a Metropolis test on
//! `dH = H(x', p') - H(x, p)` with `H = S(x) + p^2 / 2`.
//!
//! [`HmcChain`] is one chain with its buffers (no allocation per trajectory);
//! [`run_chains`] runs many independent, seeded chains in parallel with rayon and
//! records per-trajectory observables, `dH` and acceptance.
//!
//! ```
//! use latflow_physics::{Lattice, Phi4};
//! use latflow_sampler::hmc::{HmcChain, HmcConfig};
//! use rand::{rngs::StdRng, SeedableRng};
//! let action = Phi4::new(Lattice::new(&[8, 8]), -4.0, 8.0);
//! let mut rng = StdRng::seed_from_u64(0);
//! let mut chain = HmcChain::new(&action, vec![0.0; 64]);
//! for _ in 0..100 {
//!     chain.trajectory(&action, &HmcConfig::default(), &mut rng);
//! }
//! assert!(chain.acceptance_rate() > 0.5);
//! ```

use latflow_comm::wire::{Reader, Writer};
use latflow_comm::Comm;
use latflow_physics::Action;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Settings of one HMC trajectory.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HmcConfig {
    /// Molecular-dynamics time of a trajectory, `tau`. Default 1.0.
    pub trajectory_length: f64,
    /// Leapfrog steps per trajectory (step size `tau / n_steps`). Default 10.
    pub n_steps: usize,
    /// After each trajectory, apply the action's global symmetry ([`Action::flip`]) with
    /// probability 1/2 (exact: the weight does not change). Makes the chain ergodic where
    /// the symmetry is broken (phi^4's two vacua) or sectors freeze (U(1)'s `Q` and `-Q`).
    /// Default false.
    pub flip: bool,
    /// The molecular-dynamics integrator. Default [`Integrator::Leapfrog`].
    pub integrator: Integrator,
}

impl Default for HmcConfig {
    fn default() -> Self {
        HmcConfig { trajectory_length: 1.0, n_steps: 10, flip: false, integrator: Integrator::Leapfrog }
    }
}

/// A reversible, volume-preserving integrator of `dx/dt = p, dp/dt = -F(x)` (either keeps
/// HMC exact; they differ in cost and energy error).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Integrator {
    /// Leapfrog (Stormer-Verlet): one force per step, energy error `O(eps^2)`.
    #[default]
    Leapfrog,
    /// Omelyan, Mryglod and Folk's second-order minimum-norm integrator (Comput. Phys.
    /// Commun. 151 (2003) 272, eq. (31); Takaishi and de Forcrand hep-lat/0505020):
    /// `p -= lam eps F; x += eps/2 p; p -= (1 - 2 lam) eps F; x += eps/2 p; p -= lam eps F`
    /// with `lam = 0.1931833275037836`: two forces per step and an error constant about
    /// ten times smaller than leapfrog's, so fewer forces for the same acceptance.
    Omelyan,
}

/// [`Integrator::Omelyan`]'s `lambda` (Omelyan et al. 2003, minimizing the norm of the
/// leading error terms).
pub const OMELYAN_LAMBDA: f64 = 0.193_183_327_503_783_6;

impl Integrator {
    /// `leapfrog` or `omelyan`, as the command line spells them.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "leapfrog" => Ok(Integrator::Leapfrog),
            "omelyan" => Ok(Integrator::Omelyan),
            _ => Err(format!("integrator must be leapfrog or omelyan, got '{s}'")),
        }
    }

    /// The name [`Integrator::parse`] reads.
    pub fn name(&self) -> &'static str {
        match self {
            Integrator::Leapfrog => "leapfrog",
            Integrator::Omelyan => "omelyan",
        }
    }

    /// Forces per step.
    pub fn forces_per_step(&self) -> usize {
        match self {
            Integrator::Leapfrog => 1,
            Integrator::Omelyan => 2,
        }
    }
}

impl HmcConfig {
    /// The integrator's step size `eps = trajectory_length / n_steps`.
    pub fn step_size(&self) -> f64 {
        self.trajectory_length / self.n_steps as f64
    }
}

/// What one trajectory did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrajectoryInfo {
    /// `dH = H(end) - H(start)`; `<exp(-dH)> = 1` for a reversible, area-preserving integrator.
    pub delta_h: f64,
    /// Whether the Metropolis test accepted the end point.
    pub accepted: bool,
}

/// `H = S(x) + (1/2) sum_i p_i^2`.
pub fn hamiltonian<A: Action + ?Sized>(action: &A, x: &[f64], p: &[f64]) -> f64 {
    action.action(x) + kinetic(p)
}

/// The kinetic energy `(1/2) sum_i p_i^2`.
#[inline]
pub fn kinetic(p: &[f64]) -> f64 {
    0.5 * p.iter().map(|v| v * v).sum::<f64>()
}

/// Leapfrog integration of `dx/dt = p`, `dp/dt = -dS/dx` for `n_steps` steps of size
/// `eps`: `p -= eps/2 F; (x += eps p; p -= eps F) x (n-1); x += eps p; p -= eps/2 F`.
/// Reversible (flip `p` and integrate again to come back) and area preserving.
///
/// `force` must hold `F = dS/dx` at the incoming `x`; on return it holds `F` at the
/// outgoing `x` (so a chain computes `n_steps` forces per trajectory, not `n_steps + 1`).
///
/// # Panics
/// If the slice lengths differ.
#[track_caller]
pub fn leapfrog<A: Action + ?Sized>(
    action: &A,
    x: &mut [f64],
    p: &mut [f64],
    force: &mut [f64],
    eps: f64,
    n_steps: usize,
) {
    leapfrog_with(x, p, force, eps, n_steps, |x, f| action.force(x, f));
}

/// [`leapfrog`] with the force given as a function `force_at(x, out)` writing `dU/dx` at
/// `x` into `out`: the one integrator of every HMC here, for a potential that is not an
/// [`Action`] on one configuration (flow-HMC integrates `U(z) = S(f(z)) - log|det J_f(z)|`
/// of many chains at once, [`crate::flow_hmc`]). `force_at` is called `n_steps` times, at
/// the positions after each drift, in order.
///
/// # Panics
/// If the slice lengths differ.
#[track_caller]
pub fn leapfrog_with(
    x: &mut [f64],
    p: &mut [f64],
    force: &mut [f64],
    eps: f64,
    n_steps: usize,
    mut force_at: impl FnMut(&[f64], &mut [f64]),
) {
    assert!(x.len() == p.len() && x.len() == force.len(), "leapfrog: lengths {} {} {}", x.len(), p.len(), force.len());
    if n_steps == 0 {
        return;
    }
    let half = 0.5 * eps;
    kick(p, force, half);
    for step in 0..n_steps {
        drift(x, p, eps);
        force_at(x, force);
        kick(p, force, if step + 1 == n_steps { half } else { eps });
    }
}

/// `p -= k F`.
fn kick(p: &mut [f64], force: &[f64], k: f64) {
    for (pi, fi) in p.iter_mut().zip(force) {
        *pi -= k * fi;
    }
}

/// `x += k p`.
fn drift(x: &mut [f64], p: &[f64], k: f64) {
    for (xi, pi) in x.iter_mut().zip(p) {
        *xi += k * pi;
    }
}

/// `n_steps` steps of `integrator` from `(x, p)` with `force` holding `F(x)` on entry and
/// at the end point on return, the force given as in [`leapfrog_with`]; `force_at` is
/// called `n_steps * integrator.forces_per_step()` times.
///
/// # Panics
/// If the slice lengths differ.
#[track_caller]
pub fn integrate_with(
    integrator: Integrator,
    x: &mut [f64],
    p: &mut [f64],
    force: &mut [f64],
    eps: f64,
    n_steps: usize,
    mut force_at: impl FnMut(&[f64], &mut [f64]),
) {
    match integrator {
        Integrator::Leapfrog => leapfrog_with(x, p, force, eps, n_steps, force_at),
        Integrator::Omelyan => {
            assert!(
                x.len() == p.len() && x.len() == force.len(),
                "omelyan: lengths {} {} {}",
                x.len(),
                p.len(),
                force.len()
            );
            if n_steps == 0 {
                return;
            }
            let lam = OMELYAN_LAMBDA;
            kick(p, force, lam * eps);
            for step in 0..n_steps {
                drift(x, p, 0.5 * eps);
                force_at(x, force);
                kick(p, force, (1.0 - 2.0 * lam) * eps);
                drift(x, p, 0.5 * eps);
                force_at(x, force);
                // the closing kick of this step and the opening one of the next, merged
                let k = if step + 1 == n_steps { lam * eps } else { 2.0 * lam * eps };
                kick(p, force, k);
            }
        }
    }
}

/// One HMC chain: its configuration, the cached action and force there, and work buffers.
#[derive(Clone, Debug)]
pub struct HmcChain {
    x: Vec<f64>,
    s: f64,
    force: Vec<f64>,
    x_new: Vec<f64>,
    force_new: Vec<f64>,
    p: Vec<f64>,
    n_traj: usize,
    n_accepted: usize,
}

impl HmcChain {
    /// A chain starting at `x0`.
    ///
    /// # Panics
    /// If `x0.len() != action.dof()`.
    #[track_caller]
    pub fn new<A: Action + ?Sized>(action: &A, x0: Vec<f64>) -> Self {
        assert_eq!(x0.len(), action.dof(), "HmcChain::new: start of length {} for {} dof", x0.len(), action.dof());
        let n = x0.len();
        let mut force = vec![0.0; n];
        action.force(&x0, &mut force);
        let s = action.action(&x0);
        HmcChain {
            x_new: x0.clone(),
            x: x0,
            s,
            force,
            force_new: vec![0.0; n],
            p: vec![0.0; n],
            n_traj: 0,
            n_accepted: 0,
        }
    }

    /// The current configuration.
    pub fn config(&self) -> &[f64] {
        &self.x
    }

    /// Fraction of trajectories accepted so far (0 before the first).
    pub fn acceptance_rate(&self) -> f64 {
        if self.n_traj == 0 {
            0.0
        } else {
            self.n_accepted as f64 / self.n_traj as f64
        }
    }

    /// One HMC update: draw `p ~ N(0, 1)`, integrate with [`HmcConfig::integrator`]
    /// ([`integrate_with`]), accept the end
    /// point with probability `min(1, exp(-dH))`. Accepted configurations are passed
    /// through [`Action::canonicalize`]; with [`HmcConfig::flip`], then the global flip
    /// with probability 1/2.
    pub fn trajectory<A: Action + ?Sized, R: Rng + ?Sized>(
        &mut self,
        action: &A,
        config: &HmcConfig,
        rng: &mut R,
    ) -> TrajectoryInfo {
        for pi in self.p.iter_mut() {
            *pi = rng.sample::<f64, _>(StandardNormal);
        }
        let h0 = self.s + kinetic(&self.p);
        self.x_new.copy_from_slice(&self.x);
        self.force_new.copy_from_slice(&self.force);
        integrate_with(
            config.integrator,
            &mut self.x_new,
            &mut self.p,
            &mut self.force_new,
            config.step_size(),
            config.n_steps,
            |x, f| action.force(x, f),
        );
        let s1 = action.action(&self.x_new);
        let delta_h = s1 + kinetic(&self.p) - h0;
        // NaN dH (a blown-up trajectory) is rejected.
        let accepted = delta_h <= 0.0 || rng.gen::<f64>() < (-delta_h).exp();
        if accepted {
            std::mem::swap(&mut self.x, &mut self.x_new);
            std::mem::swap(&mut self.force, &mut self.force_new);
            self.s = s1;
            action.canonicalize(&mut self.x);
            self.n_accepted += 1;
        }
        if config.flip && rng.gen::<bool>() && action.flip(&mut self.x) {
            // S is unchanged by the symmetry; the force is recomputed at the new point
            self.s = action.action(&self.x);
            action.force(&self.x, &mut self.force);
        }
        self.n_traj += 1;
        TrajectoryInfo { delta_h, accepted }
    }
}

/// Settings of [`run_chains`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunConfig {
    /// The trajectory settings. Default [`HmcConfig::default`].
    pub hmc: HmcConfig,
    /// Independent chains, run in parallel. Default 2.
    pub n_chains: usize,
    /// Thermalization trajectories per chain, not recorded. Default 100.
    pub n_therm: usize,
    /// Recorded trajectories per chain. Default 1000.
    pub n_traj: usize,
    /// Master seed; chain `c` uses `StdRng::seed_from_u64(chain_seed(seed, c))`. Default 0.
    pub seed: u64,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig { hmc: HmcConfig::default(), n_chains: 2, n_therm: 100, n_traj: 1000, seed: 0 }
    }
}

/// The seed of chain `c` under master seed `seed` (a fixed odd-constant mix, so chains
/// of one run and runs of neighbouring seeds do not share streams).
pub fn chain_seed(seed: u64, c: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (c as u64).wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// The record of one chain from [`run_chains`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChainRecord {
    /// `observables[k][t]`: observable `k` after recorded trajectory `t`.
    pub observables: Vec<Vec<f64>>,
    /// `dH` of every recorded trajectory.
    pub delta_h: Vec<f64>,
    /// Acceptance of every recorded trajectory.
    pub accepted: Vec<bool>,
    /// The last configuration.
    pub last: Vec<f64>,
}

impl ChainRecord {
    /// An empty record of `n_obs` observables with room for `n_traj` trajectories.
    pub fn recording(n_obs: usize, n_traj: usize) -> Self {
        ChainRecord {
            observables: vec![Vec::with_capacity(n_traj); n_obs],
            delta_h: Vec::with_capacity(n_traj),
            accepted: Vec::with_capacity(n_traj),
            last: Vec::new(),
        }
    }

    /// Onto the wire (every value bit for bit), for [`run_chains_over`].
    fn write(&self, w: &mut Writer) {
        w.u64(self.observables.len() as u64);
        w.u64(self.delta_h.len() as u64);
        for series in &self.observables {
            w.u64(series.len() as u64);
            w.f64s(series);
        }
        w.f64s(&self.delta_h);
        w.f64s(&self.accepted.iter().map(|&a| f64::from(u8::from(a))).collect::<Vec<f64>>());
        w.u64(self.last.len() as u64);
        w.f64s(&self.last);
    }

    /// What [`ChainRecord::write`] wrote.
    fn read(r: &mut Reader) -> ChainRecord {
        let (n_obs, n) = (r.u64() as usize, r.u64() as usize);
        let observables = (0..n_obs)
            .map(|_| {
                let len = r.u64() as usize;
                r.f64s(len)
            })
            .collect();
        let delta_h = r.f64s(n);
        let accepted = r.f64s(n).into_iter().map(|a| a == 1.0).collect();
        let len = r.u64() as usize;
        ChainRecord { observables, delta_h, accepted, last: r.f64s(len) }
    }

    /// Fraction of recorded trajectories accepted.
    pub fn acceptance_rate(&self) -> f64 {
        self.accepted.iter().filter(|&&a| a).count() as f64 / self.accepted.len().max(1) as f64
    }
}

/// How often (in trajectories) a chain adds to the progress counter.
const PROGRESS_EVERY: usize = 256;

/// Receives every recorded configuration of one chain of [`run_chains_saving`], in order
/// (an ensemble writer).
pub trait ChainSink: Send {
    /// Recorded trajectory `t` ended at `x` (after `info`), with the measured observables.
    ///
    /// # Errors
    /// A message (e.g. a write error); all chains stop.
    fn record(&mut self, t: usize, x: &[f64], info: &TrajectoryInfo, obs: &[f64]) -> Result<(), String>;
    /// The chain ended.
    ///
    /// # Errors
    /// As [`ChainSink::record`].
    fn finish(self: Box<Self>) -> Result<(), String>;
}

/// Runs `config.n_chains` independent HMC chains in parallel (rayon), each seeded with
/// [`chain_seed`], started from `init(chain, rng)`, thermalized for `n_therm`
/// trajectories and then recorded for `n_traj`. After each recorded trajectory
/// `measure(x, out)` writes the `n_obs` observables of configuration `x` into `out`.
///
/// `progress`, when given, is incremented by the number of trajectories done
/// (thermalization included) every few hundred trajectories, for a progress display.
/// Results are reproducible for a given seed whatever the number of threads.
///
/// # Panics
/// If `init` returns a configuration of the wrong length.
pub fn run_chains<A, I, M>(
    action: &A,
    config: &RunConfig,
    n_obs: usize,
    init: I,
    measure: M,
    progress: Option<&AtomicUsize>,
) -> Vec<ChainRecord>
where
    A: Action + ?Sized,
    I: Fn(usize, &mut StdRng) -> Vec<f64> + Sync,
    M: Fn(&[f64], &mut [f64]) + Sync,
{
    run_chains_saving(action, config, n_obs, init, measure, progress, None).expect("no sink, no error")
}

/// [`run_chains`] that also hands every recorded configuration of chain `c` to the sink
/// `sinks(c)` (made when the chain starts; memory stays at what the sinks buffer).
///
/// # Errors
/// The first error of a sink; every chain stops at its next trajectory.
///
/// # Panics
/// As [`run_chains`].
#[allow(clippy::type_complexity)]
pub fn run_chains_saving<A, I, M>(
    action: &A,
    config: &RunConfig,
    n_obs: usize,
    init: I,
    measure: M,
    progress: Option<&AtomicUsize>,
    sinks: Option<&(dyn Fn(usize) -> Box<dyn ChainSink> + Sync)>,
) -> Result<Vec<ChainRecord>, String>
where
    A: Action + ?Sized,
    I: Fn(usize, &mut StdRng) -> Vec<f64> + Sync,
    M: Fn(&[f64], &mut [f64]) + Sync,
{
    run_chain_range(action, config, n_obs, init, measure, progress, sinks, 0..config.n_chains)
}

/// [`run_chains_saving`] with the chains spread over the ranks of `comm`: rank `r` of `p`
/// runs the chains [`latflow_comm::share`]`(n_chains, p, r)` (each seeded by its index, as
/// in one process, and saved by its own sink) and rank 0 receives every chain's record, in
/// chain order: `Some(records)` on rank 0, the same as one process's; `None` elsewhere.
///
/// # Errors
/// The first error of this rank's sinks (the other ranks then wait in the gather: the
/// caller ends the job).
///
/// # Panics
/// As [`run_chains`].
#[allow(clippy::type_complexity)]
pub fn run_chains_over<A, I, M>(
    action: &A,
    config: &RunConfig,
    n_obs: usize,
    init: I,
    measure: M,
    progress: Option<&AtomicUsize>,
    sinks: Option<&(dyn Fn(usize) -> Box<dyn ChainSink> + Sync)>,
    comm: &dyn Comm,
) -> Result<Option<Vec<ChainRecord>>, String>
where
    A: Action + ?Sized,
    I: Fn(usize, &mut StdRng) -> Vec<f64> + Sync,
    M: Fn(&[f64], &mut [f64]) + Sync,
{
    let mine = latflow_comm::share(config.n_chains, comm.size(), comm.rank());
    let recs = run_chain_range(action, config, n_obs, init, measure, progress, sinks, mine)?;
    Ok(gather_records(recs, comm))
}

/// The records of every rank's chains on rank 0, in rank order (each rank holding a
/// contiguous range of chains in order, that is chain order): `Some(all)` on rank 0,
/// `None` elsewhere. One process returns its own records.
pub fn gather_records(recs: Vec<ChainRecord>, comm: &dyn Comm) -> Option<Vec<ChainRecord>> {
    if comm.size() == 1 {
        return Some(recs);
    }
    let mut w = Writer::default();
    w.u64(recs.len() as u64);
    for r in &recs {
        r.write(&mut w);
    }
    let all = comm.gather(0, &w.into_bytes())?;
    let mut out = Vec::new();
    for bytes in &all {
        let mut rd = Reader::new(bytes);
        for _ in 0..rd.u64() {
            out.push(ChainRecord::read(&mut rd));
        }
        rd.finish();
    }
    Some(out)
}

/// The chains `chains` of [`run_chains_saving`].
#[allow(clippy::type_complexity)]
fn run_chain_range<A, I, M>(
    action: &A,
    config: &RunConfig,
    n_obs: usize,
    init: I,
    measure: M,
    progress: Option<&AtomicUsize>,
    sinks: Option<&(dyn Fn(usize) -> Box<dyn ChainSink> + Sync)>,
    chains: std::ops::Range<usize>,
) -> Result<Vec<ChainRecord>, String>
where
    A: Action + ?Sized,
    I: Fn(usize, &mut StdRng) -> Vec<f64> + Sync,
    M: Fn(&[f64], &mut [f64]) + Sync,
{
    let stop = AtomicBool::new(false);
    let results: Vec<Result<ChainRecord, String>> = chains
        .into_par_iter()
        .map(|c| {
            let mut sink = sinks.map(|f| f(c));
            let mut rng = StdRng::seed_from_u64(chain_seed(config.seed, c));
            let mut chain = HmcChain::new(action, init(c, &mut rng));
            let mut rec = ChainRecord::recording(n_obs, config.n_traj);
            let mut obs = vec![0.0; n_obs];
            let total = config.n_therm + config.n_traj;
            for t in 0..total {
                if sink.is_some() && stop.load(Ordering::Relaxed) {
                    return Err(String::new());
                }
                let info = chain.trajectory(action, &config.hmc, &mut rng);
                if t >= config.n_therm {
                    measure(chain.config(), &mut obs);
                    for (series, &o) in rec.observables.iter_mut().zip(&obs) {
                        series.push(o);
                    }
                    rec.delta_h.push(info.delta_h);
                    rec.accepted.push(info.accepted);
                    if let Some(s) = sink.as_mut() {
                        s.record(t - config.n_therm, chain.config(), &info, &obs).inspect_err(|_| {
                            stop.store(true, Ordering::Relaxed);
                        })?;
                    }
                }
                if let Some(p) = progress {
                    if (t + 1) % PROGRESS_EVERY == 0 {
                        p.fetch_add(PROGRESS_EVERY, Ordering::Relaxed);
                    } else if t + 1 == total {
                        p.fetch_add(total % PROGRESS_EVERY, Ordering::Relaxed);
                    }
                }
            }
            if let Some(s) = sink {
                s.finish().inspect_err(|_| stop.store(true, Ordering::Relaxed))?;
            }
            rec.last = chain.config().to_vec();
            Ok(rec)
        })
        .collect();
    // the first real error (chains stopped by another's error carry an empty one)
    if let Some(e) = results.iter().filter_map(|r| r.as_ref().err()).find(|e| !e.is_empty()) {
        return Err(e.clone());
    }
    results.into_iter().collect()
}
