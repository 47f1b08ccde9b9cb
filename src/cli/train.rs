//! `latflow train THEORY [FLAGS]` for every theory of the registry, and the default demo:
//! the training loop with progress, `history.csv` and checkpoints, `--resume`, then the
//! evaluation ensemble of [`super::report`]. `--init FILE` starts a new run (step 0, fresh
//! Adam) from a checkpoint's parameters, at its couplings and size or at others (`--L 16`:
//! fine-tuning a flow trained at a smaller size; the masks are rebuilt for `L`).

use super::checkpoints::{self, MODEL_FILE};
use super::{report, Args, CliError, CliResult};
use crate::flow::train::{Objective, StepMetrics, TapeAction, TrainConfig, TrainError, Trainer};
use crate::io::plot;
use crate::tensor::{Device, Var};
use crate::theory::{Param, Params, Setup, Theory};
use latflow_comm::Comm;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Training history, one row per step.
pub const HISTORY_FILE: &str = "history.csv";

/// Largest `--batch` and `--sample-batch`.
pub const MAX_BATCH: usize = 1 << 16;
/// Largest `--n` (proposals of the evaluation ensemble, kept in memory).
pub const MAX_PROPOSALS: usize = 1 << 24;
/// Largest `--steps`.
pub const MAX_STEPS: usize = 1 << 32;

/// Flags every `latflow train THEORY` accepts besides the theory's parameters.
pub const COMMON_TRAIN_FLAGS: &[&str] = &[
    "batch",
    "steps",
    "lr",
    "lr-final",
    "seed",
    "out",
    "era",
    "n",
    "sample-batch",
    "therm",
    "resume",
    "init",
    "device",
];

/// The theory-independent settings of a training run.
#[derive(Clone, Debug)]
pub struct TrainArgs {
    /// Optimizer and schedule.
    pub train: TrainConfig,
    /// Steps between progress lines and checkpoints.
    pub era: usize,
    /// Run directory.
    pub out: PathBuf,
    /// Proposals for the evaluation ensemble. Default 8192.
    pub n: usize,
    /// Batch for sampling. Default 1024.
    pub sample_batch: usize,
    /// Thermalization steps dropped from the Metropolis chain. Default 512.
    pub therm: usize,
    /// Where training and sampling run (`--device cpu|cuda`). Default: the CPU.
    pub device: Device,
    /// Whether the evaluation ensemble is saved (`--save`, into `OUT/ensemble`).
    pub save: bool,
    /// Metadata the checkpoints carry besides the theory's parameters and the schedule
    /// (`--init`: where the parameters came from). Default empty.
    pub extra_meta: BTreeMap<String, String>,
}

impl TrainArgs {
    /// Reads the common flags over the theory's defaults.
    pub fn parse(a: &Args, theory: &dyn Theory) -> CliResult<TrainArgs> {
        let d = theory.train_defaults();
        let mut r = TrainArgs {
            train: d.train.clone(),
            era: d.era,
            out: PathBuf::from(d.out),
            n: 8192,
            sample_batch: 1024,
            therm: 512,
            device: Device::Cpu,
            save: a.has("save"),
            extra_meta: BTreeMap::new(),
        };
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
        if let Some(f) = r.train.lr_final.filter(|&f| f > r.train.adam.lr) {
            return Err(CliError(format!(
                "--lr-final {f} is above the starting learning rate --lr {}: the schedule decays",
                r.train.adam.lr
            )));
        }
        r.train.seed = a.get("seed", d.train.seed)?;
        r.era = a.positive("era", d.era)?;
        r.n = a.positive("n", r.n)?;
        r.sample_batch = a.positive("sample-batch", r.sample_batch)?;
        r.therm = a.get("therm", r.therm)?;
        r.device = super::parse_device(a)?;
        for (flag, v, max) in [
            ("batch", r.train.batch, MAX_BATCH),
            ("sample-batch", r.sample_batch, MAX_BATCH),
            ("n", r.n, MAX_PROPOSALS),
            ("steps", r.train.steps, MAX_STEPS),
        ] {
            if v > max {
                return Err(CliError(format!("--{flag} {v} is above the limit of {max}")));
            }
        }
        if r.therm + 2 > r.n {
            return Err(CliError(format!(
                "--therm {} must leave at least 2 chain steps of the --n {} proposals",
                r.therm, r.n
            )));
        }
        Ok(r)
    }
}

/// The flags a theory's parameters add to `train`.
pub fn theory_flags(theory: &dyn Theory) -> Vec<Param> {
    theory.params().into_iter().filter(Param::in_checkpoint).collect()
}

/// The parameter flags given on the command line, by flag name.
pub fn given_params(a: &Args, params: &[Param]) -> CliResult<BTreeMap<String, String>> {
    let mut given = BTreeMap::new();
    for p in params {
        if let Some(v) = a.opt::<String>(p.flag)? {
            given.insert(p.flag.to_string(), v);
        }
    }
    Ok(given)
}

/// `latflow train THEORY ...` (`rest` starts with the theory's name).
pub fn run(theories: &[&dyn Theory], rest: &[String], comm: &dyn Comm) -> CliResult<()> {
    let theory = super::pick_theory(theories, rest.first(), "train")?;
    let params = theory_flags(theory);
    let flags: Vec<&str> = COMMON_TRAIN_FLAGS.iter().copied().chain(params.iter().map(|p| p.flag)).collect();
    let a = Args::parse(&rest[1..], &flags, &["quiet", "force", "save"])?;
    a.reject_positional("train")?;
    let mut common = TrainArgs::parse(&a, theory)?;
    let given = given_params(&a, &params)?;
    if let Some(p) = a.path("init")? {
        if a.path("resume")?.is_some() {
            return Err(CliError(
                "--init starts a new run from a checkpoint's parameters, --resume continues one: give one of them"
                    .into(),
            ));
        }
        let (setup, trainer) = init(theory, &p, &given, &mut common, &a)?;
        return execute(theory, setup.as_ref(), &common, trainer, a.has("quiet"), comm);
    }
    let (setup, trainer) = match a.path("resume")? {
        None => {
            let mut setup = theory.setup(&Params::from_flags(&theory.params(), &given)).map_err(CliError)?;
            let explicit = a.path("out")?;
            let advice = match &explicit {
                Some(d) if d.join(MODEL_FILE).exists() => {
                    format!("choose another --out, or continue it with --resume {}", d.join(MODEL_FILE).display())
                }
                _ => "choose another --out".to_string(),
            };
            common.out = super::output_dir(explicit, &common.out, a.has("force"), &advice)?;
            check_sizes_early(theory, setup.as_ref(), &given, &common)?;
            if let Some(chosen) = setup.choose_auto().map_err(CliError)? {
                say(comm, || chosen);
            }
            let flow = setup.flow_f32(&mut StdRng::seed_from_u64(common.train.seed)).map_err(CliError)?;
            (setup, Trainer::new(flow, common.train.clone()))
        }
        Some(p) => {
            // a resumed run continues in the checkpoint's directory unless --out says otherwise
            let own = p.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            let own = if own.as_os_str().is_empty() { PathBuf::from(".") } else { own };
            common.out = match a.path("out")? {
                Some(o) if !same_dir(&o, &own) => {
                    super::output_dir(Some(o), &own, a.has("force"), "choose another --out")?
                }
                _ => own.clone(),
            };
            // --save in the run's own directory would replace the ensemble saved before
            if a.has("save") && !a.has("force") && super::save::holds_chunks(&common.out) {
                return Err(CliError(format!(
                    "{} holds the ensemble saved by this run before; --save would replace it: give --force, \
                     or --out another directory",
                    common.out.join(super::save::ENSEMBLE_DIR).display()
                )));
            }
            adopt_schedule(&a, &p, &mut common)?;
            let resumed = resume(theory, &p, &given, &common)?;
            // a run continued elsewhere starts with the history that led to its checkpoint
            // (train_loop drops the rows after the checkpoint's step)
            let history = own.join(HISTORY_FILE);
            if !same_dir(&common.out, &own) && history.exists() && comm.is_root() {
                let to = super::make_dir(&common.out)?.join(HISTORY_FILE);
                std::fs::copy(&history, &to)
                    .map_err(|e| CliError(format!("cannot copy {} to {}: {e}", history.display(), to.display())))?;
            }
            resumed
        }
    };
    execute(theory, setup.as_ref(), &common, trainer, a.has("quiet"), comm)
}

/// A resumed run continues the checkpoint's seed (the per-step RNG), batch and learning-rate
/// schedule unless the command line sets them.
fn adopt_schedule(a: &Args, path: &Path, common: &mut TrainArgs) -> CliResult<()> {
    let st = latflow_io::safetensors::SafeTensors::read(path).map_err(|e| CliError(e.to_string()))?;
    let m = &st.metadata;
    if a.opt::<String>("seed")?.is_none() {
        if let Some(v) = m.get("seed") {
            common.train.seed = checkpoints::meta_value(path, m, "seed").map_err(|_| bad(path, "seed", v))?;
        }
    }
    if a.opt::<String>("batch")?.is_none() {
        if let Some(v) = m.get("batch") {
            let b: usize = checkpoints::meta_value(path, m, "batch").map_err(|_| bad(path, "batch", v))?;
            if b == 0 || b > MAX_BATCH {
                return Err(bad(path, "batch", v));
            }
            common.train.batch = b;
        }
    }
    if a.opt::<String>("lr")?.is_none() {
        if let Some(v) = m.get("lr") {
            let lr: f64 = checkpoints::meta_value(path, m, "lr").map_err(|_| bad(path, "lr", v))?;
            if !(lr.is_finite() && lr > 0.0) {
                return Err(bad(path, "lr", v));
            }
            common.train.adam.lr = lr;
        }
    }
    if a.opt::<String>("lr-final")?.is_none() {
        match m.get("lr_final").map(String::as_str) {
            Some("none") => common.train.lr_final = None,
            Some(v) => {
                let f: f64 = v.parse().map_err(|_| bad(path, "lr_final", v))?;
                if !(f.is_finite() && f > 0.0) {
                    return Err(bad(path, "lr_final", v));
                }
                common.train.lr_final = Some(f);
            }
            None => {}
        }
    }
    Ok(())
}

fn bad(path: &Path, key: &str, v: &str) -> CliError {
    CliError(format!("{}: metadata entry {key:?} = {v:?} is not valid", path.display()))
}

/// Whether two paths name the same directory (both may not exist yet).
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// The model, optimizer state and step of the checkpoint `path` being resumed. The run
/// continues the checkpoint's theory, couplings and architecture: a parameter flag that
/// contradicts them is an error (otherwise the run would train on another action and save
/// metadata that no longer describes the tensors).
fn resume(
    theory: &dyn Theory,
    path: &Path,
    given: &BTreeMap<String, String>,
    common: &TrainArgs,
) -> CliResult<(Box<dyn Setup>, Trainer<f32>)> {
    let ck = checkpoints::open(theory, path)?;
    // the cheap check first: the flags' check below may run `--prior free`'s pilot
    let step: usize = checkpoints::meta_value(path, &ck.meta, "step")?;
    if step >= common.train.steps {
        return Err(CliError(format!(
            "{} is at step {step}, nothing to do for --steps {}",
            path.display(),
            common.train.steps
        )));
    }
    for p in theory.params().iter().filter(|p| given.contains_key(p.flag)) {
        let mut changed = ck.params.clone();
        changed.set(p.key, &given[p.flag]);
        let mut other = theory.setup(&changed).map_err(CliError)?;
        let stored = ck.setup.params().get(p.key).cloned().unwrap_or_default();
        // `--prior free` names the mass latflow chose for this checkpoint (`free:M2`; the
        // pilot is deterministic), so it does not contradict it; the pilot runs only for a
        // checkpoint whose value has that form (not for `normal`, nor where it cannot move)
        let chosen_form = other.params().get(p.key).is_some_and(|v| stored.starts_with(&format!("{v}:")));
        if chosen_form && other.choose_auto().is_err() {
            other = theory.setup(&changed).map_err(CliError)?;
        }
        if other.params().get(p.key) != Some(&stored) {
            let hint = if p.group == latflow_theory::Group::Flow {
                ""
            } else {
                " (or start a new run from its parameters with --init instead of --resume)"
            };
            return Err(CliError(format!(
                "--{} contradicts the checkpoint {} being resumed ({} = {stored}); drop the flag{hint}",
                p.flag,
                path.display(),
                p.flag
            )));
        }
    }
    let flow = ck.flow_f32()?;
    let mut trainer = Trainer::new(flow, common.train.clone());
    trainer.step = step;
    checkpoints::restore_optimizer(&mut trainer, path, &ck.meta)?;
    Ok((ck.setup, trainer))
}

/// A new run (step 0, Adam from zero moments, the command line's schedule) whose flow starts
/// from the parameters of the checkpoint `path` (`--init`). Lattice size and couplings may
/// differ from the checkpoint's (fine-tuning at `--L 16` a flow trained at 8, or at another
/// `--beta`); the architecture may not (the parameters would not fit or not mean the same).
/// The checkpoints record `init` (the file), `init_L` and `init_step`.
fn init(
    theory: &dyn Theory,
    path: &Path,
    given: &BTreeMap<String, String>,
    common: &mut TrainArgs,
    a: &Args,
) -> CliResult<(Box<dyn Setup>, Trainer<f32>)> {
    let stored = checkpoints::open(theory, path)?;
    for p in theory.params().iter().filter(|p| p.group == latflow_theory::Group::Flow && given.contains_key(p.flag)) {
        let mut changed = stored.params.clone();
        changed.set(p.key, &given[p.flag]);
        let other = theory.setup(&changed).map_err(CliError)?;
        let value = stored.setup.params().get(p.key).cloned().unwrap_or_default();
        if other.params().get(p.key) != Some(&value) {
            return Err(CliError(format!(
                "--{} changes the architecture of {} ({} = {value}); --init keeps it: drop the flag",
                p.flag,
                path.display(),
                p.flag
            )));
        }
    }
    let ck = checkpoints::open_with(theory, path, given)?;
    let flow = ck.flow_f32()?;
    super::sample::note_size(&ck);
    common.out = super::output_dir(a.path("out")?, &common.out, a.has("force"), "choose another --out")?;
    // the new run's model would replace the one it starts from, even with --force
    let target = common.out.join(MODEL_FILE);
    if target.canonicalize().ok().is_some_and(|t| path.canonicalize().ok() == Some(t)) {
        return Err(CliError(format!(
            "--out {} holds the --init checkpoint {}: the new run would overwrite the model it starts from; \
             choose another --out",
            common.out.display(),
            path.display()
        )));
    }
    common.extra_meta.insert("init".into(), path.display().to_string());
    if let Some(l0) = ck.l_trained {
        common.extra_meta.insert("init_L".into(), l0.to_string());
    }
    if let Some(step) = ck.meta.get("step") {
        common.extra_meta.insert("init_step".into(), step.clone());
    }
    Ok((ck.setup, Trainer::new(flow, common.train.clone())))
}

/// The memory the flow's activations take in training and sampling, and the device.
fn check_sizes(setup: &dyn Setup, flow: &crate::flow::model::Flow<f32>, common: &TrainArgs) -> CliResult<()> {
    let shard = common.train.batch.min(crate::flow::train::SHARD_SIZE) * rayon::current_num_threads();
    super::check_memory(flow, shard, 4.0, "training")?;
    super::check_memory(flow, common.sample_batch, 2.0, "sampling with this --sample-batch")?;
    super::check_device(setup, common.device)
}

/// [`check_sizes`] before [`Setup::choose_auto`], which may take seconds (phi^4's `--prior
/// free` runs a pilot HMC: 9 s at 256x256, where the activations are then refused at once):
/// on a flow of the same architecture with the normal prior (the prior holds no activations).
/// A probe that cannot be built checks nothing here (the real flow's error comes later).
fn check_sizes_early(
    theory: &dyn Theory,
    setup: &dyn Setup,
    given: &BTreeMap<String, String>,
    common: &TrainArgs,
) -> CliResult<()> {
    let mut probe = given.clone();
    if theory.params().iter().any(|p| p.flag == "prior") {
        probe.insert("prior".into(), "normal".into());
    }
    let flow = theory
        .setup(&Params::from_flags(&theory.params(), &probe))
        .and_then(|s| s.flow_f32(&mut StdRng::seed_from_u64(0)));
    match flow {
        Ok(flow) => check_sizes(setup, &flow, common),
        Err(_) => Ok(()),
    }
}

/// Trains (from `trainer.step`), writes the run directory, then draws and reports the
/// evaluation ensemble. The demo enters here. On several ranks ([`super::ranks`]) every rank
/// trains and samples, rank 0 prints and writes.
pub fn execute(
    theory: &dyn Theory,
    setup: &dyn Setup,
    common: &TrainArgs,
    mut trainer: Trainer<f32>,
    quiet: bool,
    comm: &dyn Comm,
) -> CliResult<()> {
    if comm.size() > 1 && common.device == Device::Cuda {
        return Err(CliError(format!(
            "--device cuda trains on one process, not on {} ranks (docs/scaling.md has the multi-GPU design)",
            comm.size()
        )));
    }
    if setup.mixture() {
        // reverse-KL through the Z2 mixture (latflow_flow::z2): needs the prior on the tape
        Objective::Z2Mixture.check(&trainer.flow).map_err(|e| CliError(format!("--mixture z2: {e}")))?;
        trainer.objective = Objective::Z2Mixture;
    }
    check_sizes(setup, &trainer.flow, common)?;
    super::move_flow(&mut trainer.flow, common.device)?;
    let dir = super::ranks::root_dir(comm, &common.out);
    let quiet = quiet || !comm.is_root();
    if comm.is_root() {
        super::make_dir(&dir)?;
    }
    let ranks = if comm.size() > 1 { format!(" x {}", comm.describe()) } else { String::new() };
    say(comm, || {
        format!(
            "training {} flow: {} | {} | batch {}, {} steps, {}, seed {} | {}{ranks}",
            theory.title(),
            setup.describe(),
            setup.describe_flow(),
            common.train.batch,
            common.train.steps,
            lr_schedule(&common.train),
            common.train.seed,
            super::device_line(trainer.flow.device())
        )
    });
    let mut meta = setup.params();
    meta.insert("theory".into(), theory.name().into());
    meta.insert("seed".into(), common.train.seed.to_string());
    meta.insert("batch".into(), common.train.batch.to_string());
    meta.insert("lr".into(), common.train.adam.lr.to_string());
    meta.insert("lr_final".into(), common.train.lr_final.map_or_else(|| "none".to_string(), |f| f.to_string()));
    meta.extend(common.extra_meta.clone());
    let action = |x: &Var<f32>| setup.tape_action(x);
    let t0 = Instant::now();
    train_loop(&mut trainer, &action, common.era, &dir, &meta, quiet, comm)?;
    let train_s = t0.elapsed().as_secs_f64();
    if comm.is_root() {
        plot_history(&dir)?;
    }
    let save = if common.save && comm.is_root() {
        let (n, b, t, seed) = (common.n, common.sample_batch, common.therm, common.train.seed);
        let meta = super::save::flow_metadata(theory, setup, &dir.join(MODEL_FILE), n, b, t, seed)?;
        Some(super::save::Target::create(&dir, meta)?)
    } else {
        None
    };
    let s = report::EnsembleArgs {
        n: common.n,
        batch: common.sample_batch,
        therm: common.therm,
        seed: common.train.seed,
        dir,
        save,
    };
    report::evaluate(theory, setup, &trainer.flow, &s, Some(train_s), comm)
}

/// Prints `line()` on stderr from rank 0 only.
fn say(comm: &dyn Comm, line: impl FnOnce() -> String) {
    if comm.is_root() {
        eprintln!("{}", line());
    }
}

/// Trains for the remaining steps up to `trainer.config.steps`, printing one progress
/// line per era on stderr, appending to `history.csv`, and writing the checkpoint at
/// the end of every era. A non-finite loss stops with an error after saving the last
/// good parameters. On several ranks each step's shards are spread over them
/// ([`Trainer::step_over`]) and rank 0 alone writes the history and the checkpoints.
pub fn train_loop<A: TapeAction<f32>>(
    trainer: &mut Trainer<f32>,
    action: &A,
    era: usize,
    dir: &Path,
    meta: &BTreeMap<String, String>,
    quiet: bool,
    comm: &dyn Comm,
) -> CliResult<Vec<StepMetrics>> {
    let total = trainer.config.steps;
    let fault = super::ranks::fault_at()?;
    let mut hist = if comm.is_root() { Some(open_history(dir, trainer.step)?) } else { None };
    let t0 = Instant::now();
    let start = trainer.step;
    let mut out = Vec::new();
    let (mut era_loss, mut era_ess, mut era_n) = (0.0, 0.0, 0usize);
    while trainer.step < total {
        super::ranks::maybe_fail(comm, fault, trainer.step + 1);
        let m = match trainer.step_over(action, comm) {
            Ok(m) => m,
            Err(e) => {
                // NonFinite: the trainer holds the last good step's state; Diverged: it does
                // not, and the last era's checkpoint stays (every rank has the same error)
                let saved = if matches!(e, TrainError::NonFinite { .. }) && trainer.step > 0 {
                    if comm.is_root() {
                        checkpoints::save(trainer, dir, meta)?;
                    }
                    // the other ranks abort the job with this error: not before it is saved
                    comm.barrier();
                    true
                } else {
                    dir.join(MODEL_FILE).exists()
                };
                let kept = if saved {
                    format!("last good checkpoint: {}", dir.join(MODEL_FILE).display())
                } else {
                    "no checkpoint was written".to_string()
                };
                return Err(CliError(format!("training stopped: {e}; {kept}")));
            }
        };
        let secs = t0.elapsed().as_secs_f64();
        if let Some(hist) = hist.as_mut() {
            writeln!(hist, "{},{},{},{},{},{},{:.3}", m.step, m.loss, m.ess, m.logp, m.logq, m.lr, secs)?;
        }
        era_loss += m.loss;
        era_ess += m.ess;
        era_n += 1;
        out.push(m);
        if m.step % era == 0 || m.step == total {
            if comm.is_root() {
                checkpoints::save(trainer, dir, meta)?;
            }
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

/// Opens `dir`'s history for the steps after `step` (a new one at step 0), after removing the
/// temporary files an interrupted write left there.
fn open_history(dir: &Path, step: usize) -> CliResult<std::fs::File> {
    let hist_path = dir.join(HISTORY_FILE);
    checkpoints::clean_temp_files(dir);
    let fresh = step == 0 || !hist_path.exists();
    if !fresh {
        truncate_history(&hist_path, step)?;
    }
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
    Ok(hist)
}

/// Keeps the header and the rows of steps up to `step` (a resumed run continues from its
/// checkpoint's step: rows written after it, before an interruption, are dropped).
fn truncate_history(path: &Path, step: usize) -> CliResult<()> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError(format!("cannot read {}: {e}", path.display())))?;
    let mut keep = String::new();
    for (i, line) in text.lines().enumerate() {
        let row_step = line.split(',').next().and_then(|v| v.parse::<usize>().ok());
        if i == 0 || row_step.is_some_and(|k| k <= step) {
            keep += line;
            keep.push('\n');
        }
    }
    if keep.len() != text.len() {
        latflow_io::csv::write_atomic(path, keep.as_bytes()).map_err(CliError)?;
    }
    Ok(())
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
    println!("wrote {}/{{{MODEL_FILE}, optimizer-step*.safetensors, {HISTORY_FILE}, training.svg}}", dir.display());
    Ok(())
}

/// The learning-rate schedule in words: `lr 0.003, cosine to 0.0001` or `lr 0.001, constant`.
pub fn lr_schedule(t: &TrainConfig) -> String {
    match t.lr_final {
        Some(f) => format!("lr {}, cosine to {f}", t.adam.lr),
        None => format!("lr {}, constant", t.adam.lr),
    }
}
