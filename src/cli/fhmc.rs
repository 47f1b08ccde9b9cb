//! `latflow fhmc --checkpoint FILE [--L L] [FLAGS]`: flow-HMC (Foreman et al.
//! arXiv:2112.01586) with a trained flow of any theory, at the checkpoint's lattice size or
//! at another (`--L`, a multiple of the masks' period: [`super::checkpoints::open_at`]);
//! or, for 2D U(1) and without a checkpoint, `latflow fhmc --plaquette-map M [--map-beta B]`
//! with the plaquette map ([`crate::flow::u1::PlaquetteU1`]: every plaquette through an
//! `M`-component circle map fitted to `e^{B cos x}`, the plaquette sum kept by one shift).
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
use crate::sampler::ensemble::{IndependenceSampler, Sampler};
use crate::sampler::flow_hmc::{latent_start, run_flow_hmc_over, LatentMap, LatentPotential};
use crate::sampler::hmc::ChainSink;
use crate::sampler::hmc::{chain_seed, HmcChain, HmcConfig};
use crate::theory::Group;
use crate::theory::Theory;
use latflow_comm::Comm;
use latflow_flow::u1::{CircleMixture, PlaquetteU1, UltralocalU1};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

/// [`save::SAMPLER_KEY`] of a flow-HMC ensemble (the chunks of `hmc --save`, read by
/// `measure` alike).
pub const SAMPLER_FLOW_HMC: &str = "flow-hmc";

const VALUED: &[&str] = &[
    "checkpoint",
    "L",
    "n-traj",
    "n-therm",
    "chains",
    "steps",
    "tau",
    "seed",
    "out",
    "precision",
    "start",
    "integrator",
    "plaquette-map",
    "map-beta",
    "device",
];
const SWITCHES: &[&str] = &["quiet", "no-csv", "force", "save", "tape", "identity"];

/// 1000 trajectories per chain after 50, 8 chains (one batch through the flow).
const DEFAULTS: ChainDefaults = ChainDefaults { n_traj: 1000, n_therm: 50, chains: 8 };

/// Usage of `latflow fhmc`.
pub const USAGE: &str = "latflow fhmc --checkpoint FILE [--L L --n-traj 1000 --n-therm 50 --chains 8 --steps 10 \
                         --tau 1.0 --integrator leapfrog|omelyan --seed 0 --precision f32|f64 --start hmc|prior --out runs/fhmc_THEORY --no-csv --quiet --save --tape --identity --device cpu|cuda \
                         COUPLING FLAGS]\n       latflow fhmc --plaquette-map M [--map-beta B --L L --beta BETA ...]   (2D U(1), no checkpoint)";

/// Entry point of `latflow fhmc`.
pub fn run(theories: &[&dyn Theory], args: &[String], comm: &dyn Comm) -> CliResult<()> {
    // the couplings of every theory may be given: the target of the chains (a flow trained
    // at other couplings is a partial trivializing map there); the checkpoint's theory is
    // known only after parsing, so a coupling of another theory is refused below
    let couplings: Vec<&str> =
        theories.iter().flat_map(|t| t.params()).filter(|p| p.group == Group::Coupling).map(|p| p.flag).collect();
    let valued: Vec<&str> = VALUED.iter().copied().chain(couplings.iter().copied()).collect();
    let a = Args::parse(args, &valued, SWITCHES).map_err(|e| CliError(format!("fhmc: {e}")))?;
    a.reject_positional("fhmc")?;
    let path: Option<PathBuf> = a.path("checkpoint")?;
    // without a checkpoint: the plaquette map of 2D U(1), lattice and couplings from flags
    let theory = match &path {
        Some(path) => checkpoints::theory_of(theories, path)?,
        None if a.opt::<String>("plaquette-map")?.is_some() => {
            *theories.iter().find(|t| t.name() == "u1").ok_or_else(|| CliError("fhmc: no u1 theory".into()))?
        }
        None => {
            return Err(CliError(format!(
                "fhmc: --checkpoint FILE is required (or --plaquette-map M, 2D U(1) only)\nusage: {USAGE}"
            )))
        }
    };
    let mut overrides = BTreeMap::new();
    for flag in &couplings {
        if let Some(v) = a.opt::<String>(flag)? {
            if !theory.params().iter().any(|p| p.group == Group::Coupling && p.flag == *flag) {
                return Err(CliError(format!("fhmc: --{flag} is not a coupling of the {} theory", theory.name())));
            }
            overrides.insert(flag.to_string(), v.to_string());
        }
    }
    if let Some(l) = a.opt::<usize>("L")? {
        overrides.insert("L".into(), l.to_string());
    }
    let ck = match &path {
        Some(path) => Some(checkpoints::open_with(theory, path, &overrides)?),
        None => None,
    };
    let own_setup = match &ck {
        Some(_) => None,
        None => {
            let params = crate::theory::Params::from_flags(&theory.params(), &overrides);
            Some(theory.setup(&params).map_err(|e| CliError(format!("fhmc: {e}")))?)
        }
    };
    let setup: &dyn crate::theory::Setup = match (&ck, &own_setup) {
        (Some(ck), _) => ck.setup.as_ref(),
        (None, Some(s)) => s.as_ref(),
        (None, None) => unreachable!("a setup either way"),
    };
    // the target's beta (U(1)): the plaquette map's fit and the lanes' Wilson force
    let target_beta = setup.params().get("beta").and_then(|b| b.parse::<f64>().ok());
    // the checkpoint's flow; none with the plaquette map alone (any L >= 2 then, not only the
    // link flows' multiples of 4)
    let (flow, mut flow32) = match &ck {
        Some(ck) => (Some(ck.flow_f64()?), Some(ck.flow_f32()?)),
        None => (None, None),
    };
    if a.opt::<String>("plaquette-map")?.is_some() && (a.has("identity") || a.has("tape")) {
        return Err(CliError("fhmc: --plaquette-map replaces the flow; it contradicts --identity and --tape".into()));
    }
    let mut described = match &path {
        Some(p) => p.display().to_string(),
        None => "the plaquette map".into(),
    };
    let precision = match a.opt::<String>("precision")?.as_deref() {
        None | Some("f32") => Precision::F32,
        Some("f64") => Precision::F64,
        Some(v) => return Err(CliError(format!("fhmc: --precision must be f32 or f64, got '{v}'"))),
    };
    // an ultralocal U(1) flow (kernel-1 nets) runs without the tape unless --tape;
    // --identity: no layers at all (plain HMC through the same machinery)
    // --device cuda: the force through the f32 flow on the GPU (the tape's kernels, forward
    // and input-gradient sweep); H, the chains and the fused CPU maps stay on the CPU
    let device = super::parse_device(&a)?;
    if device == crate::tensor::Device::Cuda {
        let cpu_only =
            [("plaquette-map", a.opt::<String>("plaquette-map")?.is_some()), ("identity", a.has("identity"))];
        if let Some((flag, _)) = cpu_only.iter().find(|(_, given)| *given) {
            return Err(CliError(format!("fhmc: --{flag} runs on the CPU only; it contradicts --device cuda")));
        }
        if precision == Precision::F64 {
            return Err(CliError("fhmc: --device cuda runs the force in f32; it contradicts --precision f64".into()));
        }
        if comm.size() > 1 {
            return Err(CliError(format!("fhmc: --device cuda runs on one process, not on {} ranks", comm.size())));
        }
        super::check_device(setup, device)?;
        if let Some(f) = flow32.as_mut() {
            super::move_flow(f, device)?;
        }
    }
    let ultralocal = if a.has("identity") {
        if a.has("tape") {
            return Err(CliError(
                "fhmc: --identity and --tape contradict each other (the identity map has no tape)".into(),
            ));
        }
        Some(flow.as_ref().and_then(identity_like).ok_or_else(|| {
            CliError(format!(
                "fhmc: --identity needs a 2D U(1) checkpoint (links on the torus, L a multiple of 4); {described} is {}",
                theory.name()
            ))
        })?)
    } else if a.has("tape") || device == crate::tensor::Device::Cuda {
        None
    } else {
        flow.as_ref().and_then(UltralocalU1::from_flow)
    };
    let ultralocal32 = ultralocal.clone().map(UltralocalU1::f32_force);
    // --plaquette-map M: the 2D plaquette map with an M-component circle map fitted to
    // e^{B cos x}, B = --map-beta (the checkpoint, if any, gives the lattice and theory)
    let mut map_beta = None;
    if a.opt::<String>("map-beta")?.is_some() && a.opt::<String>("plaquette-map")?.is_none() {
        return Err(CliError("fhmc: --map-beta is the plaquette map's; give --plaquette-map M too".into()));
    }
    let plaquette = match a.opt::<usize>("plaquette-map")? {
        None => None,
        Some(m) => {
            let not_u1 = || CliError(format!("fhmc: --plaquette-map is for 2D U(1); {described} is {}", theory.name()));
            // the lattice: the checkpoint flow's links (2, L, L) on the torus, else the flags'
            let l = match &flow {
                Some(flow) => u1_lattice(flow).ok_or_else(not_u1)?,
                None => setup.params().get("L").and_then(|l| l.parse::<usize>().ok()).ok_or_else(not_u1)?,
            };
            let Some(beta) = target_beta else { return Err(not_u1()) };
            if m == 0 || m > 8 {
                return Err(CliError(format!("fhmc: --plaquette-map takes 1 to 8 components, got {m}")));
            }
            // default: half the target's beta (a partial trivializing map: the fit at the
            // target beta is steep near pi and the leapfrog stalls; at beta 6 the best was
            // 2.5-3, README "Topological freezing beaten")
            let beta_fit = a.opt::<f64>("map-beta")?.unwrap_or((0.5 * beta).clamp(0.0, MAP_BETA_MAX));
            if !(beta_fit.is_finite() && (0.0..=MAP_BETA_MAX).contains(&beta_fit)) {
                return Err(CliError(format!("fhmc: --map-beta must be in [0, {MAP_BETA_MAX}], got {beta_fit}")));
            }
            map_beta = Some(beta_fit);
            if let Some(path) = &path {
                described = format!("the plaquette map (lattice and theory of {})", path.display());
            }
            Some(PlaquetteU1::new(l, CircleMixture::fit(beta_fit, m)))
        }
    };
    let exact: &dyn LatentMap = match (&plaquette, &ultralocal, &flow) {
        (Some(p), ..) => p,
        (None, Some(u), _) => u,
        (None, None, Some(f)) => f,
        (None, None, None) => unreachable!("without a checkpoint there is the plaquette map"),
    };
    let force32: &dyn LatentMap = match &ultralocal32 {
        Some(u) => u,
        None => flow32.as_ref().map_or(exact, |f| f as _),
    };
    let start = match a.opt::<String>("start")?.as_deref() {
        None | Some("hmc") => Start::Hmc,
        Some("prior") => Start::Prior,
        Some(v) => return Err(CliError(format!("fhmc: --start must be hmc or prior, got '{v}'"))),
    };
    if let Some(ck) = &ck {
        super::sample::note_size(ck);
    }
    let mut c = hmc::common_for(&a, theory, "fhmc", DEFAULTS)?;
    c.out = c.out.map(|o| super::ranks::root_dir(comm, &o));
    c.quiet |= !comm.is_root();
    // this rank's chains (all of them on one process)
    let mine = latflow_comm::share(c.run.n_chains, comm.size(), comm.rank());
    // activations of the batch of chains with the tape, in f64
    if let (Some(f), None) = (&flow32, &plaquette) {
        super::check_memory(f, mine.len().max(1), 8.0, "flow-HMC with this --chains")?;
    }
    if a.has("save") {
        let Some(out) = &c.out else {
            return Err(CliError("fhmc: --save writes into the run directory; it contradicts --no-csv".into()));
        };
        let mut meta = save::hmc_metadata(theory, &setup.params(), &c.run);
        meta.insert(save::SAMPLER_KEY.into(), SAMPLER_FLOW_HMC.into());
        if let Some(path) = &path {
            meta.insert("checkpoint".into(), path.display().to_string());
            meta.insert("checkpoint_sha256".into(), crate::io::digest::sha256_file(path).map_err(CliError)?);
        }
        meta.insert("start".into(), start.describe());
        meta.insert("precision".into(), if precision == Precision::F32 { "f32" } else { "f64" }.into());
        let latent_map = match (&plaquette, a.has("identity"), ultralocal.is_some()) {
            (Some(p), ..) => format!(
                "plaquette map (circle map fitted at beta {}, scales {:?})",
                map_beta.unwrap_or(f64::NAN),
                p.circle_map().scales()
            ),
            (None, true, _) => "identity (plain HMC)".into(),
            (None, false, true) => "ultralocal (no tape)".into(),
            (None, false, false) => "tape".into(),
        };
        meta.insert("latent_map".into(), latent_map);
        if let Some(ck) = &ck {
            meta.extend(checkpoints::size_metadata(ck));
        }
        // rank 0 empties the ensemble directory before any rank writes its chains' chunks
        c.save = Some(if comm.is_root() {
            save::Target::create(&super::make_dir(out)?, meta)?
        } else {
            save::Target { dir: out.join(save::ENSEMBLE_DIR), metadata: meta }
        });
        comm.barrier();
    }
    let obs = setup.observables();
    let action = setup.action();
    let t_start = Instant::now();
    let z0 = match start {
        Start::Prior => {
            // every rank draws all chains' starts and keeps its own (as one process would)
            let mut rng = StdRng::seed_from_u64(c.run.seed ^ 0x5eed_f10e);
            let z = match &flow {
                Some(flow) => flow.prior.sample(c.run.n_chains, &mut rng).into_vec(),
                // the plaquette map alone: Haar links
                None => {
                    use rand::Rng;
                    (0..c.run.n_chains * exact.dof()).map(|_| rng.gen_range(0.0..2.0 * std::f64::consts::PI)).collect()
                }
            };
            let d = z.len() / c.run.n_chains;
            z[mine.start * d..mine.end * d].to_vec()
        }
        Start::Hmc if mine.is_empty() => Vec::new(),
        Start::Hmc => {
            let hmc = HmcConfig { flip: false, ..c.run.hmc };
            let x0: Vec<f64> = mine
                .clone()
                .into_par_iter()
                .flat_map_iter(|chain| {
                    let mut rng = StdRng::seed_from_u64(chain_seed(c.run.seed ^ 0x57a7_e0f5, chain));
                    let mut ch = HmcChain::new(action, setup.hmc_start(&mut rng));
                    for _ in 0..START_TRAJECTORIES {
                        ch.trajectory(action, &hmc, &mut rng);
                    }
                    ch.config().to_vec()
                })
                .collect();
            latent_start(exact, &x0)
        }
    };
    let start_secs = t_start.elapsed().as_secs_f64();
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
    // the progress line counts rank 0's chains
    let total = mine.len() * (c.run.n_therm + c.run.n_traj);
    let (done, finished) = (AtomicUsize::new(0), AtomicBool::new(false));
    let t0 = Instant::now();
    // the Wilson action's gradient on the force map's lanes, when it is the action's own
    // (checked on the same probe configurations on every rank: every rank decides alike)
    let wilson32 = match (&ultralocal32, target_beta) {
        (Some(u), Some(beta)) if precision == Precision::F32 => {
            let lanes = u.clone().with_wilson_lanes(beta);
            same_force(u, &lanes, action, &probes(u.dof())).then_some(lanes)
        }
        _ => None,
    };
    let force32: &dyn LatentMap = wilson32.as_ref().map_or(force32, |w| w as _);
    // the plaquette map's force on f32 lanes (checked as above)
    let plaquette32 = match (&plaquette, target_beta) {
        (Some(p), Some(beta)) if precision == Precision::F32 => {
            // the arithmetic checked with the shift converged; the run uses the default steps
            let converged = p.clone().with_wilson_lanes(beta).with_newton_steps(8);
            same_force(p, &converged, action, &probes(p.dof())).then(|| p.clone().with_wilson_lanes(beta))
        }
        _ => None,
    };
    let force32: &dyn LatentMap = match (&plaquette32, &plaquette) {
        (Some(p32), _) => p32,
        (None, Some(p)) => p,
        (None, None) => force32,
    };
    let pot = LatentPotential::new(exact, action);
    let pot = if precision == Precision::F32 { pot.with_force_map(force32) } else { pot };
    let recs = std::thread::scope(|s| {
        if !c.quiet {
            s.spawn(|| hmc::progress(&done, &finished, total, t0));
        }
        let r = run_flow_hmc_over(pot, &c.run, z0, obs.len() + 1, measure, Some(&done), sinks, comm);
        finished.store(true, Ordering::Relaxed);
        r
    })
    .map_err(|e| CliError(format!("fhmc: {e}; the chunks written before it are complete")))?;
    let secs = t0.elapsed().as_secs_f64();
    // rank 0 reports; the other ranks are done once their records are gathered
    let Some(recs) = recs else { return Ok(()) };
    // every rank's chunks are complete once the records are gathered
    if let Some(t) = &c.save {
        t.seal()?;
    }
    if recs.iter().any(|r| r.delta_h.iter().any(|d| !d.is_finite())) {
        eprintln!("warning: some trajectories diverged (non-finite dH); lower --tau or raise --steps");
    }
    let sizes = match ck.as_ref().and_then(|ck| checkpoints::size_metadata(ck).get("L_trained").cloned()) {
        Some(l0) => format!(", flow trained at L={l0}"),
        None => String::new(),
    };
    let header = format!("latflow fhmc {}: {} (flow-HMC with {described}{sizes})", theory.name(), setup.describe());
    let ranks = if comm.size() > 1 { format!(" x {} ranks", comm.size()) } else { String::new() };
    let timing = format!(
        "{} trajectories in {secs:.2} s ({:.1} ms per trajectory of all {} chains, {} threads{ranks}; force in {}, H in \
         f64{})\n  start                        {} ({start_secs:.2} s)",
        c.run.n_chains * (c.run.n_therm + c.run.n_traj),
        1e3 * secs / (c.run.n_therm + c.run.n_traj) as f64,
        c.run.n_chains,
        rayon::current_num_threads(),
        match (precision, device) {
            (Precision::F64, _) => "f64".to_string(),
            (Precision::F32, crate::tensor::Device::Cpu) => "f32".to_string(),
            (Precision::F32, d) => format!("f32 on {}", super::device_line(d)),
        },
        match (&plaquette, a.has("identity"), ultralocal.is_some(), wilson32.is_some()) {
            (Some(p), ..) => format!(
                "; plaquette map, {} fitted at beta {}{}",
                match p.circle_map().scales().len() {
                    1 => "1 component".to_string(),
                    m => format!("{m} components"),
                },
                map_beta.unwrap_or(f64::NAN),
                if plaquette32.is_some() { ", force on the f32 lanes" } else { "" }
            ),
            (None, true, _, true) => "; identity map (plain HMC), action force on the f32 lanes".into(),
            (None, true, _, false) => "; identity map (plain HMC)".into(),
            (None, false, true, true) => "; ultralocal flow: no tape, action force on the f32 lanes".into(),
            (None, false, true, false) => "; ultralocal flow: no tape".into(),
            (None, false, false, _) => String::new(),
        },
        start.describe()
    );
    hmc::summarize_as(&header, setup, &obs, &setup.derived(), &|_| true, &c.run, &recs, &timing, Some(&c))?;
    if let (Some(dir), Some((k, charge))) =
        (c.out.as_ref(), obs.iter().enumerate().find(|(_, o)| o.tunnelling.is_some()))
    {
        let q_flow_hmc = &recs[0].observables[k][..c.run.n_traj.min(HISTORY_MAX)];
        // the independence Metropolis chain needs a trained flow: none with the map alone
        charge_histories(setup, flow.as_ref().filter(|_| plaquette.is_none()), charge, q_flow_hmc, &c.run, dir)?;
    }
    Ok(())
}

/// `L` of a 2D U(1) flow (links `(2, L, L)` on the torus); `None` for any other flow.
fn u1_lattice(flow: &crate::flow::model::Flow<f64>) -> Option<usize> {
    let [2, l, w] = flow.prior.shape()[..] else { return None };
    (l == w && l > 0 && flow.prior.period() == Some(2.0 * std::f64::consts::PI)).then_some(l)
}

/// The identity map on the lattice of a 2D U(1) flow (`--identity`); `None` for any
/// other flow.
fn identity_like(flow: &crate::flow::model::Flow<f64>) -> Option<UltralocalU1> {
    u1_lattice(flow).filter(|l| l.is_multiple_of(4)).map(UltralocalU1::identity)
}

/// Whether `lanes` (the Wilson action's gradient on the lanes) gives `generic`'s force
/// (the action's own force) at the configurations `z`, to f32 rounding: relative to
/// max(|F|, 1), within 1e-3 (the f32 maps agree to about 1e-5 in the audits).
fn same_force(generic: &dyn LatentMap, lanes: &dyn LatentMap, action: &dyn crate::physics::Action, z: &[f64]) -> bool {
    let (d, n) = (generic.dof(), z.len() / generic.dof());
    let cotangent = |x: &[f64], g: &mut [f64]| {
        for (x, g) in x.chunks(d).zip(g.chunks_mut(d)) {
            action.force(x, g);
        }
    };
    let run = |m: &dyn LatentMap| {
        let (mut x, mut ld, mut g) = (vec![0.0; z.len()], vec![0.0; n], vec![0.0; z.len()]);
        m.pullback(z, &mut x, &mut ld, &cotangent, &mut g);
        g
    };
    let (a, b) = (run(generic), run(lanes));
    let scale = a.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    a.iter().zip(&b).all(|(p, q)| (p - q).abs() <= 1e-3 * scale)
}

/// 8 nearly ordered link configurations of `dof` angles (a fixed seed: the same on every
/// rank), where the lanes maps' arithmetic is checked against the action's own force.
fn probes(dof: usize) -> Vec<f64> {
    use rand::Rng;
    let mut rng = StdRng::seed_from_u64(0x009e_0be5);
    (0..8 * dof).map(|_| rng.gen_range(0.0..0.3)).collect()
}

/// The largest `--map-beta`: the fit's circle map gets as steep as `e^{beta}` near pi,
/// which f32 lanes and the Newton shift stop resolving well before this.
const MAP_BETA_MAX: f64 = 20.0;

/// Where the leapfrog's force is computed (`H` is always f64: exact either way, see
/// [`LatentPotential`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Precision {
    /// The flow in f32 with the engine's SIMD kernels (the default).
    F32,
    /// The flow in f64 (the audits' precision).
    F64,
}

/// Plain HMC trajectories each chain runs from the theory's start before its configuration
/// is mapped to `z` (`--start hmc`).
const START_TRAJECTORIES: usize = 200;

/// Where the chains start.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Start {
    /// `START_TRAJECTORIES` plain HMC trajectories at the target couplings from the
    /// theory's start, then `z = f^{-1}(x)` by the reverse pass (the default: near
    /// equilibrium whatever the flow, also at couplings it was not trained for).
    Hmc,
    /// Samples of the flow's prior, whose images are the flow's own samples (near
    /// equilibrium only when the flow is good at these couplings).
    Prior,
}

impl Start {
    fn describe(&self) -> String {
        match self {
            Start::Hmc => format!(
                "{START_TRAJECTORIES} plain HMC trajectories per chain (seeded by seed), mapped to z by the reverse pass"
            ),
            Start::Prior => "prior samples z ~ r(z), seeded by seed".into(),
        }
    }
}

/// Most trajectories shown per chain in the charge-history figure.
const HISTORY_MAX: usize = 1000;

/// The charge along flow-HMC's first chain next to a plain HMC chain with the same
/// trajectories (length and leapfrog steps) and a flow independence-Metropolis chain of as
/// many steps, at the same couplings and lattice, in `{stem}.svg` (arXiv:2112.01586 Figs. 4
/// and 5), with the three tunnelling rates printed.
fn charge_histories(
    setup: &dyn crate::theory::Setup,
    flow: Option<&crate::flow::model::Flow<f64>>,
    charge: &crate::theory::Observable,
    q_flow_hmc: &[f64],
    run: &crate::sampler::hmc::RunConfig,
    dir: &std::path::Path,
) -> CliResult<()> {
    use crate::io::plot;
    use crate::sampler::stats::tunnelling_rate;
    let n = q_flow_hmc.len();
    let action = setup.action();
    let mut rng = StdRng::seed_from_u64(run.seed ^ 0x9157_0e1e);
    // plain HMC, thermalized as long as flow-HMC was
    let mut chain = crate::sampler::hmc::HmcChain::new(action, setup.hmc_start(&mut rng));
    let mut q_hmc = Vec::with_capacity(n);
    for t in 0..run.n_therm + n {
        chain.trajectory(action, &run.hmc, &mut rng);
        if t >= run.n_therm {
            q_hmc.push((charge.f)(chain.config()));
        }
    }
    // flow independence Metropolis (the sampler's own), its chain of the charge
    let act = |x: &[f64]| action.action(x);
    let q_imh = flow.map(|flow| {
        let e = IndependenceSampler::new(flow, &act, 256).sample(n, &mut rng);
        e.chain_of(&e.measure(&charge.f), 0)
    });
    let imh =
        q_imh.as_ref().map_or(String::new(), |q| format!(", flow independence Metropolis {:.4}", tunnelling_rate(q)));
    println!(
        "  {:<28} flow-HMC {:.4}, HMC {:.4}{imh} per step   (first chain, {n} steps)",
        "tunnelling rate, figure",
        tunnelling_rate(q_flow_hmc),
        tunnelling_rate(&q_hmc),
    );
    let panel = |title: String, q: &[f64], color: &str| {
        plot::LinePlot::new(title, "Markov-chain step", charge.label.trim_matches(|c| c == '<' || c == '>'))
            .with_series(plot::Series::from_values("Q", q, plot::Style::Step).with_color(color))
            .with_size(900.0, 240.0)
    };
    let traj = format!("tau {}, {} {} steps", run.hmc.trajectory_length, run.hmc.n_steps, run.hmc.integrator.name());
    let mut panels = vec![
        panel(format!("HMC ({traj}), {}", setup.describe()), &q_hmc, plot::PALETTE[1]),
        panel(format!("flow-HMC ({traj})"), q_flow_hmc, plot::PALETTE[2]),
    ];
    if let Some(q) = &q_imh {
        panels.push(panel("flow + independence Metropolis".to_string(), q, plot::PALETTE[0]));
    }
    let stem = charge.tunnelling.unwrap_or("charge");
    let path = dir.join(format!("{stem}.svg"));
    std::fs::create_dir_all(dir).map_err(|e| CliError(format!("cannot create {}: {e}", dir.display())))?;
    plot::write_svg(&path, &plot::panels(&panels, 1))
        .map_err(|e| CliError(format!("cannot write {}: {e}", path.display())))?;
    println!("wrote {}", path.display());
    Ok(())
}
