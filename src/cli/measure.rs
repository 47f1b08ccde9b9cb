//! `latflow measure ENSEMBLE [--obs KEYS] [--therm N]`: every observable of the theory, with
//! Gamma-method errors, from an ensemble saved by `sample --save`, `train --save` or
//! `hmc --save`, read one chunk at a time. The theory, couplings, sampler settings and seed
//! come from the chunks' metadata, so the numbers are those the sampling run printed (the
//! configurations are stored exactly: a flow's f32 samples as F32, HMC's f64 as F64).
//!
//! The ensemble is checked on the way: chunks that fit together (`latflow_io::ensemble`),
//! configurations of the theory's shape, a stored action equal to `S(x)` recomputed at the
//! metadata's couplings (so an edited or foreign file is an error, not a wrong number),
//! and a well-formed Metropolis chain.

use super::report::{self, FlowRun, Heading};
use super::save::{SAMPLER_FLOW, SAMPLER_HMC, SAMPLER_KEY};
use super::{hmc, Args, CliError, CliResult};
use crate::io::ensemble::{Chunk, Ensemble as Stored, MANIFEST_FILE};
use crate::sampler::ensemble::ChainCounts;
use crate::sampler::hmc::{ChainRecord, HmcConfig, Integrator, RunConfig};
use crate::theory::{Derived, Observable, Params, Setup, Theory};
use std::path::PathBuf;
use std::time::Instant;

/// Relative difference allowed between a stored action and `S(x)` recomputed (the same
/// f64 arithmetic on the same numbers gives the same bits; this leaves room for another
/// summation order only).
const ACTION_RTOL: f64 = 1e-9;

/// `latflow measure ...`.
pub fn run(theories: &[&dyn Theory], rest: &[String]) -> CliResult<()> {
    let a = Args::parse(rest, &["obs", "therm"], &[])?;
    let dir = match a.positional.as_slice() {
        [d] => PathBuf::from(d),
        [] => return Err(CliError("measure: which ensemble? (latflow measure RUN/ensemble)".into())),
        more => return Err(CliError(format!("measure: one ensemble directory, got {}: {more:?}", more.len()))),
    };
    let stored = Stored::open(&dir).map_err(CliError)?;
    // said last, after the report (whose first line is the run's own)
    let status = if stored.is_complete() {
        format!(
            "{}: complete ({MANIFEST_FILE} lists its {} chunk{}; sizes and SHA-256 checked as they were read)",
            dir.display(),
            stored.n_chunks(),
            if stored.n_chunks() == 1 { "" } else { "s" }
        )
    } else {
        format!(
            "note: {} has no {MANIFEST_FILE}: the run that wrote it did not finish (or predates manifests); \
             measured its complete chunks",
            dir.display()
        )
    };
    let first = stored.streams[0][0].display().to_string();
    let meta = &stored.metadata;
    let entry = |k: &str| -> CliResult<&String> {
        meta.get(k).ok_or_else(|| CliError(format!("{first}: metadata entry {k:?} is missing")))
    };
    let name = entry("theory")?;
    let theory = crate::theory::find(theories, name)
        .ok_or_else(|| CliError(format!("{first}: unknown theory {name:?} in the ensemble's metadata")))?;
    let params = Params::from_metadata(&theory.params(), meta, &first).map_err(CliError)?;
    let setup = theory.setup(&params).map_err(CliError)?;
    if stored.layout.shape != setup.config_shape() {
        return Err(CliError(format!(
            "{first}: configurations of shape {:?}, but the metadata's {} lattice has {:?}",
            stored.layout.shape,
            theory.name(),
            setup.config_shape()
        )));
    }
    let chosen = select(setup.as_ref(), a.opt::<String>("obs")?)?;
    let obs = setup.observables();
    let number = |k: &str| -> CliResult<u64> {
        entry(k)?.parse().map_err(|_| CliError(format!("{first}: metadata entry {k:?} is not a number")))
    };
    let therm = a.opt::<usize>("therm")?;
    let done = match entry(SAMPLER_KEY)?.as_str() {
        SAMPLER_FLOW => {
            let therm = therm.map_or_else(|| number("therm").map(|t| t as usize), Ok)?;
            let (seed, n, batch) = (number("seed")?, number("n")?, number("batch")?);
            flow(theory, setup.as_ref(), &stored, &obs, chosen.as_deref(), therm, seed, n, batch)
        }
        SAMPLER_HMC | super::fhmc::SAMPLER_FLOW_HMC => {
            let tau: f64 =
                entry("tau")?.parse().map_err(|_| CliError(format!("{first}: metadata \"tau\" is not a number")))?;
            let run = RunConfig {
                hmc: HmcConfig {
                    trajectory_length: tau,
                    n_steps: number("steps")? as usize,
                    flip: meta.get("flip").is_some_and(|v| v == "true"),
                    // ensembles written before the integrator was recorded ran leapfrog
                    integrator: match meta.get("integrator") {
                        None => Integrator::Leapfrog,
                        Some(v) => Integrator::parse(v).map_err(|e| CliError(format!("{first}: metadata {e}")))?,
                    },
                },
                n_chains: number("chains")? as usize,
                n_therm: number("n_therm")? as usize,
                n_traj: number("n_traj")? as usize,
                seed: number("seed")?,
            };
            // the first line of the run's own report (`latflow hmc` or `latflow fhmc`)
            let mut header = format!("latflow hmc {}: {}", theory.name(), setup.describe());
            if meta[SAMPLER_KEY] == super::fhmc::SAMPLER_FLOW_HMC {
                let ck = meta.get("checkpoint").map_or("a flow", String::as_str);
                let sizes = meta.get("L_trained").map_or(String::new(), |l0| format!(", flow trained at L={l0}"));
                header = format!("latflow fhmc {}: {} (flow-HMC with {ck}{sizes})", theory.name(), setup.describe());
            }
            chains(&header, setup.as_ref(), &stored, &obs, chosen.as_deref(), &run, therm.unwrap_or(0))
        }
        other => Err(CliError(format!("{first}: unknown sampler {other:?} in the ensemble's metadata"))),
    };
    done?;
    println!("{status}");
    Ok(())
}

/// The keys named by `--obs k1,k2` (observables shown or derived quantities), checked.
fn select(setup: &dyn Setup, keys: Option<String>) -> CliResult<Option<Vec<String>>> {
    let Some(keys) = keys else { return Ok(None) };
    let mut known: Vec<String> = setup.observables().into_iter().filter(|o| o.shown).map(|o| o.key).collect();
    known.extend(setup.derived().into_iter().map(|d| d.key));
    let mut out = Vec::new();
    for k in keys.split(',').map(str::trim) {
        if !known.iter().any(|q| q == k) {
            return Err(CliError(format!(
                "measure: --obs {k:?} is not an observable of this theory ({})",
                known.join(", ")
            )));
        }
        out.push(k.to_string());
    }
    Ok(Some(out))
}

/// Checks the stored action of every configuration of `c` against `S(x)`.
fn check_action(setup: &dyn Setup, c: &Chunk, dof: usize) -> Result<(), String> {
    for (k, &s) in c.floats["action"].iter().enumerate() {
        let x = &c.x[k * dof..(k + 1) * dof];
        let again = setup.action().action(x);
        let close = (again - s).abs() <= ACTION_RTOL * s.abs().max(1.0);
        if !(close || s.is_nan() && again.is_nan()) {
            return Err(format!(
                "{}: configuration {} has stored action {s} but S(x) = {again} at the metadata's couplings \
                 (an edited file, or chunks of another run?)",
                c.path.display(),
                c.first + k
            ));
        }
    }
    Ok(())
}

/// A flow ensemble: the chain, the weights and the observables, reported as `sample` did.
#[allow(clippy::too_many_arguments)]
fn flow(
    theory: &dyn Theory,
    setup: &dyn Setup,
    stored: &Stored,
    obs: &[Observable],
    chosen: Option<&[String]>,
    therm: usize,
    seed: u64,
    n: u64,
    batch: u64,
) -> CliResult<()> {
    for col in ["action", "logq"] {
        if !stored.layout.floats.iter().any(|c| c == col) {
            return Err(CliError(format!("{}: no column {col:?}", stored.dir.display())));
        }
    }
    if !stored.layout.ints.iter().any(|c| c == "chain") || stored.streams.len() != 1 {
        return Err(CliError(format!(
            "{}: a flow ensemble has one stream with a \"chain\" column",
            stored.dir.display()
        )));
    }
    let t0 = Instant::now();
    let dof = stored.layout.dof();
    let mut run = FlowRun::new(obs.len());
    let (mut prev, mut accepted, mut values) = (0usize, 0usize, vec![0.0; obs.len()]);
    stored
        .for_each_chunk(|c| {
            check_action(setup, c, dof)?;
            for k in 0..c.count {
                let (i, x) = (c.first + k, &c.x[k * dof..(k + 1) * dof]);
                let state = usize::try_from(c.ints["chain"][k]).unwrap_or(usize::MAX);
                // step i sits on proposal i (accepted) or stays where step i-1 was
                if !(state == i || (i > 0 && state == prev)) {
                    return Err(format!("{}: the chain column is corrupt at step {i} ({state})", c.path.display()));
                }
                accepted += (i > 0 && state == i) as usize;
                prev = state;
                for (o, v) in obs.iter().zip(values.iter_mut()) {
                    *v = (o.f)(x);
                }
                run.record(x, c.floats["action"][k], c.floats["logq"][k], state, &values)?;
            }
            Ok(())
        })
        .map_err(CliError)?;
    let len = run.len();
    run.counts = ChainCounts { len, accepted, proposed: len.saturating_sub(1) };
    if len < therm + 2 {
        return Err(CliError(format!(
            "{}: {len} configurations; thermalization {therm} must leave at least 2 chain steps",
            stored.dir.display()
        )));
    }
    if (len as u64) < n {
        println!("warning: the ensemble holds {len} of the run's {n} proposals (the run stopped early?)");
    }
    let head = Heading { n: len, batch: batch as usize, therm, seed };
    let read = t0.elapsed().as_secs_f64();
    println!("measured {} ({} chunks)", stored.dir.display(), stored.n_chunks());
    let derived: Vec<Derived> =
        setup.derived().into_iter().filter(|d| chosen.is_none_or(|c| c.contains(&d.key))).collect();
    let shown = |k: &str| chosen.is_none_or(|c| c.iter().any(|q| q == k));
    report::report(theory, setup, &mut run, obs, &derived, &shown, &head, &[("reading time", read)], None)
}

/// An HMC ensemble: one record per chain, reported as `hmc` did.
fn chains(
    header: &str,
    setup: &dyn Setup,
    stored: &Stored,
    obs: &[Observable],
    chosen: Option<&[String]>,
    run: &RunConfig,
    extra: usize,
) -> CliResult<()> {
    for col in ["action", "dH"] {
        if !stored.layout.floats.iter().any(|c| c == col) {
            return Err(CliError(format!("{}: no column {col:?}", stored.dir.display())));
        }
    }
    if !stored.layout.ints.iter().any(|c| c == "accepted") {
        return Err(CliError(format!("{}: no column \"accepted\"", stored.dir.display())));
    }
    let t0 = Instant::now();
    let dof = stored.layout.dof();
    let mut recs: Vec<ChainRecord> = (0..stored.streams.len())
        .map(|_| ChainRecord { observables: vec![Vec::new(); obs.len() + 1], ..Default::default() })
        .collect();
    stored
        .for_each_chunk(|c| {
            check_action(setup, c, dof)?;
            let r = &mut recs[c.stream];
            for k in 0..c.count {
                let x = &c.x[k * dof..(k + 1) * dof];
                for (o, v) in obs.iter().zip(r.observables.iter_mut()) {
                    v.push((o.f)(x));
                }
                r.observables[obs.len()].push(c.floats["action"][k]);
                r.delta_h.push(c.floats["dH"][k]);
                r.accepted.push(c.ints["accepted"][k] != 0);
            }
            Ok(())
        })
        .map_err(CliError)?;
    let short: Vec<String> = recs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.delta_h.len() < run.n_traj)
        .map(|(c, r)| format!("chain {c}: {}", r.delta_h.len()))
        .collect();
    if !short.is_empty() || recs.len() < run.n_chains {
        println!(
            "warning: the run recorded {} chains x {} trajectories; saved: {} chains ({}) (the run stopped early?)",
            run.n_chains,
            run.n_traj,
            recs.len(),
            if short.is_empty() { "all complete".to_string() } else { short.join(", ") }
        );
    }
    // the run's thermalization was not saved; --therm drops more from every chain
    for r in recs.iter_mut() {
        let e = extra.min(r.delta_h.len());
        r.observables.iter_mut().for_each(|v| {
            v.drain(..e);
        });
        r.delta_h.drain(..e);
        r.accepted.drain(..e);
    }
    if recs.iter().map(|r| r.delta_h.len()).sum::<usize>() < 2 {
        return Err(CliError(format!("{}: fewer than 2 trajectories to analyse", stored.dir.display())));
    }
    recs.retain(|r| !r.delta_h.is_empty());
    let n: usize = recs.iter().map(|r| r.delta_h.len()).sum();
    let timing =
        format!("measured {n} saved configurations of {} in {:.2} s", stored.dir.display(), t0.elapsed().as_secs_f64());
    let shown = RunConfig { n_chains: recs.len(), n_traj: recs[0].delta_h.len(), n_therm: run.n_therm + extra, ..*run };
    let select = |k: &str| chosen.is_none_or(|c| c.iter().any(|q| q == k));
    hmc::summarize_as(header, setup, obs, &setup.derived(), &select, &shown, &recs, &timing, None)
}
