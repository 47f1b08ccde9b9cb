//! `latflow fhmc --checkpoint FILE [--L L] [FLAGS]`: flow-HMC (Foreman et al.
//! arXiv:2112.01586) with a trained flow of any theory, at the checkpoint's lattice size or
//! at another (`--L`, a multiple of the masks' period: [`super::checkpoints::open_at`]).
//!
//! HMC runs on the latent field `z` of the flow with `H = pi^2/2 + S(f(z)) - log|det J_f(z)|`
//! ([`crate::sampler::flow_hmc`]), all chains through the flow together, in f64 (the
//! checkpoint's parameters widened exactly). The chains start from samples of the flow's
//! prior (their images are the flow's own samples, near equilibrium when the flow is good);
//! the configurations measured are `x = f(z)`. The report is `latflow hmc`'s
//! ([`super::hmc::summarize_as`]): acceptance, `<exp(-dH)>`, every observable with its
//! Gamma-method error and tau_int next to the exact values where they exist, the
//! tunnelling rate of charges (U(1): mean `|Q_{i+1} - Q_i|` per trajectory), and
//! `observables.csv` in the run directory (`--out`, default `runs/fhmc_THEORY`).

use super::hmc::{self, ChainDefaults};
use super::{checkpoints, save, Args, CliError, CliResult};
use crate::sampler::flow_hmc::{run_flow_hmc, LatentPotential};
use crate::sampler::hmc::ChainSink;
use crate::theory::Theory;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

/// [`save::SAMPLER_KEY`] of a flow-HMC ensemble (the chunks of `hmc --save`, read by
/// `measure` alike).
pub const SAMPLER_FLOW_HMC: &str = "flow-hmc";

const VALUED: &[&str] = &["checkpoint", "L", "n-traj", "n-therm", "chains", "steps", "tau", "seed", "out"];
const SWITCHES: &[&str] = &["quiet", "no-csv", "force", "save"];

/// 1000 trajectories per chain after 50, 8 chains (one batch through the flow).
const DEFAULTS: ChainDefaults = ChainDefaults { n_traj: 1000, n_therm: 50, chains: 8 };

/// Usage of `latflow fhmc`.
pub const USAGE: &str = "latflow fhmc --checkpoint FILE [--L L --n-traj 1000 --n-therm 50 --chains 8 --steps 10 \
                         --tau 1.0 --seed 0 --out runs/fhmc_THEORY --no-csv --quiet --save]";

/// Entry point of `latflow fhmc`.
pub fn run(theories: &[&dyn Theory], args: &[String]) -> CliResult<()> {
    let a = Args::parse(args, VALUED, SWITCHES).map_err(|e| CliError(format!("fhmc: {e}")))?;
    a.reject_positional("fhmc")?;
    let path: PathBuf = a
        .path("checkpoint")?
        .ok_or_else(|| CliError(format!("fhmc: --checkpoint FILE is required\nusage: {USAGE}")))?;
    let theory = checkpoints::theory_of(theories, &path)?;
    let ck = checkpoints::open_at(theory, &path, a.opt("L")?)?;
    let flow = ck.flow_f64()?;
    super::sample::note_size(&ck);
    let setup = ck.setup.as_ref();
    let mut c = hmc::common_for(&a, theory, "fhmc", DEFAULTS)?;
    // activations of the batch of chains with the tape, in f64
    super::check_memory(&ck.flow_f32()?, c.run.n_chains, 8.0, "flow-HMC with this --chains")?;
    if a.has("save") {
        let Some(out) = &c.out else {
            return Err(CliError("fhmc: --save writes into the run directory; it contradicts --no-csv".into()));
        };
        let dir = super::make_dir(out)?;
        let mut meta = save::hmc_metadata(theory, &setup.params(), &c.run);
        meta.insert(save::SAMPLER_KEY.into(), SAMPLER_FLOW_HMC.into());
        meta.insert("checkpoint".into(), path.display().to_string());
        meta.insert("checkpoint_sha256".into(), crate::io::digest::sha256_file(&path).map_err(CliError)?);
        meta.insert("start".into(), "prior samples z ~ r(z), seeded by seed".into());
        meta.extend(checkpoints::size_metadata(&ck));
        c.save = Some(save::Target::create(&dir, meta)?);
    }
    let obs = setup.observables();
    let action = setup.action();
    let z0 = flow.prior.sample(c.run.n_chains, &mut StdRng::seed_from_u64(c.run.seed ^ 0x5eed_f10e)).into_vec();
    let measure = |x: &[f64], o: &mut [f64]| {
        for (v, ob) in o.iter_mut().zip(&obs) {
            *v = (ob.f)(x);
        }
        o[obs.len()] = action.action(x);
    };
    let shape = setup.config_shape();
    let budget = (256usize << 20) / c.run.n_chains;
    let make = |chain: usize| -> Box<dyn ChainSink> {
        let t = c.save.as_ref().expect("sinks only when saving");
        Box::new(save::HmcSink(t.writer_within(chain, save::hmc_layout(&shape), budget.max(1))))
    };
    let sinks: Option<&(dyn Fn(usize) -> Box<dyn ChainSink> + Sync)> = c.save.as_ref().map(|_| &make as _);
    let total = c.run.n_chains * (c.run.n_therm + c.run.n_traj);
    let (done, finished) = (AtomicUsize::new(0), AtomicBool::new(false));
    let t0 = Instant::now();
    let pot = LatentPotential::new(&flow, action);
    let recs = std::thread::scope(|s| {
        if !c.quiet {
            s.spawn(|| hmc::progress(&done, &finished, total, t0));
        }
        let r = run_flow_hmc(pot, &c.run, z0, obs.len() + 1, measure, Some(&done), sinks);
        finished.store(true, Ordering::Relaxed);
        r
    })
    .map_err(|e| CliError(format!("fhmc: {e}; the chunks written before it are complete")))?;
    let secs = t0.elapsed().as_secs_f64();
    if recs.iter().any(|r| r.delta_h.iter().any(|d| !d.is_finite())) {
        eprintln!("warning: some trajectories diverged (non-finite dH); lower --tau or raise --steps");
    }
    let sizes = match checkpoints::size_metadata(&ck).get("L_trained") {
        Some(l0) => format!(", flow trained at L={l0}"),
        None => String::new(),
    };
    let header =
        format!("latflow fhmc {}: {} (flow-HMC with {}{sizes})", theory.name(), setup.describe(), path.display());
    let timing = format!(
        "{total} trajectories in {secs:.2} s ({:.1} ms per trajectory of all {} chains, {} threads)",
        1e3 * secs / (c.run.n_therm + c.run.n_traj) as f64,
        c.run.n_chains,
        rayon::current_num_threads()
    );
    hmc::summarize_as(&header, setup, &obs, &setup.derived(), &|_| true, &c.run, &recs, &timing, Some(&c))
}
