//! Shared pieces of the flow subcommands: the training loop with progress, history CSV
//! and checkpoints; drawing a Metropolis ensemble from a flow; the run directory.

use super::{Args, CliError, CliResult};
use latflow::flow::checkpoint;
use latflow::flow::model::{Flow, Layer};
use latflow::flow::plot;
use latflow::flow::prior::Prior;
use latflow::flow::safetensors::SafeTensors;
use latflow::flow::train::TrainConfig;
use latflow::flow::train::{Action, StepMetrics, Trainer};
use latflow::sampler::metropolis::IndependenceMetropolis;
use latflow::tensor::{Device, Tensor};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// File names inside a run directory.
pub const MODEL_FILE: &str = "model.safetensors";
/// Training history.
pub const HISTORY_FILE: &str = "history.csv";
/// Adam state next to the model (kept out of the model file so that it stays a plain
/// PyTorch `state_dict`).
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// Creates the run directory (and parents).
pub fn make_dir(dir: &Path) -> CliResult<PathBuf> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError(format!("cannot create run directory {}: {e}", dir.display())))?;
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
pub fn save<P, L: Layer<f32>>(
    trainer: &Trainer<f32, P, L>,
    dir: &Path,
    meta: &BTreeMap<String, String>,
) -> CliResult<()> {
    let mut meta = meta.clone();
    meta.insert("step".into(), trainer.step.to_string());
    let mut opt = SafeTensors::default();
    let (m, v) = trainer.adam.moments();
    for ((name, t), (m, v)) in trainer.flow.named_params::<f32>().into_iter().zip(m.iter().zip(&v)) {
        opt.insert_f32(format!("exp_avg.{name}"), t.shape(), m);
        opt.insert_f32(format!("exp_avg_sq.{name}"), t.shape(), v);
    }
    opt.metadata.insert("adam_step".into(), trainer.adam.steps().to_string());
    opt.metadata.insert("step".into(), trainer.step.to_string());
    // Optimizer first: a model file always has a matching (or newer) optimizer next to it.
    opt.write(&dir.join(OPTIMIZER_FILE)).map_err(|e| CliError(e.to_string()))?;
    checkpoint::save(&dir.join(MODEL_FILE), &trainer.flow, &meta).map_err(|e| CliError(e.to_string()))
}

/// Restores Adam's moments from the `optimizer.safetensors` next to the checkpoint
/// `model`, if there is one written at the same step (otherwise Adam restarts, with a
/// note on stderr).
pub fn restore_optimizer<P, L: Layer<f32>>(trainer: &mut Trainer<f32, P, L>, model: &Path) -> CliResult<()> {
    let path = model.with_file_name(OPTIMIZER_FILE);
    let Ok(opt) = SafeTensors::read(&path) else {
        eprintln!("note: no readable {} next to the checkpoint; Adam restarts from zero moments", path.display());
        return Ok(());
    };
    if opt.metadata.get("step") != Some(&trainer.step.to_string()) {
        eprintln!("note: {} is not from step {}; Adam restarts from zero moments", path.display(), trainer.step);
        return Ok(());
    }
    let err = |e: latflow::flow::safetensors::CheckpointError| CliError(format!("{}: {e}", path.display()));
    let (mut m, mut v) = (Vec::new(), Vec::new());
    for (name, t) in trainer.flow.named_params::<f32>() {
        m.push(opt.get_f32_shaped(&format!("exp_avg.{name}"), t.shape()).map_err(err)?);
        v.push(opt.get_f32_shaped(&format!("exp_avg_sq.{name}"), t.shape()).map_err(err)?);
    }
    let adam_step: u64 = checkpoint::meta_get(&opt.metadata, "adam_step").map_err(err)?;
    trainer.adam.restore(adam_step, m, v);
    Ok(())
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
    let mut e =
        Ensemble { configs: Vec::new(), logq: Vec::new(), action: Vec::new(), chain: IndependenceMetropolis::new() };
    while e.configs.len() < n {
        let b = batch.min(n - e.configs.len());
        let (x, logq): (Tensor<f32>, Tensor<f32>) = flow.sample(b, rng);
        let per = x.len() / b;
        let first = e.configs.len();
        let mut lw = Vec::with_capacity(b);
        // (copies from the GPU when the flow runs there)
        let (x, logq) = (x.into_vec(), logq.into_vec());
        for (i, c) in x.chunks(per).enumerate() {
            let c: Vec<f64> = c.iter().map(|&v| v as f64).collect();
            let s = action(&c);
            let q = logq[i] as f64;
            lw.push(-s - q);
            e.configs.push(c);
            e.action.push(s);
            e.logq.push(q);
        }
        e.chain.offer_batch(first, &lw, rng);
    }
    e
}

/// Flags every `latflow train THEORY` accepts.
pub const COMMON_TRAIN_FLAGS: &[&str] =
    &["batch", "steps", "lr", "lr-final", "seed", "out", "era", "n", "sample-batch", "therm", "resume", "device"];

/// The theory-independent settings of a training run.
#[derive(Clone, Debug)]
pub struct TrainArgs {
    /// Optimizer and schedule.
    pub train: TrainConfig,
    /// Steps between progress lines and checkpoints.
    pub era: usize,
    /// Run directory.
    pub out: PathBuf,
    /// Proposals for the evaluation ensemble.
    pub n: usize,
    /// Batch for sampling.
    pub sample_batch: usize,
    /// Thermalization steps dropped from the Metropolis chain.
    pub therm: usize,
    /// Where training and sampling run (`--device cpu|cuda`). Default: the CPU.
    pub device: Device,
}

impl TrainArgs {
    /// Reads the common flags over the theory's defaults `d`.
    pub fn parse(a: &Args, d: &TrainArgs) -> CliResult<TrainArgs> {
        let mut r = d.clone();
        r.train.batch = a.positive("batch", d.train.batch)?;
        r.train.steps = a.positive("steps", d.train.steps)?;
        r.train.adam.lr = a.finite("lr", d.train.adam.lr)?;
        if r.train.adam.lr <= 0.0 {
            return Err(CliError(format!("--lr must be positive, got {}", r.train.adam.lr)));
        }
        r.train.lr_final = match a.opt::<String>("lr-final")?.as_deref() {
            None => d.train.lr_final,
            Some("none") => None,
            Some(v) => Some(
                v.parse::<f64>()
                    .ok()
                    .filter(|x| *x > 0.0 && x.is_finite())
                    .ok_or_else(|| CliError(format!("--lr-final: expected a positive number or 'none', got {v:?}")))?,
            ),
        };
        r.train.seed = a.get("seed", d.train.seed)?;
        r.era = a.positive("era", d.era)?;
        r.out = a.get("out", d.out.clone())?;
        r.n = a.positive("n", d.n)?;
        r.sample_batch = a.positive("sample-batch", d.sample_batch)?;
        r.therm = a.get("therm", d.therm)?;
        r.device = parse_device(a)?;
        if r.therm >= r.n {
            return Err(CliError(format!("--therm {} must be below the number of proposals --n {}", r.therm, r.n)));
        }
        Ok(r)
    }
}

/// Parses `--hidden 8,8`.
pub fn parse_hidden(s: &str) -> CliResult<Vec<usize>> {
    s.split(',')
        .map(|p| p.trim().parse::<usize>().ok().filter(|&v| v > 0))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| CliError(format!("--hidden: expected positive integers separated by commas, got {s:?}")))
}

/// Loss and ESS against step, from `history.csv`.
pub fn plot_history(dir: &Path) -> CliResult<()> {
    let text = std::fs::read_to_string(dir.join(HISTORY_FILE))?;
    let (mut loss, mut ess) = (Vec::new(), Vec::new());
    for line in text.lines().skip(1) {
        let f: Vec<f64> = line.split(',').filter_map(|v| v.parse().ok()).collect();
        if f.len() >= 3 {
            loss.push((f[0], f[1]));
            ess.push((f[0], f[2]));
        }
    }
    let smooth = |v: &[(f64, f64)]| -> Vec<(f64, f64)> {
        let w = (v.len() / 100).max(1);
        v.chunks(w).map(|c| (c[c.len() - 1].0, c.iter().map(|p| p.1).sum::<f64>() / c.len() as f64)).collect()
    };
    // The first 5% of steps (where the loss falls from its initial O(100)) would squash the
    // rest of the curve; the CSV has them.
    let skip = loss.len() / 20;
    let p1 = plot::LinePlot::new("Training loss (after the first 5% of steps)", "step", "mean(log q + S) = KL - log Z")
        .with_series(plot::Series::line("loss", smooth(&loss[skip..])));
    let p2 = plot::LinePlot::new("Effective sample size of each batch", "step", "ESS / N")
        .with_series(plot::Series::line("ESS", smooth(&ess)));
    plot::write_svg(&dir.join("training.svg"), &plot::panels(&[p1, p2], 2))?;
    println!("wrote {}/{{{MODEL_FILE}, {OPTIMIZER_FILE}, {HISTORY_FILE}, training.svg}}", dir.display());
    Ok(())
}

/// Reads a checkpoint that must be of `theory`: its tensors and metadata.
pub fn open_checkpoint(path: &Path, theory: &str) -> CliResult<(SafeTensors, BTreeMap<String, String>)> {
    // SafeTensors::read names the file in its errors.
    let st = SafeTensors::read(path).map_err(|e| CliError(e.to_string()))?;
    let meta = st.metadata.clone();
    let found: String = meta_value(path, &meta, "theory")?;
    if found != theory {
        return Err(CliError(format!("{}: a {found} checkpoint, expected {theory}", path.display())));
    }
    Ok((st, meta))
}

/// A checkpoint metadata entry parsed as `V`; the error names the file and the key.
pub fn meta_value<V: std::str::FromStr>(path: &Path, meta: &BTreeMap<String, String>, key: &str) -> CliResult<V> {
    checkpoint::meta_get(meta, key).map_err(|e| CliError(format!("{}: {e}", path.display())))
}

/// Copies a checkpoint's parameters into `flow` (checking names, shapes and buffers).
pub fn load_into<P, L: Layer<f32>>(path: &Path, st: &SafeTensors, flow: &mut Flow<P, L>) -> CliResult<()> {
    checkpoint::load_params(st, flow).map_err(|e| CliError(format!("{}: {e}", path.display())))
}

/// Draws the evaluation ensemble (RNG seeded from `seed`), timed: `(ensemble, seconds)`.
/// `therm` must leave part of the chain.
pub fn draw<P: Prior<f32>, L: Layer<f32>>(
    flow: &Flow<P, L>,
    n: usize,
    batch: usize,
    therm: usize,
    seed: u64,
    action: impl Fn(&[f64]) -> f64,
) -> CliResult<(Ensemble, f64)> {
    if therm >= n {
        return Err(CliError(format!("--therm {therm} must be below the number of proposals {n}")));
    }
    let t0 = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
    let e = ensemble(flow, n, batch, &mut rng, action);
    Ok((e, t0.elapsed().as_secs_f64()))
}

/// The first lines of every ensemble summary: title, times, acceptance, ESS.
pub fn print_head(title: &str, train_s: Option<f64>, sample_s: f64, e: &Ensemble, ess: f64) {
    println!("== {title}");
    if let Some(t) = train_s {
        println!("training time            {t:.1} s");
    }
    println!("sampling time            {sample_s:.1} s");
    println!("Metropolis acceptance    {:.3}", e.chain.acceptance());
    println!("ESS / N                  {ess:.3}");
}

/// `action.svg`: S_eff = -log q against S for up to 1024 proposals, with the slope-1 line
/// (arXiv:2101.08176 Fig. 4; on the line the flow is exact up to log Z).
pub fn write_action_plot(e: &Ensemble, dir: &Path) -> CliResult<()> {
    let k = e.configs.len().min(1024);
    let pts: Vec<(f64, f64)> = (0..k).map(|i| (e.action[i], -e.logq[i])).collect();
    let title = format!("S_eff = -log q against S ({k} flow samples)");
    plot::write_svg(&dir.join("action.svg"), &plot::scatter_plot(&title, "S(x)", "S_eff(x) = -log q(x)", &pts, true))?;
    Ok(())
}

/// The flags of `latflow sample`, with the run directory created.
pub struct SampleArgs {
    /// Proposals. Default 8192.
    pub n: usize,
    /// Sampling batch. Default 1024.
    pub batch: usize,
    /// Thermalization steps dropped. Default 512.
    pub therm: usize,
    /// Seed. Default 1.
    pub seed: u64,
    /// Output directory. Default: the checkpoint's directory.
    pub dir: PathBuf,
    /// Where the flow runs (`--device cpu|cuda`). Default: the CPU.
    pub device: Device,
}

/// Reads `--device cpu|cuda` (default cpu) and checks that the device can be used, so a
/// missing GPU is reported before any work starts.
pub fn parse_device(a: &Args) -> CliResult<Device> {
    let d = match a.opt::<String>("device")? {
        None => Device::Cpu,
        Some(s) => Device::parse(&s).map_err(|e| CliError(format!("--device: {e}")))?,
    };
    d.check().map_err(|e| CliError(format!("--device {}: {e}", d.name())))?;
    Ok(d)
}

/// `cpu (2 threads)` or `cuda (NVIDIA H100 ..., sm_90)`, for the run's first line.
pub fn device_line(d: Device) -> String {
    match d {
        Device::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
        Device::Cuda => format!("cuda ({})", latflow::tensor::gpu_name().unwrap_or_else(|| "?".into())),
    }
}

/// Moves a flow to `device`, with the error as a CLI error.
pub fn move_flow<P, L: Layer<f32>>(flow: &mut Flow<P, L>, device: Device) -> CliResult<()> {
    flow.to_device(device).map_err(|e| CliError(format!("--device {}: {e}", device.name())))
}

impl SampleArgs {
    /// Reads the flags for sampling the checkpoint at `path`.
    pub fn parse(path: &Path, a: &Args) -> CliResult<SampleArgs> {
        let out: PathBuf = a.get("out", path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf))?;
        Ok(SampleArgs {
            n: a.positive("n", 8192)?,
            batch: a.positive("batch", 1024)?,
            therm: a.get("therm", 512usize)?,
            seed: a.get("seed", 1u64)?,
            device: parse_device(a)?,
            dir: make_dir(&out)?,
        })
    }
}

/// The learning-rate schedule in words: `lr 0.003, cosine to 0.0001` or `lr 0.001, constant`.
pub fn lr_schedule(t: &latflow::flow::train::TrainConfig) -> String {
    match t.lr_final {
        Some(f) => format!("lr {}, cosine to {f}", t.adam.lr),
        None => format!("lr {}, constant", t.adam.lr),
    }
}
