//! Shared pieces of the flow subcommands: the training loop with progress, history CSV
//! and checkpoints; drawing a Metropolis ensemble from a flow; the run directory.

use super::{CliError, CliResult};
use latflow::flow::checkpoint;
use latflow::flow::model::{Flow, Layer};
use latflow::flow::prior::Prior;
use latflow::flow::train::{Action, StepMetrics, Trainer};
use latflow::sampler::metropolis::IndependenceMetropolis;
use latflow::tensor::Tensor;
use rand::Rng;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// File names inside a run directory.
pub const MODEL_FILE: &str = "model.safetensors";
/// Training history.
pub const HISTORY_FILE: &str = "history.csv";

/// Creates the run directory (and parents).
pub fn make_dir(dir: &Path) -> CliResult<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| CliError(format!("cannot create run directory {}: {e}", dir.display())))?;
    Ok(dir.to_path_buf())
}

/// Trains for the remaining steps up to `trainer.config.steps`, printing one progress
/// line per era on stderr, appending to `history.csv`, and writing the checkpoint at
/// the end of every era. A non-finite loss stops with an error after saving the last
/// good parameters.
pub fn train_loop<P: Prior<f32>, L: Layer<f32>, A: Action<f32>>(
    trainer: &mut Trainer<f32, P, L>,
    action: &A,
    era: usize,
    dir: &Path,
    meta: &BTreeMap<String, String>,
    quiet: bool,
) -> CliResult<Vec<StepMetrics>> {
    let total = trainer.config.steps;
    let hist_path = dir.join(HISTORY_FILE);
    let fresh = trainer.step == 0 || !hist_path.exists();
    let mut hist = std::fs::OpenOptions::new()
        .create(true)
        .append(!fresh)
        .write(true)
        .truncate(fresh)
        .open(&hist_path)
        .map_err(|e| CliError(format!("cannot write {}: {e}", hist_path.display())))?;
    if fresh {
        writeln!(hist, "step,loss,ess,logp,logq,lr,seconds")?;
    }
    let t0 = Instant::now();
    let start = trainer.step;
    let mut out = Vec::new();
    let (mut era_loss, mut era_ess, mut era_n) = (0.0, 0.0, 0usize);
    while trainer.step < total {
        let m = match trainer.step(action) {
            Ok(m) => m,
            Err(e) => {
                save(trainer, dir, meta)?;
                return Err(CliError(format!(
                    "training stopped: {e}; last good checkpoint: {}",
                    dir.join(MODEL_FILE).display()
                )));
            }
        };
        let secs = t0.elapsed().as_secs_f64();
        writeln!(hist, "{},{},{},{},{},{},{:.3}", m.step, m.loss, m.ess, m.logp, m.logq, m.lr, secs)?;
        era_loss += m.loss;
        era_ess += m.ess;
        era_n += 1;
        out.push(m);
        if m.step % era == 0 || m.step == total {
            save(trainer, dir, meta)?;
            if !quiet {
                let done = m.step - start;
                let rate = done as f64 / secs.max(1e-9);
                let left = (total - m.step) as f64 / rate.max(1e-9);
                eprintln!(
                    "era {:>3}/{}  step {:>6}/{}  loss {:>8.4}  ess {:.3}  {:>7.1} steps/s  {:>5.1}s left",
                    m.step.div_ceil(era),
                    total.div_ceil(era),
                    m.step,
                    total,
                    era_loss / era_n as f64,
                    era_ess / era_n as f64,
                    rate,
                    left
                );
            }
            (era_loss, era_ess, era_n) = (0.0, 0.0, 0);
        }
    }
    Ok(out)
}

/// Writes the model checkpoint with the run's metadata and current step.
pub fn save<P, L: Layer<f32>>(trainer: &Trainer<f32, P, L>, dir: &Path, meta: &BTreeMap<String, String>) -> CliResult<()> {
    let mut meta = meta.clone();
    meta.insert("step".into(), trainer.step.to_string());
    checkpoint::save(&dir.join(MODEL_FILE), &trainer.flow, &meta).map_err(|e| CliError(e.to_string()))
}

/// Flow proposals with everything the analysis needs.
pub struct Ensemble {
    /// The proposals, `(n, site shape...)` flattened per sample.
    pub configs: Vec<Vec<f64>>,
    /// `log q(x)` per proposal.
    pub logq: Vec<f64>,
    /// `S(x)` per proposal (f64, exact action).
    pub action: Vec<f64>,
    /// The Metropolis chain over the proposals.
    pub chain: IndependenceMetropolis,
}

impl Ensemble {
    /// Log weights `log p - log q = -S - log q`.
    pub fn log_weights(&self) -> Vec<f64> {
        self.action.iter().zip(&self.logq).map(|(s, q)| -s - q).collect()
    }
}

/// Draws `n` proposals from the flow in batches and runs independence Metropolis over
/// them in order. `action` evaluates S on one configuration (f64).
pub fn ensemble<P: Prior<f32>, L: Layer<f32>, R: Rng>(
    flow: &Flow<P, L>,
    n: usize,
    batch: usize,
    rng: &mut R,
    action: impl Fn(&[f64]) -> f64,
) -> Ensemble {
    let mut e = Ensemble { configs: Vec::new(), logq: Vec::new(), action: Vec::new(), chain: IndependenceMetropolis::new() };
    while e.configs.len() < n {
        let b = batch.min(n - e.configs.len());
        let (x, logq): (Tensor<f32>, Tensor<f32>) = flow.sample(b, rng);
        let per = x.len() / b;
        let first = e.configs.len();
        let mut lw = Vec::with_capacity(b);
        for (i, c) in x.data().chunks(per).enumerate() {
            let c: Vec<f64> = c.iter().map(|&v| v as f64).collect();
            let s = action(&c);
            let q = logq.data()[i] as f64;
            lw.push(-s - q);
            e.configs.push(c);
            e.action.push(s);
            e.logq.push(q);
        }
        e.chain.offer_batch(first, &lw, rng);
    }
    e
}
