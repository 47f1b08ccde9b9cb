//! `latflow hmc phi4|u1 [FLAGS]`: the HMC baseline. Runs independent seeded chains in
//! parallel, prints progress on stderr, a summary of every observable as
//! `value +- error` with its integrated autocorrelation time (Gamma method, Wolff 2004)
//! on stdout, and writes the per-configuration observables as CSV.

use super::{Args, CliError, CliResult};
use latflow::physics::observables::{magnetization, two_point_susceptibility};
use latflow::physics::u1::exact_q2_2d;
use latflow::physics::{Action, Lattice, Phi4, U1};
use latflow::sampler::hmc::{run_chains, ChainRecord, HmcConfig, RunConfig};
use latflow::sampler::stats::{gamma_method_replicas, tunnelling_rate, GammaEstimate, S_TAU_DEFAULT};
use rand::Rng;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Flags every theory accepts.
const COMMON: &[&str] = &["L", "nd", "n-traj", "n-therm", "chains", "steps", "tau", "seed", "out"];
const SWITCHES: &[&str] = &["quiet", "no-csv"];

/// Usage of `latflow hmc`, printed on `latflow hmc --help` and with errors.
pub const HMC_USAGE: &str = "\
usage: latflow hmc phi4 [--m2 -4 --lam 8] [COMMON]
       latflow hmc u1   [--beta 2]         [COMMON]
COMMON: --L 8 --nd 2 --n-traj 10000 (per chain) --n-therm 500 --chains 4 --steps 10 --tau 1.0
        --seed 0 --out hmc_<theory>.csv --no-csv --quiet";

struct Common {
    l: usize,
    nd: usize,
    run: RunConfig,
    out: Option<PathBuf>,
    quiet: bool,
}

/// Entry point of `latflow hmc`.
pub fn run(args: &[String]) -> CliResult<()> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{HMC_USAGE}");
        return Ok(());
    }
    let theory = args.first().map(String::as_str).filter(|t| !t.starts_with("--"));
    let extra: &[&str] = match theory {
        Some("phi4") => &["m2", "lam"],
        Some("u1") => &["beta"],
        Some(t) => return Err(CliError(format!("hmc: unknown theory {t:?} (expected phi4 or u1)\n{HMC_USAGE}"))),
        None => return Err(CliError(format!("hmc: which theory? (phi4 or u1)\n{HMC_USAGE}"))),
    };
    let valued: Vec<&str> = COMMON.iter().chain(extra).copied().collect();
    let a = Args::parse(&args[1..], &valued, SWITCHES).map_err(|e| {
        let hint = if e.0.contains("--beta") || e.0.contains("--m2") || e.0.contains("--lam") {
            " (--m2 and --lam are phi4 flags, --beta is a u1 flag)"
        } else {
            ""
        };
        CliError(format!("hmc: {e}{hint}"))
    })?;
    if let Some(p) = a.positional.first() {
        return Err(CliError(format!("hmc: unexpected argument {p:?}\n{HMC_USAGE}")));
    }
    let theory = theory.expect("checked above");
    let c = common(&a, theory)?;
    match theory {
        "phi4" => phi4(&a, c),
        _ => u1(&a, c),
    }
}

fn common(a: &Args, theory: &str) -> CliResult<Common> {
    let l = a.positive("L", 8)?;
    let nd = a.positive("nd", 2)?;
    let min_nd = if theory == "u1" { 2 } else { 1 };
    if nd < min_nd || nd > 4 {
        return Err(CliError(format!("hmc: --nd must be in {min_nd}..=4 for {theory}, got {nd}")));
    }
    if l.checked_pow(nd as u32).filter(|&v| v <= 1 << 24).is_none() {
        return Err(CliError(format!("hmc: lattice {l}^{nd} is too large")));
    }
    let tau = a.finite("tau", 1.0)?;
    if tau <= 0.0 {
        return Err(CliError(format!("hmc: --tau must be positive, got {tau}")));
    }
    let seed: u64 = a.get("seed", 0u64)?;
    let run = RunConfig {
        hmc: HmcConfig { trajectory_length: tau, n_steps: a.positive("steps", 10)? },
        n_chains: a.positive("chains", 4)?,
        n_therm: non_negative(a, "n-therm", 500)?,
        n_traj: a.positive("n-traj", 10_000)?,
        seed,
    };
    let out = if a.has("no-csv") {
        if a.opt::<String>("out")?.is_some() {
            return Err(CliError("hmc: --out and --no-csv contradict each other".into()));
        }
        None
    } else {
        Some(a.opt::<PathBuf>("out")?.unwrap_or_else(|| PathBuf::from(format!("hmc_{theory}.csv"))))
    };
    Ok(Common { l, nd, run, out, quiet: a.has("quiet") })
}

fn non_negative(a: &Args, name: &str, default: usize) -> CliResult<usize> {
    let v: i64 = a.get(name, default as i64)?;
    usize::try_from(v).map_err(|_| CliError(format!("hmc: --{name} must be >= 0, got {v}")))
}

fn phi4(a: &Args, c: Common) -> CliResult<()> {
    let (m2, lam) = (a.finite("m2", -4.0)?, a.finite("lam", 8.0)?);
    if lam < 0.0 {
        return Err(CliError(format!("hmc: --lam must be >= 0 (the action is unbounded below otherwise), got {lam}")));
    }
    let action = Phi4::new(Lattice::hypercubic(c.l, c.nd), m2, lam);
    let header = format!("latflow hmc phi4: L={} Nd={} M2={m2} lam={lam}", c.l, c.nd);
    let names = ["chi2", "M", "absM", "S"];
    let init = |_c: usize, r: &mut rand::rngs::StdRng| (0..action.dof()).map(|_| r.gen_range(-0.1..0.1)).collect();
    let measure = |x: &[f64], o: &mut [f64]| {
        let m = magnetization(x);
        o.copy_from_slice(&[two_point_susceptibility(x), m, m.abs(), action.action(x)]);
    };
    let (recs, secs) = sample(&action, &c, names.len(), init, measure)?;
    let mut out = summary_head(&header, &c, &recs, secs);
    out += &line("chi_2 = <(sum phi)^2 / V>", &gamma(&recs, 0, |v| v));
    out += &line("M = <(1/V) sum phi>", &gamma(&recs, 1, |v| v));
    out += &line("<|M|>", &gamma(&recs, 2, |v| v));
    out += &line("<S> / V", &gamma(&recs, 3, |v| v / action.dof() as f64));
    finish(out, &c, &names, &recs)
}

fn u1(a: &Args, c: Common) -> CliResult<()> {
    let beta = a.finite("beta", 2.0)?;
    let action = U1::new(Lattice::hypercubic(c.l, c.nd), beta);
    let header = format!("latflow hmc u1: L={} Nd={} beta={beta}", c.l, c.nd);
    let names = ["Q", "Q2", "plaq", "S"];
    let init = |_c: usize, r: &mut rand::rngs::StdRng| {
        (0..action.dof()).map(|_| r.gen_range(0.0..std::f64::consts::TAU)).collect()
    };
    let measure = |x: &[f64], o: &mut [f64]| {
        let q = action.topological_charge(x);
        o.copy_from_slice(&[q, q * q, action.average_plaquette(x), action.action(x)]);
    };
    let (recs, secs) = sample(&action, &c, names.len(), init, measure)?;
    let mut out = summary_head(&header, &c, &recs, secs);
    let q = gamma(&recs, 0, |v| v);
    out += &line("Q", &q);
    out += &line("<Q^2>", &gamma(&recs, 1, |v| v));
    if c.nd == 2 {
        out += &format!("  {:<28} {:.4}  (2D exact, finite volume)\n", "<Q^2> exact", exact_q2_2d(beta, c.l * c.l));
    }
    out += &line("<plaquette>", &gamma(&recs, 2, |v| v));
    let rate = recs.iter().map(|r| tunnelling_rate(&r.observables[0])).sum::<f64>() / recs.len() as f64;
    out += &format!("  {:<28} {rate:.4} per trajectory (tau_int(Q) = {:.1})\n", "tunnelling rate", q.tau_int);
    finish(out, &c, &names, &recs)
}

/// Runs the chains with a progress line on stderr; returns the records and the wall time.
fn sample<A: Action>(
    action: &A,
    c: &Common,
    n_obs: usize,
    init: impl Fn(usize, &mut rand::rngs::StdRng) -> Vec<f64> + Sync,
    measure: impl Fn(&[f64], &mut [f64]) + Sync,
) -> CliResult<(Vec<ChainRecord>, f64)> {
    let total = c.run.n_chains * (c.run.n_therm + c.run.n_traj);
    let done = AtomicUsize::new(0);
    let finished = AtomicBool::new(false);
    let t0 = Instant::now();
    let recs = std::thread::scope(|s| {
        if !c.quiet {
            s.spawn(|| progress(&done, &finished, total, t0));
        }
        let r = run_chains(action, &c.run, n_obs, init, measure, Some(&done));
        finished.store(true, Ordering::Relaxed);
        r
    });
    let secs = t0.elapsed().as_secs_f64();
    if recs.iter().any(|r| r.delta_h.iter().any(|d| !d.is_finite())) {
        eprintln!("warning: some trajectories diverged (non-finite dH); lower --tau or raise --steps");
    }
    Ok((recs, secs))
}

/// Prints `hmc: done/total trajectories` on stderr every half second until `finished`.
fn progress(done: &AtomicUsize, finished: &AtomicBool, total: usize, t0: Instant) {
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

/// `value +- error` with two significant digits of the error.
fn value_error(v: f64, e: f64) -> String {
    if !(e.is_finite() && e > 0.0) {
        return format!("{v:.6} +- {e}");
    }
    let digits = (1 - e.log10().floor() as i32).clamp(0, 12) as usize;
    format!("{v:.digits$} +- {e:.digits$}")
}

fn line(name: &str, g: &GammaEstimate) -> String {
    let warn = if g.window_found { "" } else { "  (chain too short for tau_int: lower bound)" };
    format!(
        "  {name:<28} {:<24} tau_int {:.2} +- {:.2}{warn}\n",
        value_error(g.mean, g.error),
        g.tau_int,
        g.tau_int_error
    )
}

fn summary_head(header: &str, c: &Common, recs: &[ChainRecord], secs: f64) -> String {
    let r = &c.run;
    let n = r.n_chains * (r.n_therm + r.n_traj);
    let acc = recs.iter().map(|x| x.acceptance_rate()).sum::<f64>() / recs.len() as f64;
    let s: Vec<Vec<f64>> = recs.iter().map(|x| x.delta_h.iter().map(|d| (-d).exp()).collect()).collect();
    let refs: Vec<&[f64]> = s.iter().map(Vec::as_slice).collect();
    let edh = gamma_method_replicas(&refs, S_TAU_DEFAULT);
    format!(
        "{header}\n  {} chains x {} trajectories (+{} thermalization), {} leapfrog steps, tau {}, seed {}\n  \
         {n} trajectories in {secs:.2} s ({:.0}/s on {} threads)\n  {:<28} {acc:.4}\n{}",
        r.n_chains,
        r.n_traj,
        r.n_therm,
        r.hmc.n_steps,
        r.hmc.trajectory_length,
        r.seed,
        n as f64 / secs,
        rayon::current_num_threads(),
        "acceptance",
        line("<exp(-dH)>", &edh),
    )
}

fn finish(mut out: String, c: &Common, names: &[&str], recs: &[ChainRecord]) -> CliResult<()> {
    if let Some(path) = &c.out {
        write_csv(path, names, recs).map_err(|e| CliError(format!("{}: {e}", path.display())))?;
        let rows: usize = recs.iter().map(|r| r.delta_h.len()).sum();
        out += &format!("  per-configuration observables: {} ({rows} rows)\n", path.display());
    }
    print!("{out}");
    Ok(())
}

/// CSV with one row per recorded trajectory: `chain,traj,accepted,dH,<observables>`.
fn write_csv(path: &PathBuf, names: &[&str], recs: &[ChainRecord]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(w, "chain,traj,accepted,dH,{}", names.join(","))?;
    for (c, r) in recs.iter().enumerate() {
        for t in 0..r.delta_h.len() {
            write!(w, "{c},{t},{},{:e}", r.accepted[t] as u8, r.delta_h[t])?;
            for o in &r.observables {
                write!(w, ",{}", o[t])?;
            }
            writeln!(w)?;
        }
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn rejects_bad_input_with_clear_errors() {
        let err = |v: &[&str]| run(&s(v)).unwrap_err().0;
        assert!(err(&["su3"]).contains("unknown theory \"su3\""));
        assert!(err(&[]).contains("which theory"));
        assert!(err(&["phi4", "--L", "-8"]).contains("--L must be positive"));
        assert!(err(&["phi4", "--beta", "2"]).contains("--beta is a u1 flag"));
        assert!(err(&["u1", "--lam", "2"]).contains("phi4 flags"));
        assert!(err(&["u1", "--nd", "1"]).contains("--nd must be in 2..=4"));
        assert!(err(&["phi4", "--tau", "0"]).contains("--tau must be positive"));
        assert!(err(&["phi4", "--n-therm", "-1"]).contains("--n-therm must be >= 0"));
        assert!(err(&["phi4", "--steps", "x"]).contains("cannot parse"));
        assert!(err(&["phi4", "extra"]).contains("unexpected argument"));
        assert!(err(&["phi4", "--lam", "-1"]).contains("--lam must be >= 0"));
        assert!(err(&["phi4", "--no-csv", "--out", "x.csv"]).contains("contradict"));
        assert!(err(&["phi4", "--L", "100000"]).contains("too large"));
    }

    #[test]
    fn small_runs_succeed_and_write_csv() {
        let dir = std::env::temp_dir().join(format!("latflow-hmc-test-{}", std::process::id()));
        let csv = dir.join("phi4.csv");
        let common = ["--L", "4", "--n-traj", "50", "--n-therm", "10", "--chains", "2", "--quiet"];
        let mut args = s(&["phi4", "--out", csv.to_str().unwrap()]);
        args.extend(s(&common));
        run(&args).unwrap();
        let text = std::fs::read_to_string(&csv).unwrap();
        assert_eq!(text.lines().next().unwrap(), "chain,traj,accepted,dH,chi2,M,absM,S");
        assert_eq!(text.lines().count(), 1 + 2 * 50);
        let mut args = s(&["u1", "--beta", "1.0", "--no-csv"]);
        args.extend(s(&common));
        run(&args).unwrap();
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn formats_values_with_two_error_digits() {
        assert_eq!(value_error(0.75195, 0.0048), "0.7520 +- 0.0048");
        assert_eq!(value_error(1.2429, 0.0098), "1.2429 +- 0.0098");
        assert_eq!(value_error(123.4, 5.6), "123.4 +- 5.6");
    }
}
