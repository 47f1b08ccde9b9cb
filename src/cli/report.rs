//! The evaluation of a flow for every theory (`train` after training, `sample`): draw the
//! ensemble with the sampler crate, measure the theory's observables along the Metropolis
//! chain (Gamma method, U. Wolff hep-lat/0306017) and by reweighting, compare with the
//! theory's reference values at the run's couplings (or latflow's HMC run on demand), and
//! write the summary and the plots.

use super::{save, CliError, CliResult};
use crate::flow::model::Flow;
use crate::io::csv::Table;
use crate::io::plot;
use crate::sampler::ensemble::{Ensemble, IndependenceSampler, ProposalBatch};
use crate::sampler::hmc::{run_chains, HmcChain, HmcConfig, RunConfig};
use crate::sampler::reweight::pareto_k_hat;
use crate::sampler::stats::{gamma_method, gamma_method_replicas, tunnelling_rate, GammaEstimate, S_TAU_DEFAULT};
use crate::theory::{Observable, Reference, Setup, Theory};
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

/// Draws the ensemble (saving it with `--save`), prints the summary, writes `summary.csv`
/// and the plots.
pub fn evaluate(
    theory: &dyn Theory,
    setup: &dyn Setup,
    flow: &Flow<f32>,
    s: &EnsembleArgs,
    train_s: Option<f64>,
) -> CliResult<()> {
    if s.therm + 2 > s.n {
        return Err(CliError(format!(
            "--therm {} must leave at least 2 chain steps of the {} proposals (--n)",
            s.therm, s.n
        )));
    }
    let t0 = Instant::now();
    let mut rng = StdRng::seed_from_u64(s.seed ^ 0x5eed);
    let action = |c: &[f64]| setup.action().action(c);
    let obs = setup.observables();
    let mut values: Vec<Vec<f64>> = obs.iter().map(|_| Vec::with_capacity(s.n)).collect();
    let layout = save::flow_layout(flow.prior.shape());
    let mut writer = s.save.as_ref().map(|t| t.writer(0, layout));
    let mut sink = |b: &ProposalBatch| {
        for i in 0..b.len() {
            let c = b.config(i);
            for (o, v) in obs.iter().zip(values.iter_mut()) {
                v.push((o.f)(c));
            }
            if let Some(w) = writer.as_mut() {
                w.push(c, &[b.action[i], b.logq[i]], &[b.chain[i] as i64])?;
            }
        }
        Ok(())
    };
    let e = IndependenceSampler::new(flow, &action, s.batch)
        .sample_streaming(s.n, &mut rng, KEPT_CONFIGS, &mut sink)
        .map_err(|e| CliError(format!("{e}; the chunks written before it are complete")))?;
    let saved = match (writer, &s.save) {
        (Some(w), Some(t)) => Some((w.finish().map_err(CliError)?, t.dir.clone())),
        _ => None,
    };
    let sample_s = t0.elapsed().as_secs_f64();
    let head = Heading { n: s.n, batch: s.batch, therm: s.therm, seed: s.seed };
    let mut times = vec![("sampling time", sample_s)];
    if let Some(t) = train_s {
        times.insert(0, ("training time", t));
    }
    report(theory, setup, &e, &obs, &values, &head, &times, Some(&s.dir))?;
    if let Some((count, dir)) = saved {
        println!("ensemble: {count} configurations in {} (latflow measure {0})", dir.display());
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
/// tail, each of `obs` (`values[k]` per configuration) along the chain and reweighted,
/// against the references; with `dir`, also `summary.csv` and the plots.
#[allow(clippy::too_many_arguments)]
pub fn report(
    theory: &dyn Theory,
    setup: &dyn Setup,
    e: &Ensemble,
    obs: &[Observable],
    values: &[Vec<f64>],
    h: &Heading,
    times: &[(&str, f64)],
    dir: Option<&std::path::Path>,
) -> CliResult<()> {
    let mut refs = setup.references();
    let ess = e.reweight(&values[0]).map_or(f64::NAN, |r| r.ess);

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
    println!("{:<COL$}{:.3}", "Metropolis acceptance", e.acceptance());
    println!("{:<COL$}{ess:.3}", "ESS / N");
    let k_hat = e.log_weights().and_then(|lw| pareto_k_hat(&lw));
    if let Some(k) = k_hat {
        let verdict = if k < 0.5 {
            "finite weight variance"
        } else if k < 0.7 {
            "heavy weight tail: errors may be small"
        } else {
            "very heavy weight tail: estimates and errors unreliable"
        };
        println!("{:<COL$}{k:.2}   ({verdict}; Vehtari et al. arXiv:1507.02646)", "Pareto k-hat of weights");
    }
    let missing: Vec<&Observable> = obs.iter().filter(|o| o.compare && !refs.iter().any(|r| r.key == o.key)).collect();
    if !missing.is_empty() {
        refs.extend(hmc_references(setup, &missing, h.seed));
    }
    let mut table = Table::new(&["quantity", "value", "error"]);
    table.row(&["acceptance", &e.acceptance().to_string(), ""]);
    table.row(&["ess", &ess.to_string(), ""]);
    table.row(&["pareto_k", &k_hat.map_or_else(String::new, |k| k.to_string()), ""]);
    for (o, v) in obs.iter().zip(values) {
        report_observable(o, v, e, h.therm, &refs, &mut table);
    }
    if e.accepted == 0 {
        println!(
            "warning: the chain accepted none of the {} proposals: its estimates are one configuration, \
             not an ensemble, and their errors mean nothing",
            e.proposed
        );
    }
    let mut files = vec!["summary.csv", "action.svg", "samples.svg"];
    for (o, v) in obs.iter().zip(values) {
        if let Some(stem) = o.tunnelling {
            charge_history(setup, obs, o, &e.chain_of(v, h.therm), h, stem, dir)?;
            files.push(stem);
        }
    }
    if let Some(dir) = dir {
        table.write(&dir.join("summary.csv")).map_err(CliError)?;
        write_action_plot(e, dir)?;
        let fields: Vec<Vec<f64>> = e.configs().take(16).map(|c| setup.sample_image(c).0).collect();
        let (_, rows, cols) = setup.sample_image(e.config(0));
        let svg = plot::heatmap_grid(&setup.sample_title(), &fields, rows, cols, 4, 4);
        plot::write_svg(&dir.join("samples.svg"), &svg)?;
        let names: Vec<String> =
            files.iter().map(|f| if f.contains('.') { f.to_string() } else { format!("{f}.svg") }).collect();
        println!("wrote {}/{{{}}}", dir.display(), names.join(", "));
    }
    // a flow that outputs NaN or infinities (diverged training, corrupt weights) gives no
    // ensemble: say so with an error, not exit 0
    let logq = e.logq.as_deref().unwrap_or(&[]);
    let bad = (0..e.len()).filter(|&i| !e.action[i].is_finite() || logq.get(i).is_some_and(|q| !q.is_finite())).count();
    if bad > 0 {
        return Err(CliError(format!(
            "{bad} proposals have a non-finite action or log q: the flow is broken (diverged training?); \
             the estimates above are not valid"
        )));
    }
    Ok(())
}

/// The Metropolis estimate, the reweighted one, the references and the deviations of one
/// observable; their rows of `summary.csv`.
fn report_observable(o: &Observable, v: &[f64], e: &Ensemble, therm: usize, refs: &[Reference], t: &mut Table) {
    let d = o.digits;
    let chain = e.chain_of(v, therm);
    let g = gamma_method(&chain, S_TAU_DEFAULT);
    println!(
        "{}{:.d$} +- {:.d$}   (tau_int {:.2} +- {:.2}, {} steps after {therm} thermalization)",
        col(&format!("{} (Metropolis)", o.label)),
        g.mean,
        g.error,
        g.tau_int,
        g.tau_int_error,
        chain.len()
    );
    t.row(&[format!("{}_metropolis", o.key), g.mean.to_string(), g.error.to_string()]);
    t.row(&[format!("{}_tau_int", o.key), g.tau_int.to_string(), g.tau_int_error.to_string()]);
    if let Some(rw) = e.reweight(v) {
        println!(
            "{}{:.d$} +- {:.d$}",
            col(&format!("{} (reweighting)", o.label)),
            rw.estimate.value,
            rw.estimate.error
        );
        t.row(&[format!("{}_reweighted", o.key), rw.estimate.value.to_string(), rw.estimate.error.to_string()]);
    }
    let mine: Vec<&Reference> = refs.iter().filter(|r| r.key == o.key && r.value.is_finite()).collect();
    for r in &mine {
        let rd = r.digits;
        let value =
            if r.error > 0.0 { format!("{:.rd$} +- {:.rd$}", r.value, r.error) } else { format!("{:.rd$}", r.value) };
        let note = if r.note.is_empty() { String::new() } else { format!("   ({})", r.note) };
        println!("{}{value}{note}", col(&format!("{} ({})", o.label, r.label)));
        let slug: String = r.label.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        t.row(&[format!("{}_ref_{slug}", o.key), r.value.to_string(), r.error.to_string()]);
    }
    if !mine.is_empty() && g.error > 0.0 {
        let why = if e.accepted == 0 {
            "the chain never moved"
        } else if !g.window_found {
            "tau_int undetermined, the chain is too short: the error is a lower bound"
        } else {
            ""
        };
        let pulls: Vec<String> =
            mine.iter().map(|r| format!("{:+.2} sigma ({})", r.pull(g.mean, g.error), r.label)).collect();
        let text = if why.is_empty() { pulls.join(", ") } else { format!("not quoted ({why})") };
        println!("{}{text}", col(&format!("deviation of {}", o.label)));
    }
}

/// latflow's HMC at the setup's couplings (4 chains of [`HMC_REFERENCE_TRAJECTORIES`]):
/// the reference for observables the theory knows no value for.
fn hmc_references(setup: &dyn Setup, missing: &[&Observable], seed: u64) -> Vec<Reference> {
    let config =
        RunConfig { hmc: HmcConfig::default(), n_chains: 4, n_therm: 500, n_traj: HMC_REFERENCE_TRAJECTORIES, seed };
    let t0 = Instant::now();
    let recs = run_chains(
        setup.action(),
        &config,
        missing.len(),
        |_, r| setup.hmc_start(r),
        |x, out| {
            for (o, v) in missing.iter().zip(out.iter_mut()) {
                *v = (o.f)(x);
            }
        },
        None,
    );
    let secs = t0.elapsed().as_secs_f64();
    let acc = recs.iter().map(|r| r.acceptance_rate()).sum::<f64>() / recs.len() as f64;
    missing
        .iter()
        .enumerate()
        .map(|(k, o)| {
            let series: Vec<&[f64]> = recs.iter().map(|r| r.observables[k].as_slice()).collect();
            let g = gamma_method_replicas(&series, S_TAU_DEFAULT);
            let n = config.n_chains * config.n_traj;
            let note = format!("{n} trajectories run now, {secs:.1} s, acceptance {acc:.2}, tau_int {:.1}", g.tau_int);
            Reference::measured(o.key, "HMC, latflow", g.mean, g.error, o.digits, &note)
        })
        .collect()
}

/// The tunnelling rate of a charge along the flow chain next to a plain HMC chain of the
/// same length at the same couplings (default trajectories), and their histories in
/// `{stem}.svg` (arXiv:2101.08176 Fig. 7).
fn charge_history(
    setup: &dyn Setup,
    obs: &[Observable],
    charge: &Observable,
    flow_q: &[f64],
    s: &Heading,
    stem: &str,
    dir: Option<&std::path::Path>,
) -> CliResult<()> {
    let t1 = Instant::now();
    let mut rng = StdRng::seed_from_u64(s.seed ^ 0x4a3c);
    let x0 = setup.hmc_start(&mut rng);
    let mut chain = HmcChain::new(setup.action(), x0);
    let cfg = HmcConfig::default();
    let mut hmc_q = Vec::new();
    let mut primary = Vec::new();
    for t in 0..flow_q.len() + s.therm {
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
        tunnelling_rate(flow_q),
        tunnelling_rate(&hmc_q),
        obs[0].label,
        g.mean,
        g.error
    );
    let show = flow_q.len().min(1000);
    let panel = |title: String, q: &[f64], color: &str| {
        plot::LinePlot::new(title, "Markov-chain step", "Q")
            .with_series(plot::Series::from_values("Q", &q[..show.min(q.len())], plot::Style::Step).with_color(color))
            .with_size(900.0, 260.0)
    };
    let qp = [
        panel(format!("Flow + independence Metropolis, {}", setup.describe()), flow_q, plot::PALETTE[0]),
        panel(format!("HMC (10 leapfrog steps per trajectory), {}", setup.describe()), &hmc_q, plot::PALETTE[1]),
    ];
    if let Some(dir) = dir {
        plot::write_svg(&dir.join(format!("{stem}.svg")), &plot::panels(&qp, 1))?;
    }
    Ok(())
}

/// `action.svg`: S_eff = -log q against S for up to 1024 proposals, with the slope-1 line
/// (arXiv:2101.08176 Fig. 4; on the line the flow is exact up to log Z).
fn write_action_plot(e: &Ensemble, dir: &std::path::Path) -> CliResult<()> {
    let k = e.len().min(1024);
    let logq = e.logq.as_ref().expect("flow ensembles carry log q");
    let pts: Vec<(f64, f64)> = (0..k).map(|i| (e.action[i], -logq[i])).collect();
    let title = format!("S_eff = -log q against S ({k} flow samples)");
    let svg = plot::scatter_plot(&title, "S(x)", "S_eff(x) = -log q(x)", &pts, true);
    plot::write_svg(&dir.join("action.svg"), &svg)?;
    Ok(())
}
