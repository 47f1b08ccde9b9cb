//! Flow-HMC: HMC on the latent field of a normalizing flow (Foreman, Izubuchi, Jin, Jin,
//! Osborn, Tomiya, "HMC with Normalizing Flows", arXiv:2112.01586).
//!
//! With `x = f(z)` a bijection, the target `exp(-S(x)) dx` pulled back to `z` is
//! `exp(-U(z)) dz` with
//!
//! ```text
//! U(z) = S(f(z)) - log|det J_f(z)|,     H(z, pi) = pi^2 / 2 + U(z),
//! dU/dz = J_f(z)^T S'(f(z)) - d log|det J_f(z)| / dz,
//! ```
//!
//! so HMC in `z` (leapfrog with this force, Metropolis on `dH`) samples `z` whose images
//! `x = f(z)` follow `exp(-S)`. A perfect flow is a trivializing map (`U` constant, the
//! trajectory a free drift); an imperfect one still flattens the landscape, which is how
//! flow-HMC moves between topological sectors where HMC in `x` freezes. For U(1) the
//! latent links live on the torus: `z` is wrapped into `[0, 2 pi)` (the map is periodic).
//!
//! This crate knows no flow: [`LatentMap`] is what flow-HMC needs of one (implemented for
//! every `latflow_flow::model::Flow` in `latflow_flow::latent`), [`LatentPotential`] turns a
//! map and an [`Action`] into `U` and its force, and [`FlowHmcChains`] integrates many
//! chains at once with the integrators of plain HMC ([`crate::hmc::integrate_with`]: leapfrog
//! or Omelyan's): one batched forward pass and one input-only reverse sweep of the flow per
//! force.
//! Each chain draws its momenta and its Metropolis numbers from its own generator, in the
//! order [`crate::hmc::HmcChain`] does, so with the identity map flow-HMC is plain HMC.
//!
//! Where chains start: [`latent_start`] maps configurations `x0` to `z0 = f^{-1}(x0)` by
//! the reverse pass; samples of the flow's prior (`z ~ r`, whose images are the flow's own
//! samples) are the other natural start, and what `latflow fhmc` uses.

use crate::hmc::{
    chain_seed, gather_records, integrate_with, kinetic, ChainRecord, ChainSink, HmcConfig, RunConfig, TrajectoryInfo,
};
use latflow_comm::Comm;
use latflow_physics::Action;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rayon::prelude::*;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// A bijection `x = f(z)` of `dof()` real values per configuration with its log-Jacobian
/// and its vector-Jacobian products, on batches (`n = logdet.len()` configurations,
/// row-major): what flow-HMC needs of a flow.
pub trait LatentMap: Sync {
    /// Real values per configuration (of `z` and of `x`).
    fn dof(&self) -> usize;

    /// `x = f(z)` and `logdet = log|det J_f(z)|` of each configuration.
    fn forward(&self, z: &[f64], x: &mut [f64], logdet: &mut [f64]);

    /// [`LatentMap::forward`], then `grad = J_f(z)^T g - d logdet / dz` per configuration,
    /// where `cotangent(x, g)` writes the cotangent `g` of `x` (flow-HMC: `g = S'(x)`) for
    /// some whole configurations `x` (row-major; a map may call it on parts of the batch,
    /// from several threads).
    fn pullback(
        &self,
        z: &[f64],
        x: &mut [f64],
        logdet: &mut [f64],
        cotangent: &(dyn Fn(&[f64], &mut [f64]) + Sync),
        grad: &mut [f64],
    );

    /// `z = f^{-1}(x)` of each configuration.
    fn reverse(&self, x: &[f64], z: &mut [f64]);

    /// The period of every latent coordinate when `z` lives on a torus (`2 pi` for U(1)
    /// links), `None` on `R^n` (the default).
    fn period(&self) -> Option<f64> {
        None
    }
}

/// `z` wrapped into `[0, period)` when the map has a period.
fn wrap(period: Option<f64>, z: &mut [f64]) {
    if let Some(p) = period {
        for v in z {
            // most values are on the torus already (rem_euclid returns them unchanged): skip
            // the division there
            if (0.0..p).contains(v) {
                continue;
            }
            *v = v.rem_euclid(p);
            // rem_euclid of a tiny negative value rounds to p itself
            if *v >= p {
                *v = 0.0;
            }
        }
    }
}

/// The potential of flow-HMC, `U(z) = S(f(z)) - log|det J_f(z)|`, and its force, for a
/// batch of configurations.
///
/// **Mixed precision** ([`LatentPotential::with_force_map`]): the leapfrog may take its
/// force from another evaluation of the same flow (in f32, with the engine's SIMD kernels)
/// while `H` at the ends of each trajectory comes from `map` (f64). This is exact, not an
/// approximation: each leapfrog step is a shear, `pi -= eps/2 F(z); z += eps pi;
/// pi -= eps/2 F(z)`, which preserves volume and is reversed by flipping `pi` for *any*
/// function `F(z)`; the Metropolis test with the exact `dH` then gives detailed balance
/// (Duane et al. 1987; the argument of every mixed-precision HMC). A force that is not
/// exactly `dU/dz` only costs acceptance.
#[derive(Clone, Copy)]
pub struct LatentPotential<'a> {
    /// The flow `x = f(z)`.
    pub map: &'a dyn LatentMap,
    /// The action `S(x)` with its force `S'(x)`.
    pub action: &'a dyn Action,
    /// Another evaluation of the flow whose pullback drives the leapfrog
    /// ([`LatentPotential::with_force_map`]; `None`: `map`'s). When set, `H` needs its own
    /// forward pass of `map`.
    force_map: Option<&'a dyn LatentMap>,
}

impl<'a> LatentPotential<'a> {
    /// The potential of `map` and `action`.
    ///
    /// # Panics
    /// If their numbers of degrees of freedom differ.
    #[track_caller]
    pub fn new(map: &'a dyn LatentMap, action: &'a dyn Action) -> Self {
        assert_eq!(map.dof(), action.dof(), "flow-HMC: the map has {} dof, the action {}", map.dof(), action.dof());
        LatentPotential { map, action, force_map: None }
    }

    /// The same potential with the leapfrog's force from `force_map`, e.g. the flow's f32
    /// evaluation next to an f64 `map` (see the type's documentation: exact, any force
    /// keeps leapfrog reversible and volume-preserving; `H` stays `map`'s).
    ///
    /// # Panics
    /// If `force_map` has other degrees of freedom or another period than `map`.
    #[track_caller]
    pub fn with_force_map(self, force_map: &'a dyn LatentMap) -> Self {
        assert_eq!(
            force_map.dof(),
            self.map.dof(),
            "flow-HMC: the force map has {} dof, the map {}",
            force_map.dof(),
            self.map.dof()
        );
        assert_eq!(force_map.period(), self.map.period(), "flow-HMC: the force map lives on another space");
        LatentPotential { force_map: Some(force_map), ..self }
    }

    /// Whether the force comes from another evaluation of the map than `H`.
    pub fn is_mixed(&self) -> bool {
        self.force_map.is_some()
    }

    /// Real values per configuration.
    pub fn dof(&self) -> usize {
        self.map.dof()
    }

    fn wrapped(&self, z: &[f64]) -> Vec<f64> {
        let mut zw = z.to_vec();
        wrap(self.map.period(), &mut zw);
        zw
    }

    /// `x = f(z)` and `u = U(z)` of each configuration.
    ///
    /// # Panics
    /// If the slice lengths do not fit `u.len()` configurations.
    #[track_caller]
    pub fn potential(&self, z: &[f64], x: &mut [f64], u: &mut [f64]) {
        let d = self.dof();
        assert!(
            z.len() == u.len() * d && x.len() == z.len(),
            "flow-HMC: lengths z {} x {} u {}",
            z.len(),
            x.len(),
            u.len()
        );
        let mut logdet = vec![0.0; u.len()];
        self.map.forward(&self.wrapped(z), x, &mut logdet);
        u.par_iter_mut().zip(x.par_chunks(d)).zip(&logdet).for_each(|((u, x), ld)| *u = self.action.action(x) - ld);
    }

    /// `x = f(z)`, `u = U(z)` and `force = dU/dz = J_f^T S'(x) - d log|det J_f| / dz` of
    /// each configuration (one forward pass and one reverse sweep of the force map: `x`
    /// and `u` are the force map's, which are `map`'s unless
    /// [`LatentPotential::with_force_map`] set another).
    ///
    /// # Panics
    /// If the slice lengths do not fit `u.len()` configurations.
    #[track_caller]
    pub fn potential_force(&self, z: &[f64], x: &mut [f64], u: &mut [f64], force: &mut [f64]) {
        let d = self.dof();
        assert!(
            z.len() == u.len() * d && x.len() == z.len() && force.len() == z.len(),
            "flow-HMC: lengths z {} x {} u {} force {}",
            z.len(),
            x.len(),
            u.len(),
            force.len()
        );
        let logdet = self.force_logdet(z, x, force);
        u.par_iter_mut().zip(x.par_chunks(d)).zip(&logdet).for_each(|((u, x), ld)| *u = self.action.action(x) - ld);
    }

    /// [`LatentPotential::potential_force`] without `u`: `x` and the force, and the force
    /// map's `log|det J_f|` per configuration. The leapfrog of a mixed potential needs no
    /// more (its `H` comes from the exact map at the end), which saves an action per step.
    fn force_logdet(&self, z: &[f64], x: &mut [f64], force: &mut [f64]) -> Vec<f64> {
        let d = self.dof();
        let mut logdet = vec![0.0; z.len() / d.max(1)];
        let action = self.action;
        let cotangent = |x: &[f64], g: &mut [f64]| {
            for (x, g) in x.chunks(d).zip(g.chunks_mut(d)) {
                action.force(x, g);
            }
        };
        self.force_map.unwrap_or(self.map).pullback(&self.wrapped(z), x, &mut logdet, &cotangent, force);
        logdet
    }
}

/// `z0 = f^{-1}(x0)` of each configuration of `x0` (row-major): flow-HMC chains started
/// from given configurations, e.g. HMC's start or an earlier run's last ones.
pub fn latent_start(map: &dyn LatentMap, x0: &[f64]) -> Vec<f64> {
    let mut z = vec![0.0; x0.len()];
    map.reverse(x0, &mut z);
    wrap(map.period(), &mut z);
    z
}

/// Many flow-HMC chains integrated together: the latent field `z` of each, its image
/// `x = f(z)` (the physical configuration), `U(z)` and the force there, work buffers.
pub struct FlowHmcChains<'a> {
    pot: LatentPotential<'a>,
    n: usize,
    z: Vec<f64>,
    x: Vec<f64>,
    u: Vec<f64>,
    force: Vec<f64>,
    z_new: Vec<f64>,
    x_new: Vec<f64>,
    u_new: Vec<f64>,
    force_new: Vec<f64>,
    p: Vec<f64>,
    n_traj: usize,
    n_accepted: usize,
}

impl<'a> FlowHmcChains<'a> {
    /// `z0.len() / dof` chains starting at the latent fields `z0` (row-major; wrapped
    /// onto the torus when the map has a period).
    ///
    /// # Panics
    /// If `z0` is empty or not a whole number of configurations.
    #[track_caller]
    pub fn new(pot: LatentPotential<'a>, mut z0: Vec<f64>) -> Self {
        let d = pot.dof();
        assert!(!z0.is_empty() && z0.len().is_multiple_of(d), "flow-HMC: start of {} values for {d} dof", z0.len());
        wrap(pot.map.period(), &mut z0);
        let n = z0.len() / d;
        let (mut x, mut u, mut force) = (vec![0.0; z0.len()], vec![0.0; n], vec![0.0; z0.len()]);
        if pot.is_mixed() {
            // the force from the force map, x and U from the exact one
            pot.force_logdet(&z0, &mut x, &mut force);
            pot.potential(&z0, &mut x, &mut u);
        } else {
            pot.potential_force(&z0, &mut x, &mut u, &mut force);
        }
        FlowHmcChains {
            pot,
            n,
            z_new: z0.clone(),
            x_new: x.clone(),
            u_new: u.clone(),
            force_new: force.clone(),
            p: vec![0.0; z0.len()],
            z: z0,
            x,
            u,
            force,
            n_traj: 0,
            n_accepted: 0,
        }
    }

    /// Number of chains.
    pub fn n_chains(&self) -> usize {
        self.n
    }

    /// Chain `c`'s physical configuration `x = f(z)`.
    pub fn config(&self, c: usize) -> &[f64] {
        let d = self.pot.dof();
        &self.x[c * d..(c + 1) * d]
    }

    /// Chain `c`'s latent field `z`.
    pub fn latent(&self, c: usize) -> &[f64] {
        let d = self.pot.dof();
        &self.z[c * d..(c + 1) * d]
    }

    /// Chain `c`'s `U(z) = S(x) - log|det J_f(z)|`.
    pub fn potential(&self, c: usize) -> f64 {
        self.u[c]
    }

    /// Fraction of trajectories accepted so far over all chains (0 before the first).
    pub fn acceptance_rate(&self) -> f64 {
        if self.n_traj == 0 {
            0.0
        } else {
            self.n_accepted as f64 / self.n_traj as f64
        }
    }

    /// One flow-HMC update of every chain: chain `c` draws `pi ~ N(0, 1)` from `rngs[c]`,
    /// all chains are integrated together in `z` by [`HmcConfig::integrator`] (each force one batched pass
    /// of the map, [`LatentPotential::potential_force`]), and chain `c` accepts its end
    /// point with probability `min(1, exp(-dH_c))` drawn from `rngs[c]` (only when
    /// `dH_c > 0`, as [`crate::hmc::HmcChain::trajectory`]). Accepted `z` are wrapped onto
    /// the torus when the map has a period.
    ///
    /// # Panics
    /// If `rngs.len()` is not the number of chains, or `config.flip` is set (the global flip
    /// of `x` is not a map of `z`; flow-HMC has none).
    #[track_caller]
    pub fn trajectory<R: Rng>(&mut self, config: &HmcConfig, rngs: &mut [R]) -> Vec<TrajectoryInfo> {
        assert_eq!(rngs.len(), self.n, "flow-HMC: {} generators for {} chains", rngs.len(), self.n);
        assert!(!config.flip, "flow-HMC has no global flip (HmcConfig::flip must be false)");
        let d = self.pot.dof();
        let mut h0 = vec![0.0; self.n];
        for (c, rng) in rngs.iter_mut().enumerate() {
            let p = &mut self.p[c * d..(c + 1) * d];
            for v in p.iter_mut() {
                *v = rng.sample::<f64, _>(StandardNormal);
            }
            h0[c] = self.u[c] + kinetic(p);
        }
        self.z_new.copy_from_slice(&self.z);
        self.x_new.copy_from_slice(&self.x);
        self.u_new.copy_from_slice(&self.u);
        self.force_new.copy_from_slice(&self.force);
        let pot = self.pot;
        let (x_new, u_new) = (&mut self.x_new, &mut self.u_new);
        let (eps, steps) = (config.step_size(), config.n_steps);
        integrate_with(config.integrator, &mut self.z_new, &mut self.p, &mut self.force_new, eps, steps, |z, f| {
            if pot.is_mixed() {
                pot.force_logdet(z, x_new, f);
            } else {
                pot.potential_force(z, x_new, u_new, f);
            }
        });
        if pot.is_mixed() {
            // H (and the configuration measured) from the exact map
            pot.potential(&self.z_new, x_new, u_new);
        }
        let mut infos = Vec::with_capacity(self.n);
        for (c, rng) in rngs.iter_mut().enumerate() {
            let r = c * d..(c + 1) * d;
            let delta_h = self.u_new[c] + kinetic(&self.p[r.clone()]) - h0[c];
            // NaN dH (a blown-up trajectory) is rejected.
            let accepted = delta_h <= 0.0 || rng.gen::<f64>() < (-delta_h).exp();
            if accepted {
                self.z[r.clone()].copy_from_slice(&self.z_new[r.clone()]);
                wrap(self.pot.map.period(), &mut self.z[r.clone()]);
                self.x[r.clone()].copy_from_slice(&self.x_new[r.clone()]);
                self.force[r.clone()].copy_from_slice(&self.force_new[r]);
                self.u[c] = self.u_new[c];
                self.n_accepted += 1;
            }
            self.n_traj += 1;
            infos.push(TrajectoryInfo { delta_h, accepted });
        }
        infos
    }
}

/// Runs `config.n_chains` flow-HMC chains together from the latent fields `z0` (row-major,
/// `n_chains` configurations), chain `c` with the generator
/// `StdRng::seed_from_u64(chain_seed(config.seed, c))`: `n_therm` trajectories, then
/// `n_traj` recorded ones, after each of which `measure(x, out)` writes the `n_obs`
/// observables of chain `c`'s physical configuration `x = f(z)` (chains measured in
/// parallel). The records are those of [`crate::hmc::run_chains`] (`last`: the last `x`),
/// so every HMC summary reads them. With `sinks`, chain `c`'s recorded configurations go to
/// `sinks(c)` in order. `progress` counts trajectories (all chains).
///
/// # Errors
/// The first error of a sink (the run stops).
///
/// # Panics
/// If `z0` does not hold `n_chains` configurations, or `config.hmc.flip` is set.
#[allow(clippy::type_complexity)]
pub fn run_flow_hmc<M>(
    pot: LatentPotential<'_>,
    config: &RunConfig,
    z0: Vec<f64>,
    n_obs: usize,
    measure: M,
    progress: Option<&AtomicUsize>,
    sinks: Option<&(dyn Fn(usize) -> Box<dyn ChainSink> + Sync)>,
) -> Result<Vec<ChainRecord>, String>
where
    M: Fn(&[f64], &mut [f64]) + Sync,
{
    run_chain_range(pot, config, z0, n_obs, measure, progress, sinks, 0..config.n_chains)
}

/// [`run_flow_hmc`] with the chains spread over the ranks of `comm`: rank `r` of `p` runs
/// the chains [`latflow_comm::share`]`(n_chains, p, r)` together, from `z0` (their start,
/// row-major; empty on a rank without chains), each seeded by its index and saved by its
/// own sink as in one process, and rank 0 receives every chain's record in chain order:
/// `Some(records)` on rank 0, `None` elsewhere.
///
/// Each chain's trajectories are those of one process bit for bit, because every number of
/// a chain (its momenta, its Metropolis draws, the flow's output, log-Jacobian and force
/// on its configuration) depends on that chain alone: the flow's kernels compute each
/// configuration of a batch with the same operations whatever else the batch holds (the
/// test `flow_hmc_over_ranks_is_one_process_bit_for_bit` of `latflow`'s `tests/mpi.rs` and
/// of `latflow_flow`'s `tests/integration/flow_hmc.rs` checks it).
///
/// # Errors
/// The first error of this rank's sinks (the other ranks then wait in the gather: the
/// caller ends the job).
///
/// # Panics
/// If `z0` does not hold this rank's chains, or `config.hmc.flip` is set.
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
pub fn run_flow_hmc_over<M>(
    pot: LatentPotential<'_>,
    config: &RunConfig,
    z0: Vec<f64>,
    n_obs: usize,
    measure: M,
    progress: Option<&AtomicUsize>,
    sinks: Option<&(dyn Fn(usize) -> Box<dyn ChainSink> + Sync)>,
    comm: &dyn Comm,
) -> Result<Option<Vec<ChainRecord>>, String>
where
    M: Fn(&[f64], &mut [f64]) + Sync,
{
    let mine = latflow_comm::share(config.n_chains, comm.size(), comm.rank());
    let recs = run_chain_range(pot, config, z0, n_obs, measure, progress, sinks, mine)?;
    Ok(gather_records(recs, comm))
}

/// The chains `chains` of [`run_flow_hmc`], from `z0` (theirs only): one batch per
/// thread, each running whole trajectories on its own (a chain's numbers depend on it
/// alone, so the split changes no value; it saves the threads' meeting at every leapfrog
/// step and runs the batch's serial parts, the leapfrog's updates and the Metropolis
/// tests, on every core).
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
fn run_chain_range<M>(
    pot: LatentPotential<'_>,
    config: &RunConfig,
    z0: Vec<f64>,
    n_obs: usize,
    measure: M,
    progress: Option<&AtomicUsize>,
    sinks: Option<&(dyn Fn(usize) -> Box<dyn ChainSink> + Sync)>,
    chains: Range<usize>,
) -> Result<Vec<ChainRecord>, String>
where
    M: Fn(&[f64], &mut [f64]) + Sync,
{
    let n = chains.len();
    let d = pot.dof();
    assert_eq!(z0.len(), n * d, "flow-HMC: start of {} values for {n} chains of {} dof", z0.len(), pot.dof());
    if n == 0 {
        return Ok(Vec::new());
    }
    let parts = rayon::current_num_threads().clamp(1, n);
    let bounds: Vec<Range<usize>> =
        (0..parts).map(|i| chains.start + i * n / parts..chains.start + (i + 1) * n / parts).collect();
    // the first sink error stops every batch before its next trajectory
    let failed = Mutex::new(None::<String>);
    let results: Vec<Option<Vec<ChainRecord>>> = bounds
        .into_par_iter()
        .map(|r| {
            let z = z0[(r.start - chains.start) * d..(r.end - chains.start) * d].to_vec();
            run_batch(pot, config, z, n_obs, &measure, progress, sinks, r, &failed).unwrap_or_else(|e| {
                failed.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                None
            })
        })
        .collect();
    if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(results.into_iter().flatten().flatten().collect())
}

/// The chains `chains` as one batch through every trajectory; `None` when another batch's
/// sink failed first (`failed` holds its error; checked before each trajectory).
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
fn run_batch<M>(
    pot: LatentPotential<'_>,
    config: &RunConfig,
    z0: Vec<f64>,
    n_obs: usize,
    measure: &M,
    progress: Option<&AtomicUsize>,
    sinks: Option<&(dyn Fn(usize) -> Box<dyn ChainSink> + Sync)>,
    chains: Range<usize>,
    failed: &Mutex<Option<String>>,
) -> Result<Option<Vec<ChainRecord>>, String>
where
    M: Fn(&[f64], &mut [f64]) + Sync,
{
    let n = chains.len();
    let mut rngs: Vec<StdRng> = chains.clone().map(|c| StdRng::seed_from_u64(chain_seed(config.seed, c))).collect();
    let mut batch = FlowHmcChains::new(pot, z0);
    let mut sinks: Vec<Option<Box<dyn ChainSink>>> = chains.map(|c| sinks.map(|f| f(c))).collect();
    let mut recs: Vec<ChainRecord> = (0..n).map(|_| ChainRecord::recording(n_obs, config.n_traj)).collect();
    let mut obs = vec![0.0; n * n_obs];
    for t in 0..config.n_therm + config.n_traj {
        if failed.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
            return Ok(None);
        }
        let infos = batch.trajectory(&config.hmc, &mut rngs);
        if t >= config.n_therm {
            for (c, o) in obs.chunks_mut(n_obs.max(1)).enumerate().take(n) {
                measure(batch.config(c), o);
            }
            for (c, (rec, info)) in recs.iter_mut().zip(&infos).enumerate() {
                let o = &obs[c * n_obs..(c + 1) * n_obs];
                for (series, &v) in rec.observables.iter_mut().zip(o) {
                    series.push(v);
                }
                rec.delta_h.push(info.delta_h);
                rec.accepted.push(info.accepted);
                if let Some(s) = sinks[c].as_mut() {
                    s.record(t - config.n_therm, batch.config(c), info, o)?;
                }
            }
        }
        if let Some(p) = progress {
            p.fetch_add(n, Ordering::Relaxed);
        }
    }
    for s in sinks.into_iter().flatten() {
        s.finish()?;
    }
    for (c, rec) in recs.iter_mut().enumerate() {
        rec.last = batch.config(c).to_vec();
    }
    Ok(Some(recs))
}
