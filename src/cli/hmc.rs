//! `latflow hmc THEORY [FLAGS]`: the HMC baseline for every theory of the registry. Runs
//! independent seeded chains in parallel, prints progress on stderr, a summary of every
//! observable of the theory as `value +- error` with its integrated autocorrelation time
//! (Gamma method, Wolff 2004) on stdout, next to the theory's reference values at these
//! couplings, and writes the per-configuration observables as `observables.csv` into the
//! run directory (`--out`, default `runs/hmc_THEORY`).

use super::{save, Args, CliError, CliResult};
use crate::io::csv::Table;
use crate::physics::Action;
use crate::sampler::hmc::{run_chains_over, ChainRecord, ChainSink, HmcConfig, Integrator, RunConfig};
use crate::sampler::stats::{
    gamma_method_derived_replicas, gamma_method_replicas, tunnelling_rate, GammaEstimate, S_TAU_DEFAULT,
};
use crate::theory::{Derived, Observable, Params, Setup, Theory};
use latflow_comm::Comm;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Flags every theory accepts.
const COMMON: &[&str] = &["n-traj", "n-therm", "chains", "steps", "tau", "seed", "out", "integrator"];
const SWITCHES: &[&str] = &["quiet", "no-csv", "force", "save", "flip"];

/// Most chains of one run.
pub const MAX_CHAINS: usize = 4096;
/// Longest trajectory (molecular-dynamics time).
pub const MAX_TAU: f64 = 100.0;
/// Most leapfrog steps per trajectory.
pub const MAX_STEPS: usize = 100_000;
/// Most thermalization trajectories per chain.
pub const MAX_THERM: usize = 1_000_000_000;

/// Acceptance below which the chains are reported as stuck (no deviations quoted).
const MIN_ACCEPTANCE: f64 = 0.05;
/// Acceptance above which the trajectories are so short that the chains barely move.
const MAX_ACCEPTANCE: f64 = 0.999;

/// Memory all chains' ensemble writers buffer together with `--save`.
const SAVE_BUFFER_BYTES: usize = 256 << 20;

/// The file of per-configuration observables in the run directory.
pub const OBSERVABLES_FILE: &str = "observables.csv";

/// Usage of `latflow hmc`, printed on `latflow hmc --help` and with errors.
pub fn usage(theories: &[&dyn Theory]) -> String {
    let mut s = String::new();
    for t in theories {
        let flags: Vec<String> =
            t.params().iter().filter(|p| p.for_hmc()).map(|p| format!("--{} {}", p.flag, p.default)).collect();
        s += &format!("usage: latflow hmc {} [{}] [COMMON]\n", t.name(), flags.join(" "));
    }
    s + "COMMON: --n-traj 10000 (per chain) --n-therm 500 --chains 4 --steps 10 --tau 1.0\n        \
         --integrator leapfrog|omelyan (omelyan: 2 forces per step, a smaller energy error)\n        \
         --seed 0 --out runs/hmc_THEORY (observables.csv there) --no-csv --quiet\n        \
         --save (every recorded configuration into OUT/ensemble, per chain; see latflow measure)\n        \
         --flip (after each trajectory the global symmetry phi -> -phi / theta -> -theta with probability 1/2)"
}

/// The run's settings from the command line.
pub struct Common {
    pub(crate) run: RunConfig,
    pub(crate) out: Option<PathBuf>,
    pub(crate) quiet: bool,
    pub(crate) save: Option<save::Target>,
}

/// Defaults of the chain flags, which differ between `hmc` and `fhmc`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChainDefaults {
    pub(crate) n_traj: usize,
    pub(crate) n_therm: usize,
    pub(crate) chains: usize,
}

/// An estimate's error at or below this fraction of max(|mean|, |reference|, 1) is rounding,
/// not statistics: no deviation from an exact reference is quoted then.
const ROUNDING_ERROR: f64 = 1e-12;

/// `latflow hmc`'s: 10000 trajectories per chain after 500, 4 chains.
const HMC_DEFAULTS: ChainDefaults = ChainDefaults { n_traj: 10_000, n_therm: 500, chains: 4 };

/// Entry point of `latflow hmc`.
pub fn run(theories: &[&dyn Theory], args: &[String], comm: &dyn Comm) -> CliResult<()> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", usage(theories));
        return Ok(());
    }
    let theory =
        super::pick_theory(theories, args.first(), "hmc").map_err(|e| CliError(format!("{e}\n{}", usage(theories))))?;
    let params: Vec<_> = theory.params().into_iter().filter(|p| p.for_hmc()).collect();
    let valued: Vec<&str> = COMMON.iter().copied().chain(params.iter().map(|p| p.flag)).collect();
    let a = Args::parse(&args[1..], &valued, SWITCHES).map_err(|e| {
        // a flag of another theory: say whose it is
        let unknown = args[1..].iter().filter_map(|w| w.strip_prefix("--")).map(|w| w.split('=').next().unwrap_or(w));
        let unknown: Vec<&str> = unknown.filter(|f| !valued.contains(f) && !SWITCHES.contains(f)).collect();
        let other = theories.iter().filter(|t| t.name() != theory.name()).find_map(|t| {
            t.params().into_iter().find(|p| p.for_hmc() && unknown.contains(&p.flag)).map(|p| (t.name(), p.flag))
        });
        let hint = other.map_or(String::new(), |(t, f)| format!(" (--{f} is a {t} flag)"));
        CliError(format!("hmc: {e}{hint}"))
    })?;
    a.reject_positional("hmc").map_err(|e| CliError(format!("{e}\n{}", usage(theories))))?;
    let given = super::train::given_params(&a, &params)?;
    let params = Params::from_flags(&theory.params(), &given);
    let setup = theory.setup(&params).map_err(|e| CliError(format!("hmc: {e}")))?;
    let mut c = common(&a, theory)?;
    c.out = c.out.map(|o| super::ranks::root_dir(comm, &o));
    c.quiet |= !comm.is_root();
    if a.has("save") {
        let Some(out) = &c.out else {
            return Err(CliError("hmc: --save writes into the run directory; it contradicts --no-csv".into()));
        };
        let meta = save::hmc_metadata(theory, params.values(), &c.run);
        // rank 0 empties the ensemble directory before any rank writes its chains' chunks
        c.save = Some(if comm.is_root() {
            save::Target::create(&super::make_dir(out)?, meta)?
        } else {
            save::Target { dir: out.join(save::ENSEMBLE_DIR), metadata: meta }
        });
        comm.barrier();
    }
    sample(theory, setup.as_ref(), &c, comm)
}

fn common(a: &Args, theory: &dyn Theory) -> CliResult<Common> {
    common_for(a, theory, "hmc", HMC_DEFAULTS)
}

/// The chain settings of `cmd` (`hmc`, `fhmc`) from the command line, the run directory
/// (default `runs/{cmd}_THEORY`) unless `--no-csv`.
pub(crate) fn common_for(a: &Args, theory: &dyn Theory, cmd: &str, d: ChainDefaults) -> CliResult<Common> {
    let tau = a.finite("tau", 1.0)?;
    if tau <= 0.0 || tau > MAX_TAU {
        return Err(CliError(format!("{cmd}: --tau must be in (0, {MAX_TAU}], got {tau:e}")));
    }
    for (flag, max) in [("steps", MAX_STEPS), ("n-therm", MAX_THERM)] {
        let v: i64 = a.get(flag, 0)?;
        if v > max as i64 {
            return Err(CliError(format!("{cmd}: --{flag} {v} is above the limit of {max}")));
        }
    }
    let seed: u64 = a.get("seed", 0u64)?;
    let run = RunConfig {
        hmc: HmcConfig {
            trajectory_length: tau,
            n_steps: a.positive("steps", 10)?,
            flip: a.has("flip"),
            integrator: match a.opt::<String>("integrator")? {
                None => Integrator::Leapfrog,
                Some(v) => Integrator::parse(&v).map_err(|e| CliError(format!("{cmd}: --{e}")))?,
            },
        },
        n_chains: a.positive("chains", d.chains)?,
        n_therm: non_negative(a, "n-therm", d.n_therm)?,
        n_traj: a.positive("n-traj", d.n_traj)?,
        seed,
    };
    if run.n_chains * run.n_traj < 2 {
        return Err(CliError(format!(
            "{cmd}: the error analysis needs at least 2 recorded trajectories (--n-traj x --chains)"
        )));
    }
    if run.n_chains > MAX_CHAINS {
        return Err(CliError(format!("{cmd}: --chains {} is above the limit of {MAX_CHAINS}", run.n_chains)));
    }
    // every recorded trajectory keeps its observables, dH and acceptance in memory
    let values = run.n_chains as f64 * run.n_traj as f64 * (theory.params().len() + 8) as f64 * 8.0;
    if values > super::MEMORY_LIMIT_BYTES || run.n_chains.checked_mul(run.n_traj + run.n_therm).is_none() {
        return Err(CliError(format!(
            "{cmd}: {} chains x {} trajectories would keep about {:.1} GiB of measurements (limit {:.0} GiB)",
            run.n_chains,
            run.n_traj,
            values / (1u64 << 30) as f64,
            super::MEMORY_LIMIT_BYTES / (1u64 << 30) as f64
        )));
    }
    let out = if a.has("no-csv") {
        if a.opt::<String>("out")?.is_some() {
            return Err(CliError(format!("{cmd}: --out and --no-csv contradict each other")));
        }
        None
    } else {
        let default = PathBuf::from(format!("runs/{cmd}_{}", theory.name()));
        Some(super::output_dir(a.path("out")?, &default, a.has("force"), "choose another --out")?)
    };
    Ok(Common { run, out, quiet: a.has("quiet"), save: None })
}

fn non_negative(a: &Args, name: &str, default: usize) -> CliResult<usize> {
    let v: i64 = a.get(name, default as i64)?;
    usize::try_from(v).map_err(|_| CliError(format!("--{name} must be >= 0, got {v}")))
}

/// Runs the chains (spread over the ranks of `comm`, each rank saving its own chains'
/// chunks), prints the summary with the references, writes the CSV (rank 0).
fn sample(theory: &dyn Theory, setup: &dyn Setup, c: &Common, comm: &dyn Comm) -> CliResult<()> {
    let obs = setup.observables();
    let action = setup.action();
    let dof = action.dof() as f64;
    // the chains running at once each hold a configuration, a momentum, a force and copies
    let running = c.run.n_chains.min(rayon::current_num_threads()) as f64;
    let bytes = running * dof * 8.0 * 8.0;
    if bytes > super::MEMORY_LIMIT_BYTES {
        return Err(CliError(format!(
            "hmc: {running} chains running at once on {dof} degrees of freedom would need about {:.1} GiB \
             (limit {:.0} GiB): a smaller lattice",
            bytes / (1u64 << 30) as f64,
            super::MEMORY_LIMIT_BYTES / (1u64 << 30) as f64
        )));
    }
    let init = |_c: usize, r: &mut rand::rngs::StdRng| setup.hmc_start(r);
    let measure = |x: &[f64], o: &mut [f64]| {
        for (v, ob) in o.iter_mut().zip(&obs) {
            *v = (ob.f)(x);
        }
        o[obs.len()] = action.action(x);
    };
    let shape = setup.config_shape();
    let (recs, secs) = run_with_progress(action, c, obs.len() + 1, init, measure, &shape, comm)?;
    let Some(recs) = recs else { return Ok(()) };
    // every rank's chunks are complete once the records are gathered
    if let Some(t) = &c.save {
        t.seal()?;
    }
    let n = c.run.n_chains * (c.run.n_therm + c.run.n_traj);
    let ranks = if comm.size() > 1 { format!(" x {} ranks", comm.size()) } else { String::new() };
    let timing = format!(
        "{n} trajectories in {secs:.2} s ({:.0}/s on {} threads{ranks})",
        n as f64 / secs,
        rayon::current_num_threads()
    );
    summarize(theory, setup, &obs, &setup.derived(), &|_| true, &c.run, &recs, &timing, Some(c))
}

/// The summary of HMC chains (`hmc`, and `measure` on a saved HMC ensemble):
/// acceptance, `<exp(-dH)>`, each of `obs` (measured into `recs[c].observables[k]`, the
/// action last) with references and tunnelling, `<S>/V`; with `c`, the CSV and the
/// ensemble's line. Non-finite results are an error.
#[allow(clippy::too_many_arguments)]
pub fn summarize(
    theory: &dyn Theory,
    setup: &dyn Setup,
    obs: &[Observable],
    derived: &[Derived],
    select: &dyn Fn(&str) -> bool,
    run: &RunConfig,
    recs: &[ChainRecord],
    timing: &str,
    c: Option<&Common>,
) -> CliResult<()> {
    let header = format!("latflow hmc {}: {}", theory.name(), setup.describe());
    summarize_as(&header, setup, obs, derived, select, run, recs, timing, c)
}

/// [`summarize`] under another first line (`latflow fhmc`'s chains).
#[allow(clippy::too_many_arguments)]
pub fn summarize_as(
    header: &str,
    setup: &dyn Setup,
    obs: &[Observable],
    derived: &[Derived],
    select: &dyn Fn(&str) -> bool,
    run: &RunConfig,
    recs: &[ChainRecord],
    timing: &str,
    c: Option<&Common>,
) -> CliResult<()> {
    let dof = setup.action().dof() as f64;
    let (mut out, edh) = summary_head(header, run, recs, timing);
    let refs = setup.references();
    let mut non_finite = Vec::new();
    // NaN dH (a trajectory that blew up, or a flow whose force is not finite) is rejected,
    // but <exp(-dH)> is then NaN: the run's check of the integrator has failed
    if !(edh.mean.is_finite() && edh.error.is_finite()) {
        non_finite.push("<exp(-dH)>".to_string());
    }
    let acc = recs.iter().map(|r| r.acceptance_rate()).sum::<f64>() / recs.len() as f64;
    let moving = (MIN_ACCEPTANCE..=MAX_ACCEPTANCE).contains(&acc);
    // (key, label, digits, estimate, column of a measured observable; None: derived)
    let mut rows: Vec<(&str, &str, usize, GammaEstimate, Option<usize>)> = Vec::new();
    for (k, o) in obs.iter().enumerate().filter(|(_, o)| o.shown && select(&o.key)) {
        rows.push((&o.key, &o.label, o.digits, gamma(recs, k, |v| v), Some(k)));
    }
    for d in derived.iter().filter(|d| select(&d.key)) {
        let cols = d.columns(obs);
        let replicas: Vec<Vec<&[f64]>> =
            recs.iter().map(|r| cols.iter().map(|&c| r.observables[c].as_slice()).collect()).collect();
        let g = gamma_method_derived_replicas(&replicas, &|m| (d.f)(m), S_TAU_DEFAULT);
        rows.push((&d.key, &d.label, d.digits, g, None));
    }
    for (key, label, digits, g, k) in rows {
        if !(g.mean.is_finite() && g.error.is_finite()) {
            if k.is_none() {
                // a derived quantity can be undefined at the measured means (an effective
                // mass where G(t-1) + G(t+1) < 2 G(t) within noise): said, not an error
                out += &format!("  {label:<28} undefined at these means (not finite or not smooth there)\n");
                continue;
            }
            non_finite.push(label.to_string());
        }
        out += &line(label, &g);
        for r in refs.iter().filter(|r| r.key == key && r.value.is_finite()) {
            let rd = r.digits.max(digits);
            let v = if r.error > 0.0 {
                format!("{:.rd$} +- {:.rd$}", r.value, r.error)
            } else {
                format!("{:.rd$}", r.value)
            };
            let pull = if !moving {
                "   (no deviation quoted: the chains barely move)".to_string()
            } else if !g.window_found {
                "   (no deviation quoted: tau_int undetermined, the error is a lower bound)".to_string()
            } else if r.error == 0.0 && g.error <= ROUNDING_ERROR * g.mean.abs().max(r.value.abs()).max(1.0) {
                // e.g. <Q^2> on a 2x2 lattice where no chain left Q = 0: an error at rounding
                // level would turn any offset into thousands of sigma
                "   (no deviation quoted: the chains never changed it; its error is rounding)".to_string()
            } else if g.error > 0.0 || r.error > 0.0 {
                format!("   ({:+.2} sigma)", r.pull(g.mean, g.error))
            } else {
                String::new()
            };
            out += &format!("  {:<28} {v}{pull}\n", format!("{label} ({})", r.label));
        }
        if let Some(k) = k.filter(|&k| obs[k].tunnelling.is_some()) {
            let rate = recs.iter().map(|r| tunnelling_rate(&r.observables[k])).sum::<f64>() / recs.len() as f64;
            out += &format!("  {:<28} {rate:.4} per trajectory (tau_int = {:.1})\n", "tunnelling rate", g.tau_int);
        }
    }
    let s_per_dof = gamma(recs, obs.len(), |v| v / dof);
    if !(s_per_dof.mean.is_finite() && s_per_dof.error.is_finite()) {
        non_finite.push("<S> / V".into());
    }
    out += &line("<S> / V", &s_per_dof);
    if !moving {
        out += &format!(
            "  warning: acceptance {acc:.4}: the chains barely move (change --tau or --steps); the errors above \
             mean little\n"
        );
    }
    let mut names: Vec<&str> = obs.iter().map(|o| o.key.as_str()).collect();
    names.push("S");
    match c {
        Some(c) => finish(out, c, &names, recs)?,
        None => print!("{out}"),
    }
    if non_finite.is_empty() {
        Ok(())
    } else {
        // the header's command (`latflow hmc ...`, `latflow fhmc ...`)
        let cmd = header.split_whitespace().nth(1).unwrap_or("hmc");
        Err(CliError(format!(
            "{cmd}: non-finite results for {} (the trajectories diverged: lower --tau or raise --steps)",
            non_finite.join(", ")
        )))
    }
}

/// Runs the chains with a progress line on stderr; returns the records (on rank 0; the
/// progress line counts rank 0's chains) and the wall time.
fn run_with_progress<A: Action + ?Sized>(
    action: &A,
    c: &Common,
    n_obs: usize,
    init: impl Fn(usize, &mut rand::rngs::StdRng) -> Vec<f64> + Sync,
    measure: impl Fn(&[f64], &mut [f64]) + Sync,
    shape: &[usize],
    comm: &dyn Comm,
) -> CliResult<(Option<Vec<ChainRecord>>, f64)> {
    // every chain buffers one chunk: 256 MiB in all at most
    let budget = (SAVE_BUFFER_BYTES / c.run.n_chains).max(1);
    let make = |chain: usize| -> Box<dyn ChainSink> {
        let t = c.save.as_ref().expect("sinks only when saving");
        Box::new(save::HmcSink(t.writer_within(chain, save::hmc_layout(shape), budget)))
    };
    let sinks: Option<&(dyn Fn(usize) -> Box<dyn ChainSink> + Sync)> = c.save.as_ref().map(|_| &make as _);
    let total = latflow_comm::share(c.run.n_chains, comm.size(), comm.rank()).len() * (c.run.n_therm + c.run.n_traj);
    let done = AtomicUsize::new(0);
    let finished = AtomicBool::new(false);
    let t0 = Instant::now();
    let recs = std::thread::scope(|s| {
        if !c.quiet {
            s.spawn(|| progress(&done, &finished, total, t0));
        }
        let r = run_chains_over(action, &c.run, n_obs, init, measure, Some(&done), sinks, comm);
        finished.store(true, Ordering::Relaxed);
        r
    });
    let recs = recs.map_err(|e| CliError(format!("hmc: {e}; the chunks written before it are complete")))?;
    let secs = t0.elapsed().as_secs_f64();
    if recs.iter().flatten().any(|r| r.delta_h.iter().any(|d| !d.is_finite())) {
        eprintln!("warning: some trajectories diverged (non-finite dH); lower --tau or raise --steps");
    }
    Ok((recs, secs))
}

/// Prints `hmc: done/total trajectories` on stderr every half second until `finished`.
pub(crate) fn progress(done: &AtomicUsize, finished: &AtomicBool, total: usize, t0: Instant) {
    let tty = std::io::stderr().is_terminal();
    let mut last = Instant::now();
    while !finished.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if last.elapsed() < Duration::from_millis(if tty { 500 } else { 5000 }) {
            continue;
        }
        last = Instant::now();
        let d = done.load(Ordering::Relaxed);
        let rate = d as f64 / t0.elapsed().as_secs_f64();
        let eta = (total - d.min(total)) as f64 / rate.max(1.0);
        let msg = format!(
            "hmc: {d}/{total} trajectories ({:.0}%), {rate:.0}/s, eta {eta:.0}s",
            100.0 * d as f64 / total as f64
        );
        if tty {
            eprint!("\r{msg}   ");
        } else {
            eprintln!("{msg}");
        }
    }
    if tty && t0.elapsed() > Duration::from_millis(500) {
        eprintln!();
    }
}

fn gamma(recs: &[ChainRecord], k: usize, f: impl Fn(f64) -> f64) -> GammaEstimate {
    let s: Vec<Vec<f64>> = recs.iter().map(|r| r.observables[k].iter().map(|&v| f(v)).collect()).collect();
    let refs: Vec<&[f64]> = s.iter().map(Vec::as_slice).collect();
    gamma_method_replicas(&refs, S_TAU_DEFAULT)
}

/// `value +- error` with two significant digits of the error (an error at the rounding
/// level of the value, e.g. a chain that never moved, prints as `+- 0` rather than with
/// twelve digits).
fn value_error(v: f64, e: f64) -> String {
    if e.is_finite() && e <= 1e-12 * v.abs().max(1.0) {
        return format!("{v:.6} +- 0");
    }
    if !(e.is_finite() && e > 0.0) {
        return format!("{v:.6} +- {e}");
    }
    let digits = (1 - e.log10().floor() as i32).clamp(0, 12) as usize;
    format!("{v:.digits$} +- {e:.digits$}")
}

fn line(name: &str, g: &GammaEstimate) -> String {
    let warn = if !g.window_found {
        "  (chain too short for tau_int: lower bound)"
    } else if g.error == 0.0 && g.variance != 0.0 {
        // a series that varies, whose summed autocorrelations came out <= 0 (short and
        // anticorrelated): the clipped error 0 is no error estimate
        "  (error undetermined: too few trajectories)"
    } else {
        ""
    };
    format!(
        "  {name:<28} {:<24} tau_int {:.2} +- {:.2}{warn}\n",
        value_error(g.mean, g.error),
        g.tau_int,
        g.tau_int_error
    )
}

/// The summary's first lines and the estimate of `<exp(-dH)>` they show.
fn summary_head(header: &str, r: &RunConfig, recs: &[ChainRecord], timing: &str) -> (String, GammaEstimate) {
    let acc = recs.iter().map(|x| x.acceptance_rate()).sum::<f64>() / recs.len() as f64;
    let s: Vec<Vec<f64>> = recs.iter().map(|x| x.delta_h.iter().map(|d| (-d).exp()).collect()).collect();
    let refs: Vec<&[f64]> = s.iter().map(Vec::as_slice).collect();
    let edh = gamma_method_replicas(&refs, S_TAU_DEFAULT);
    let head = format!(
        "{header}\n  {} chains x {} trajectories (+{} thermalization), {} {} steps{}, tau {}{}, seed {}\n  \
         {timing}\n  {:<28} {acc:.4}\n{}",
        r.n_chains,
        r.n_traj,
        r.n_therm,
        r.hmc.n_steps,
        r.hmc.integrator.name(),
        match r.hmc.integrator {
            Integrator::Leapfrog => "",
            Integrator::Omelyan => " (2 forces each)",
        },
        r.hmc.trajectory_length,
        if r.hmc.flip { ", global flips" } else { "" },
        r.seed,
        "acceptance",
        line("<exp(-dH)>", &edh),
    );
    (head, edh)
}

fn finish(mut out: String, c: &Common, names: &[&str], recs: &[ChainRecord]) -> CliResult<()> {
    if let Some(dir) = &c.out {
        let dir = super::make_dir(dir)?;
        let path = dir.join(OBSERVABLES_FILE);
        table(names, recs).write(&path).map_err(CliError)?;
        let rows: usize = recs.iter().map(|r| r.delta_h.len()).sum();
        out += &format!("  per-configuration observables: {} ({rows} rows)\n", path.display());
    }
    if let Some(t) = &c.save {
        let rows: usize = recs.iter().map(|r| r.delta_h.len()).sum();
        out += &format!(
            "  ensemble: {rows} configurations in {} with its manifest.csv (latflow measure {0})\n",
            t.dir.display()
        );
    }
    print!("{out}");
    Ok(())
}

/// One row per recorded trajectory: `chain,traj,accepted,dH,<observables>`.
fn table(names: &[&str], recs: &[ChainRecord]) -> Table {
    let mut header = vec!["chain", "traj", "accepted", "dH"];
    header.extend_from_slice(names);
    let mut t = Table::new(&header);
    for (c, r) in recs.iter().enumerate() {
        for k in 0..r.delta_h.len() {
            let mut row =
                vec![c.to_string(), k.to_string(), (r.accepted[k] as u8).to_string(), format!("{:e}", r.delta_h[k])];
            row.extend(r.observables.iter().map(|o| o[k].to_string()));
            t.row(&row);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn value_error_rounds_to_the_error() {
        assert_eq!(value_error(1.23456, 0.0123), "1.235 +- 0.012");
        assert_eq!(value_error(1.0, 1e-17), "1.000000 +- 0", "a chain that never moved");
        assert_eq!(value_error(1.0, 0.0), "1.000000 +- 0");
        assert_eq!(value_error(1.0, f64::NAN), "1.000000 +- NaN");
    }

    #[test]
    fn rejects_bad_input_with_clear_errors() {
        let theories = latflow_theory::builtin();
        let err = |v: &[&str]| run(&theories, &s(v), &latflow_comm::SingleProcess).unwrap_err().0;
        assert!(err(&["su3"]).contains("unknown theory \"su3\""));
        assert!(err(&[]).contains("which theory"));
        assert!(err(&["phi4", "--L", "-8"]).contains("--L must be positive"));
        assert!(err(&["phi4", "--beta", "2"]).contains("--beta is a u1 flag"));
        assert!(err(&["u1", "--lam", "2"]).contains("--lam is a phi4 flag"));
        assert!(err(&["u1", "--nd", "1"]).contains("--nd must be in 2..=4"));
        assert!(err(&["phi4", "--tau", "0"]).contains("--tau must be in (0, 100]"));
        assert!(err(&["phi4", "--n-therm", "-1"]).contains("--n-therm must be >= 0"));
        assert!(err(&["phi4", "--steps", "x"]).contains("cannot parse"));
        assert!(
            err(&["u1", "--integrator", "verlet"]).contains("--integrator must be leapfrog or omelyan, got 'verlet'")
        );
        assert!(err(&["phi4", "extra"]).contains("unexpected argument"));
        assert!(err(&["phi4", "--lam", "-1"]).contains("--lam must be >= 0"));
        assert!(err(&["phi4", "--no-csv", "--out", "x.csv"]).contains("contradict"));
        assert!(err(&["phi4", "--L", "100000"]).contains("too large"));
    }

    #[test]
    fn small_runs_succeed_and_write_csv() {
        let theories = latflow_theory::builtin();
        let dir = std::env::temp_dir().join(format!("latflow-hmc-test-{}", std::process::id()));
        let common = ["--L", "4", "--n-traj", "50", "--n-therm", "10", "--chains", "2", "--quiet"];
        let mut args = s(&["phi4", "--out", dir.to_str().unwrap()]);
        args.extend(s(&common));
        run(&theories, &args, &latflow_comm::SingleProcess).unwrap();
        let text = std::fs::read_to_string(dir.join(OBSERVABLES_FILE)).unwrap();
        assert_eq!(text.lines().next().unwrap(), "chain,traj,accepted,dH,chi2,M,absM,Mpos,M2,M4,G0,G1,G2,S");
        assert_eq!(text.lines().count(), 1 + 2 * 50);
        let mut args = s(&["u1", "--beta", "1.0", "--no-csv"]);
        args.extend(s(&common));
        run(&theories, &args, &latflow_comm::SingleProcess).unwrap();
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn formats_values_with_two_error_digits() {
        assert_eq!(value_error(0.75195, 0.0048), "0.7520 +- 0.0048");
        assert_eq!(value_error(1.2429, 0.0098), "1.2429 +- 0.0098");
        assert_eq!(value_error(123.4, 5.6), "123.4 +- 5.6");
    }
}
