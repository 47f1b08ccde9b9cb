//! The evaluation of a flow for every theory (`train` after training, `sample`): draw the
//! ensemble with the sampler crate, measure the theory's observables along the Metropolis
//! chain (Gamma method, U. Wolff hep-lat/0306017) and by reweighting, compare with the
//! theory's reference values at the run's couplings (or latflow's HMC run on demand), and
//! write the summary and the plots.

use super::{save, CliError, CliResult};
use crate::flow::model::Flow;
use crate::flow::z2::Z2Mixture;
use crate::io::csv::Table;
use crate::io::plot;
use crate::sampler::ensemble::{ChainCounts, IndependenceSampler, ProposalBatch, ProposalSource};
use crate::sampler::hmc::{run_chains, HmcChain, HmcConfig, RunConfig};
use crate::sampler::reweight::{reweight_derived_replay, reweight_replay, Reweighted};
use crate::sampler::spool::Spool;
use crate::sampler::stats::{
    gamma_method, gamma_method_derived_replicas, gamma_method_derived_tail_replay, gamma_method_replicas,
    gamma_method_tail_replay, tunnelling_rate, Estimate, GammaEstimate, N_SIGMA_DEFAULT, S_TAU_DEFAULT,
};
use crate::sampler::tails::weight_tail_replay;
use crate::theory::{Derived, Observable, Reference, Setup, Theory};
use latflow_comm::Comm;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::PathBuf;
use std::time::Instant;

/// Width of the name column of the printed summary.
const COL: usize = 25;

/// `name` padded to the name column, with at least one space after it.
fn col(name: &str) -> String {
    if name.len() < COL {
        format!("{name:<COL$}")
    } else {
        format!("{name} ")
    }
}

/// Recorded trajectories per chain of the on-demand HMC reference (4 chains, after 500
/// thermalization trajectories each).
pub const HMC_REFERENCE_TRAJECTORIES: usize = 20_000;

/// Largest configuration (degrees of freedom) for which the on-demand HMC references and the
/// histograms' HMC chains run: their 4 x 20500 trajectories of 10 leapfrog steps (and one
/// chain as long for a histogram) take ~15 s each at 64x64 on 2 cores and grow with the
/// volume (`sample --L 256` of an 8x8 flow sat ~10 minutes in them, at 512 ~40), while the
/// fixed step's acceptance is already 0.04 at 64x64.
pub const HMC_REFERENCE_MAX_DOF: usize = 64 * 64;

/// Settings of an evaluation ensemble.
pub struct EnsembleArgs {
    /// Proposals.
    pub n: usize,
    /// Sampling batch.
    pub batch: usize,
    /// Thermalization steps dropped from the chain.
    pub therm: usize,
    /// Seed (the sampler's RNG is seeded by `seed ^ 0x5eed`).
    pub seed: u64,
    /// Where the summary and plots go.
    pub dir: PathBuf,
    /// Where the ensemble is saved (`--save`), with its metadata.
    pub save: Option<save::Target>,
}

/// Configurations an evaluation keeps in memory (for the sample plot); the rest streams
/// through the measurements (and to disk with `--save`).
pub const KEPT_CONFIGS: usize = 16;
/// Proposals shown in `action.svg`.
const ACTION_PLOT_POINTS: usize = 1024;
/// Longest HMC chain run next to a flow chain for the tunnelling comparison.
pub const HMC_COMPARISON_MAX: usize = 100_000;

/// Columns of a [`FlowRun`]'s rows before the observables.
const ACTION: usize = 0;
const LOGQ: usize = 1;
const STATE: usize = 2;
const OBS: usize = 3;

/// A flow ensemble as the report reads it, in constant memory: per proposal a row
/// `[S, log q, chain state, observables...]` in a [`Spool`] (memory, or a scratch file for
/// large ensembles), the chain's counts and the first configurations for the sample plot.
pub struct FlowRun {
    rows: Spool,
    /// The row being recorded (reused: no allocation per proposal).
    row: Vec<f64>,
    /// Acceptance counts of the chain.
    pub counts: ChainCounts,
    first: Vec<Vec<f64>>,
}

impl FlowRun {
    /// An empty run measuring `n_obs` observables.
    pub fn new(n_obs: usize) -> Self {
        FlowRun { rows: Spool::new(OBS + n_obs), row: Vec::new(), counts: ChainCounts::default(), first: Vec::new() }
    }

    /// Records proposal `i` (in order): its configuration, action, log q, the chain's state
    /// after it, and its observables.
    pub fn record(&mut self, config: &[f64], action: f64, logq: f64, state: usize, obs: &[f64]) -> Result<(), String> {
        if self.first.len() < KEPT_CONFIGS {
            self.first.push(config.to_vec());
        }
        self.row.clear();
        self.row.extend_from_slice(&[action, logq, state as f64]);
        self.row.extend_from_slice(obs);
        self.rows.push(&self.row)
    }

    /// Proposals recorded.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether none was recorded.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Visits every row in order.
    fn scan(&mut self, visit: &mut dyn FnMut(usize, &[f64])) -> CliResult<()> {
        self.rows.scan(visit).map_err(CliError)
    }

    /// Observable `k` along the Markov chain after `therm` steps, for the Gamma method.
    fn chain_replay(&mut self, k: usize, therm: usize, f: &mut dyn FnMut(f64)) -> Result<(), String> {
        self.chain_rows(&[k], therm, &mut |row| f(row[0]))
    }

    /// Rows of observables `cols` along the Markov chain after `therm` steps.
    fn chain_rows(&mut self, cols: &[usize], therm: usize, f: &mut dyn FnMut(&[f64])) -> Result<(), String> {
        let mut current = vec![f64::NAN; cols.len()];
        self.rows.scan(&mut |i, row| {
            if row[STATE] as usize == i {
                current.iter_mut().zip(cols).for_each(|(c, &k)| *c = row[OBS + k]);
            }
            if i >= therm {
                f(&current);
            }
        })
    }

    /// Reweighting of observable `k` over all proposals.
    fn reweight(&mut self, k: usize) -> CliResult<Reweighted> {
        reweight_replay(&mut |f| self.rows.scan(&mut |_, row| f(-row[ACTION] - row[LOGQ], row[OBS + k])))
            .map_err(CliError)
    }

    /// Reweighting of a derived quantity of observables `cols`.
    fn reweight_derived(&mut self, cols: &[usize], f: &dyn Fn(&[f64]) -> f64) -> CliResult<Reweighted> {
        let mut buf = vec![0.0; cols.len()];
        reweight_derived_replay(
            cols.len(),
            &mut |g| {
                self.rows.scan(&mut |_, row| {
                    buf.iter_mut().zip(cols).for_each(|(b, &k)| *b = row[OBS + k]);
                    g(-row[ACTION] - row[LOGQ], &buf)
                })
            },
            f,
        )
        .map_err(CliError)
    }

    /// Acceptance of the chain.
    fn acceptance(&self) -> f64 {
        if self.counts.proposed == 0 {
            0.0
        } else {
            self.counts.accepted as f64 / self.counts.proposed as f64
        }
    }
}

/// Draws the ensemble (saving it with `--save`), prints the summary, writes `summary.csv`
/// and the plots. On several ranks every rank draws proposals
/// ([`IndependenceSampler::sample_over`]: the same ensemble as one process); rank 0 runs the
/// chain, saves, measures and reports, the others return when the proposals are drawn.
pub fn evaluate(
    theory: &dyn Theory,
    setup: &dyn Setup,
    flow: &Flow<f32>,
    s: &EnsembleArgs,
    train_s: Option<f64>,
    comm: &dyn Comm,
) -> CliResult<()> {
    if s.therm + 2 > s.n {
        return Err(CliError(format!(
            "--therm {} must leave at least 2 chain steps of the {} proposals (--n)",
            s.therm, s.n
        )));
    }
    let t0 = Instant::now();
    let action = |c: &[f64]| setup.action().action(c);
    let obs = setup.observables();
    let mut run = FlowRun::new(obs.len());
    let layout = save::flow_layout(flow.prior.shape());
    let mut writer = s.save.as_ref().map(|t| t.writer(0, layout));
    let mut values = vec![0.0; obs.len()];
    let mut sink = |b: &ProposalBatch| {
        for i in 0..b.len() {
            let c = b.config(i);
            for (o, v) in obs.iter().zip(values.iter_mut()) {
                *v = (o.f)(c);
            }
            run.record(c, b.action[i], b.logq[i], b.chain[i], &values)?;
            if let Some(w) = writer.as_mut() {
                w.push(c, &[b.action[i], b.logq[i]], &[b.chain[i] as i64])?;
            }
        }
        Ok(())
    };
    // with --mixture z2 the proposals come from (q(x) + q(-x)) / 2: x = +-f(z), fair sign
    let mixture = Z2Mixture::new(flow);
    let source: &dyn ProposalSource = if setup.mixture() { &mixture } else { flow };
    // proposals drawn on every rank, the chain and everything below on rank 0
    let counts = IndependenceSampler::new(source, &action, s.batch)
        .sample_over(s.n, s.seed ^ 0x5eed, comm, &mut sink)
        .map_err(|e| CliError(format!("{e}; the chunks written before it are complete")))?;
    let Some(counts) = counts else { return Ok(()) };
    run.counts = counts;
    let saved = match (writer, &s.save) {
        (Some(w), Some(t)) => {
            let count = w.finish().map_err(CliError)?;
            t.seal()?;
            Some((count, t.dir.clone()))
        }
        _ => None,
    };
    let sample_s = t0.elapsed().as_secs_f64();
    let head = Heading { n: s.n, batch: s.batch, therm: s.therm, seed: s.seed };
    let mut times = vec![("sampling time", sample_s)];
    if let Some(t) = train_s {
        times.insert(0, ("training time", t));
    }
    report(theory, setup, &mut run, &obs, &setup.derived(), &|_| true, &head, &times, Some(&s.dir))?;
    if let Some((count, dir)) = saved {
        println!("ensemble: {count} configurations in {} with its manifest.csv (latflow measure {0})", dir.display());
    }
    Ok(())
}

/// What the first line of a flow ensemble's summary says and its thermalization.
pub struct Heading {
    /// Proposals.
    pub n: usize,
    /// Sampling batch.
    pub batch: usize,
    /// Thermalization steps dropped from the chain.
    pub therm: usize,
    /// The sampling seed (also seeds the on-demand HMC references).
    pub seed: u64,
}

/// The summary of a flow ensemble (`train`, `sample`, `measure`): acceptance, ESS, weight
/// tail, each of `obs` (column `k` of the run's observables) along the chain and
/// reweighted, against the references; with `dir`, also `summary.csv` and the plots.
#[allow(clippy::too_many_arguments)]
pub fn report(
    theory: &dyn Theory,
    setup: &dyn Setup,
    run: &mut FlowRun,
    obs: &[Observable],
    derived: &[Derived],
    select: &dyn Fn(&str) -> bool,
    h: &Heading,
    times: &[(&str, f64)],
    dir: Option<&std::path::Path>,
) -> CliResult<()> {
    let mut refs = setup.references();
    let ess = if obs.is_empty() { f64::NAN } else { run.reweight(0)?.ess };

    println!(
        "== {} flow ensemble: {} proposals (batch {}), {}, seed {}",
        theory.title(),
        h.n,
        h.batch,
        setup.describe(),
        h.seed
    );
    for (label, t) in times {
        println!("{label:<COL$}{t:.1} s");
    }
    let acceptance = run.acceptance();
    println!("{:<COL$}{acceptance:.3}", "Metropolis acceptance");
    println!("{:<COL$}{ess:.3}", "ESS / N");
    let (mut bad, mut moves, mut s_lo, mut s_hi) = (0usize, 0usize, f64::INFINITY, f64::NEG_INFINITY);
    run.scan(&mut |i, row| {
        bad += (!row[ACTION].is_finite() || !row[LOGQ].is_finite()) as usize;
        moves += (i > h.therm && row[STATE] as usize == i) as usize;
        s_lo = s_lo.min(row[ACTION]);
        s_hi = s_hi.max(row[ACTION]);
    })?;
    let tail =
        weight_tail_replay(&mut |f| run.rows.scan(&mut |_, row| f(-row[ACTION] - row[LOGQ]))).map_err(CliError)?;
    let k_hat = tail.k_hat;
    if let Some(k) = k_hat {
        println!("{:<COL$}{k:.2}   ({}; Vehtari et al. arXiv:1507.02646)", "Pareto k-hat of weights", tail.verdict());
    }
    println!(
        "{:<COL$}{:.1}   (the chain holds it ~{:.0} steps: errors include that tail, Schaefer et al. \
         arXiv:1009.5228)",
        "largest weight / mean", tail.max_weight, tail.tau_exp
    );
    // a chain that sat on one proposal after thermalization tells nothing about its error
    let stuck = moves == 0;
    // latflow's HMC with flips at these couplings, run once if a reference or a histogram
    // needs it
    let mut reference: Option<ReferenceChains> = None;
    let known = |key: &str| refs.iter().any(|r| r.key == key);
    let missing_obs = obs.iter().any(|o| o.shown && o.compare && !known(&o.key));
    let missing_derived = derived.iter().any(|d| d.compare && !known(&d.key));
    let dof = setup.action().dof();
    let affordable = dof <= HMC_REFERENCE_MAX_DOF;
    if (missing_obs || missing_derived) && affordable {
        let chains = reference.get_or_insert_with(|| ReferenceChains::run(setup, h.seed));
        let extra = hmc_references(chains, obs, &refs, derived);
        refs.extend(extra);
    } else if missing_obs || missing_derived {
        println!(
            "{}not run at {} ({dof} degrees of freedom, above {HMC_REFERENCE_MAX_DOF}: minutes of HMC with a \
             step that barely moves there); `latflow hmc {} ...` with more --steps gives them",
            col("HMC references"),
            setup.describe(),
            theory.name()
        );
    }
    let mut table = Table::new(&["quantity", "value", "error"]);
    table.row(&["acceptance", &acceptance.to_string(), ""]);
    table.row(&["ess", &ess.to_string(), ""]);
    table.row(&["pareto_k", &k_hat.map_or_else(String::new, |k| k.to_string()), ""]);
    let tau_exp = tail.tau_exp;
    for (k, o) in obs.iter().enumerate().filter(|(_, o)| o.shown && select(&o.key)) {
        let g = gamma_method_tail_replay(&mut |f| run.chain_replay(k, h.therm, f), tau_exp, N_SIGMA_DEFAULT)
            .map_err(CliError)?;
        let rw = run.reweight(k)?;
        print_estimate(&o.key, &o.label, o.digits, &g, rw.estimate, h.therm, stuck, &refs, &mut table);
    }
    for d in derived {
        let cols = d.columns(obs);
        let f = |m: &[f64]| (d.f)(m);
        let mut rows = |g: &mut dyn FnMut(&[f64])| run.chain_rows(&cols, h.therm, g);
        let g =
            gamma_method_derived_tail_replay(cols.len(), &mut rows, &f, tau_exp, N_SIGMA_DEFAULT).map_err(CliError)?;
        let rw = run.reweight_derived(&cols, &f)?;
        print_estimate(&d.key, &d.label, d.digits, &g, rw.estimate, h.therm, stuck, &refs, &mut table);
    }
    if stuck {
        println!(
            "warning: after thermalization the chain accepted none of its proposals ({} of {} in all): its \
             estimates are one configuration, not an ensemble, and their errors mean nothing",
            run.counts.accepted, run.counts.proposed
        );
    }
    let mut files = vec!["summary.csv", "action.svg", "samples.svg"];
    for (k, o) in obs.iter().enumerate().filter(|(_, o)| select(&o.key)) {
        if let Some(stem) = o.tunnelling {
            charge_history(setup, obs, o, k, run, h, stem, dir)?;
            files.push(stem);
        }
        if let (Some(stem), Some(dir), true) = (o.histogram, dir, affordable) {
            let chains = reference.get_or_insert_with(|| ReferenceChains::run(setup, h.seed));
            histogram_plot(setup, o, k, chains, run, h, &dir.join(format!("{stem}.svg")))?;
            files.push(stem);
        }
    }
    if let Some(dir) = dir {
        table.write(&dir.join("summary.csv")).map_err(CliError)?;
        write_action_plot(run, dir)?;
        let fields: Vec<Vec<f64>> = run.first.iter().map(|c| setup.sample_image(c).0).collect();
        let (_, rows, cols) = setup.sample_image(&run.first[0]);
        let svg = plot::heatmap_grid(&setup.sample_title(), &fields, rows, cols, 4, 4);
        plot::write_svg(&dir.join("samples.svg"), &svg)?;
        let names: Vec<String> =
            files.iter().map(|f| if f.contains('.') { f.to_string() } else { format!("{f}.svg") }).collect();
        println!("wrote {}/{{{}}}", dir.display(), names.join(", "));
    }
    // a flow that outputs NaN or infinities (diverged training, corrupt weights) gives no
    // ensemble: say so with an error, not exit 0
    if s_lo == s_hi && run.len() > 1 {
        return Err(CliError(format!(
            "all {} proposals have the same action {s_lo}: the flow proposes a single configuration \
             (degenerate); the estimates above are not an ensemble",
            run.len()
        )));
    }
    if bad > 0 {
        return Err(CliError(format!(
            "{bad} proposals have a non-finite action or log q: the flow is broken (diverged training?); \
             the estimates above are not valid"
        )));
    }
    Ok(())
}

/// The Metropolis estimate `g`, the reweighted one `rw`, the references and the deviations
/// of one observable or derived quantity; their rows of `summary.csv`.
#[allow(clippy::too_many_arguments)]
fn print_estimate(
    key: &str,
    label: &str,
    d: usize,
    g: &GammaEstimate,
    rw: Estimate,
    therm: usize,
    stuck: bool,
    refs: &[Reference],
    t: &mut Table,
) {
    if ![g.mean, g.error, rw.value, rw.error].iter().all(|v| v.is_finite()) {
        // a derived quantity undefined or not smooth at these means (an effective mass where
        // G(t-1) + G(t+1) < 2 G(t) within noise); a primary observable of finite proposals
        // cannot get here
        println!("{}undefined at these means (not finite or not smooth there)", col(label));
        t.row(&[format!("{key}_metropolis"), "NaN".into(), "NaN".into()]);
        return;
    }
    // a series that varies, whose summed autocorrelations came out <= 0 (a few steps,
    // anticorrelated): the error clipped to 0 is no error estimate
    let undetermined = g.error == 0.0 && g.variance != 0.0;
    println!(
        "{}{:.d$} +- {:.d$}   (tau_int {:.2} +- {:.2}, {} steps after {therm} thermalization){}",
        col(&format!("{label} (Metropolis)")),
        g.mean,
        g.error,
        g.tau_int,
        g.tau_int_error,
        g.n,
        if undetermined { "  (error undetermined: too few steps)" } else { "" }
    );
    t.row(&[format!("{key}_metropolis"), g.mean.to_string(), g.error.to_string()]);
    t.row(&[format!("{key}_tau_int"), g.tau_int.to_string(), g.tau_int_error.to_string()]);
    println!("{}{:.d$} +- {:.d$}", col(&format!("{label} (reweighting)")), rw.value, rw.error);
    t.row(&[format!("{key}_reweighted"), rw.value.to_string(), rw.error.to_string()]);
    let mine: Vec<&Reference> = refs.iter().filter(|r| r.key == key && r.value.is_finite()).collect();
    for r in &mine {
        let rd = r.digits;
        let value =
            if r.error > 0.0 { format!("{:.rd$} +- {:.rd$}", r.value, r.error) } else { format!("{:.rd$}", r.value) };
        let note = if r.note.is_empty() { String::new() } else { format!("   ({})", r.note) };
        println!("{}{value}{note}", col(&format!("{label} ({})", r.label)));
        let slug: String = r.label.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        t.row(&[format!("{key}_ref_{slug}"), r.value.to_string(), r.error.to_string()]);
    }
    if let Some(r) = mine.iter().find(|r| g.error == 0.0 && !undetermined && r.error == 0.0 && r.value != g.mean) {
        // every configuration of the chain gives the same value and it is not the exact one:
        // no pull can be computed, but the sampler plainly misses part of the distribution
        println!(
            "{}every configuration gives {:.d$}, exact {:.d$}: the sampler misses part of the distribution",
            col(&format!("deviation of {label}")),
            g.mean,
            r.value
        );
    }
    if !mine.is_empty() && g.error > 0.0 {
        let why = if stuck {
            "the chain never moved after thermalization"
        } else if !g.window_found {
            "tau_int undetermined, the chain is too short: the error is a lower bound"
        } else {
            ""
        };
        let pulls: Vec<String> =
            mine.iter().map(|r| format!("{:+.2} sigma ({})", r.pull(g.mean, g.error), r.label)).collect();
        let text = if why.is_empty() { pulls.join(", ") } else { format!("not quoted ({why})") };
        println!("{}{text}", col(&format!("deviation of {label}")));
    }
}

/// latflow's HMC at the setup's couplings: 4 chains of [`HMC_REFERENCE_TRAJECTORIES`] with
/// the global flip (ergodic in a broken phase), measuring every observable of the setup.
struct ReferenceChains {
    recs: Vec<crate::sampler::hmc::ChainRecord>,
    config: RunConfig,
    secs: f64,
}

impl ReferenceChains {
    fn run(setup: &dyn Setup, seed: u64) -> Self {
        let obs = setup.observables();
        let hmc = HmcConfig { flip: true, ..HmcConfig::default() };
        let config = RunConfig { hmc, n_chains: 4, n_therm: 500, n_traj: HMC_REFERENCE_TRAJECTORIES, seed };
        let t0 = Instant::now();
        let recs = run_chains(
            setup.action(),
            &config,
            obs.len(),
            |_, r| setup.hmc_start(r),
            |x, out| {
                for (o, v) in obs.iter().zip(out.iter_mut()) {
                    *v = (o.f)(x);
                }
            },
            None,
        );
        ReferenceChains { recs, config, secs: t0.elapsed().as_secs_f64() }
    }
}

/// The references from `chains` for the shown observables (`obs`, the chains' columns) and
/// derived quantities that `known` has no value for.
fn hmc_references(
    chains: &ReferenceChains,
    obs: &[Observable],
    known: &[Reference],
    derived: &[Derived],
) -> Vec<Reference> {
    let (recs, config, secs) = (&chains.recs, &chains.config, chains.secs);
    let acc = recs.iter().map(|r| r.acceptance_rate()).sum::<f64>() / recs.len() as f64;
    let n = config.n_chains * config.n_traj;
    let note = |tau: f64| format!("{n} trajectories run now, {secs:.1} s, acceptance {acc:.2}, tau_int {tau:.1}");
    let has = |key: &str| known.iter().any(|r| r.key == key);
    let mut out = Vec::new();
    for (k, o) in obs.iter().enumerate().filter(|(_, o)| o.shown && o.compare && !has(&o.key)) {
        let series: Vec<&[f64]> = recs.iter().map(|r| r.observables[k].as_slice()).collect();
        let g = gamma_method_replicas(&series, S_TAU_DEFAULT);
        out.push(Reference::measured(o.key.clone(), "HMC, latflow", g.mean, g.error, o.digits, &note(g.tau_int)));
    }
    for d in derived.iter().filter(|d| d.compare && !has(&d.key)) {
        let cols = d.columns(obs);
        let replicas: Vec<Vec<&[f64]>> =
            recs.iter().map(|r| cols.iter().map(|&c| r.observables[c].as_slice()).collect()).collect();
        let g = gamma_method_derived_replicas(&replicas, &|m| (d.f)(m), S_TAU_DEFAULT);
        out.push(Reference::measured(d.key.clone(), "HMC, latflow", g.mean, g.error, d.digits, &note(g.tau_int)));
    }
    out
}

/// The tunnelling rate of a charge along the flow chain next to a plain HMC chain of the
/// same length (at most [`HMC_COMPARISON_MAX`]) at the same couplings (default
/// trajectories), and their histories in `{stem}.svg` (arXiv:2101.08176 Fig. 7).
#[allow(clippy::too_many_arguments)]
fn charge_history(
    setup: &dyn Setup,
    obs: &[Observable],
    charge: &Observable,
    k: usize,
    run: &mut FlowRun,
    s: &Heading,
    stem: &str,
    dir: Option<&std::path::Path>,
) -> CliResult<()> {
    // the flow chain's charge: its tunnelling rate and the first steps for the plot
    let show_max = 1000;
    let (mut flow_q, mut changes, mut steps, mut last) = (Vec::new(), 0usize, 0usize, f64::NAN);
    run.chain_replay(k, s.therm, &mut |q| {
        if flow_q.len() < show_max {
            flow_q.push(q);
        }
        if steps > 0 && last.round() != q.round() {
            changes += 1;
        }
        last = q;
        steps += 1;
    })
    .map_err(CliError)?;
    let flow_rate = if steps < 2 { 0.0 } else { changes as f64 / (steps - 1) as f64 };
    let t1 = Instant::now();
    let mut rng = StdRng::seed_from_u64(s.seed ^ 0x4a3c);
    let x0 = setup.hmc_start(&mut rng);
    let mut chain = HmcChain::new(setup.action(), x0);
    let cfg = HmcConfig::default();
    let mut hmc_q = Vec::new();
    let mut primary = Vec::new();
    for t in 0..steps.min(HMC_COMPARISON_MAX) + s.therm {
        chain.trajectory(setup.action(), &cfg, &mut rng);
        if t >= s.therm {
            hmc_q.push((charge.f)(chain.config()));
            primary.push((obs[0].f)(chain.config()));
        }
    }
    let hmc_s = t1.elapsed().as_secs_f64();
    let g: GammaEstimate = gamma_method(&primary, S_TAU_DEFAULT);
    let d = obs[0].digits;
    println!(
        "{:<COL$}flow {:.3}, HMC {:.3} per step   (HMC {} = {:.d$} +- {:.d$}, {hmc_s:.1} s)",
        "tunnelling rate",
        flow_rate,
        tunnelling_rate(&hmc_q),
        obs[0].label,
        g.mean,
        g.error
    );
    let show = flow_q.len();
    let panel = |title: String, q: &[f64], color: &str| {
        plot::LinePlot::new(title, "Markov-chain step", "Q")
            .with_series(plot::Series::from_values("Q", &q[..show.min(q.len())], plot::Style::Step).with_color(color))
            .with_size(900.0, 260.0)
    };
    let qp = [
        panel(format!("Flow + independence Metropolis, {}", setup.describe()), &flow_q, plot::PALETTE[0]),
        panel(format!("HMC (10 leapfrog steps per trajectory), {}", setup.describe()), &hmc_q, plot::PALETTE[1]),
    ];
    if let Some(dir) = dir {
        plot::write_svg(&dir.join(format!("{stem}.svg")), &plot::panels(&qp, 1))?;
    }
    Ok(())
}

/// Bins of the histograms of [`histogram_plot`].
const HISTOGRAM_BINS: usize = 60;

/// The histogram of observable `k` along the flow's chain next to HMC's at the same
/// couplings with the global flip (the reference chains) and without (one chain of
/// 4 times [`HMC_REFERENCE_TRAJECTORIES`]), as densities on one figure: a flow or chain that covers one vacuum of phi^4's
/// broken phase shows one peak where the ergodic HMC shows two.
fn histogram_plot(
    setup: &dyn Setup,
    o: &Observable,
    k: usize,
    with_flips: &ReferenceChains,
    run: &mut FlowRun,
    h: &Heading,
    path: &std::path::Path,
) -> CliResult<()> {
    // with flips: the reference chains; without: one chain, whose freezing would hide among
    // several
    let with: Vec<f64> = with_flips.recs.iter().flat_map(|r| r.observables[k].iter().copied()).collect();
    let config = RunConfig {
        hmc: HmcConfig::default(),
        n_chains: 1,
        n_therm: 500,
        n_traj: 4 * HMC_REFERENCE_TRAJECTORIES,
        seed: h.seed,
    };
    let recs = run_chains(setup.action(), &config, 1, |_, r| setup.hmc_start(r), |x, out| out[0] = (o.f)(x), None);
    let without: Vec<f64> =
        recs.into_iter().flat_map(|r| r.observables.into_iter().next().unwrap_or_default()).collect();
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    run.chain_replay(k, h.therm, &mut |v| {
        if v.is_finite() {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    })
    .map_err(CliError)?;
    for v in with.iter().chain(&without).filter(|v| v.is_finite()) {
        lo = lo.min(*v);
        hi = hi.max(*v);
    }
    if lo.partial_cmp(&hi) != Some(std::cmp::Ordering::Less) {
        return Ok(());
    }
    let width = (hi - lo) / HISTOGRAM_BINS as f64;
    let bin = |v: f64| (((v - lo) / width) as usize).min(HISTOGRAM_BINS - 1);
    let density = |counts: &[usize]| -> Vec<(f64, f64)> {
        let n: usize = counts.iter().sum();
        let mut pts: Vec<(f64, f64)> = counts
            .iter()
            .enumerate()
            .map(|(b, &c)| (lo + b as f64 * width, c as f64 / (n.max(1) as f64 * width)))
            .collect();
        pts.push((hi, pts.last().map_or(0.0, |p| p.1)));
        pts
    };
    let mut flow_counts = vec![0usize; HISTOGRAM_BINS];
    run.chain_replay(k, h.therm, &mut |v| {
        if v.is_finite() {
            flow_counts[bin(v)] += 1;
        }
    })
    .map_err(CliError)?;
    let count = |vals: &[f64]| {
        let mut c = vec![0usize; HISTOGRAM_BINS];
        vals.iter().filter(|v| v.is_finite()).for_each(|&v| c[bin(v)] += 1);
        c
    };
    let flow_name = if setup.mixture() { "flow, Z2 mixture (Metropolis chain)" } else { "flow (Metropolis chain)" };
    let plot =
        plot::LinePlot::new(format!("Distribution of {}, {}", o.key, setup.describe()), o.key.as_str(), "density")
            .with_series(plot::Series::step(flow_name, density(&flow_counts)).with_color(plot::PALETTE[0]))
            .with_series(
                plot::Series::step("HMC with global flips", density(&count(&with))).with_color(plot::PALETTE[1]),
            )
            .with_series(
                plot::Series::step("HMC without flips (one chain)", density(&count(&without)))
                    .with_color(plot::PALETTE[2]),
            );
    plot::write_svg(path, &plot::line_plot(&plot))?;
    Ok(())
}

/// `action.svg`: S_eff = -log q against S for up to 1024 proposals, with the slope-1 line
/// (arXiv:2101.08176 Fig. 4; on the line the flow is exact up to log Z).
fn write_action_plot(run: &mut FlowRun, dir: &std::path::Path) -> CliResult<()> {
    let mut pts: Vec<(f64, f64)> = Vec::new();
    run.scan(&mut |i, row| {
        if i < ACTION_PLOT_POINTS {
            pts.push((row[ACTION], -row[LOGQ]));
        }
    })?;
    let title = format!("S_eff = -log q against S ({} flow samples)", pts.len());
    let svg = plot::scatter_plot(&title, "S(x)", "S_eff(x) = -log q(x)", &pts, true);
    plot::write_svg(&dir.join("action.svg"), &svg)?;
    Ok(())
}
