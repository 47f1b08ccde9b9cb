//! Checkpoints as the tools use them: a run directory's `model.safetensors` (the flow's
//! parameters and buffers, the run's theory and parameters in the metadata) and
//! `optimizer.safetensors` (Adam's moments, for `--resume`), for any theory of the registry.

use super::{CliError, CliResult};
use crate::flow::checkpoint;
use crate::flow::model::Flow;
use crate::flow::train::Trainer;
use crate::io::safetensors::{CheckpointError, SafeTensors};
use crate::tensor::Float;
use crate::theory::{Params, Setup, Theory};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::path::Path;

/// The model file inside a run directory.
pub const MODEL_FILE: &str = "model.safetensors";
/// Adam state of checkpoints written before 2026-11-30 (one file, overwritten each era).
pub const LEGACY_OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// Metadata key of the model file naming its optimizer file.
pub const OPTIMIZER_KEY: &str = "optimizer";

/// Adam state next to the model, one file per saved step (kept out of the model file so
/// that it stays a plain PyTorch `state_dict`).
pub fn optimizer_file(step: usize) -> String {
    format!("optimizer-step{step}.safetensors")
}

/// A checkpoint read and validated against its theory.
pub struct Loaded {
    /// The file.
    pub path: std::path::PathBuf,
    /// Its tensors.
    pub st: SafeTensors,
    /// Its metadata.
    pub meta: BTreeMap<String, String>,
    /// The theory's parameters from the metadata.
    pub params: Params,
    /// The theory at those parameters.
    pub setup: Box<dyn Setup>,
    /// The theory at the checkpoint's own parameters when the run is at another lattice
    /// size ([`open_at`]); `None` when it runs at the size it was trained at.
    pub trained: Option<Box<dyn Setup>>,
    /// The lattice size stored in the checkpoint (metadata entry `L`), if the theory has one.
    pub l_trained: Option<usize>,
}

impl Loaded {
    /// The flow the checkpoint describes, in `T`, with its parameters (widened exactly to
    /// f64 when `T` is f64).
    ///
    /// At another lattice size ([`open_at`]) the flow is first built at the checkpoint's own
    /// size and loaded there (so its mask buffers are checked against that size's masks),
    /// then built again at the run's size (masks and prior for `L`) with the same
    /// parameters ([`Flow::copy_params_from`]); `L` must be a multiple of the masks'
    /// period ([`Flow::period`]).
    pub fn flow<T: Float>(&self, build: impl Fn(&dyn Setup) -> Result<Flow<T>, String>) -> CliResult<Flow<T>> {
        let stored = self.trained.as_deref().unwrap_or(self.setup.as_ref());
        let mut flow = build(stored).map_err(|e| self.err(e))?;
        checkpoint::load_params(&self.st, &mut flow).map_err(|e| self.err(e))?;
        let Some(l0) = self.l_trained.filter(|_| self.trained.is_some()) else { return Ok(flow) };
        let l: usize = self.params.get("L").map_err(CliError)?;
        let period = flow.period();
        if !l.is_multiple_of(period) {
            // the valid sizes next to l (only the period itself below it: "use L = 4", not "4 or 4")
            let (below, above) = ((l / period) * period, (l / period + 1) * period);
            let nearest = if below == 0 { format!("{above}") } else { format!("{below} or {above}") };
            return Err(CliError(format!(
                "--L {l} is not a multiple of {period}, the period of this flow's masks ({} was trained at L = {l0}; \
                 use L = {nearest})",
                self.path.display(),
            )));
        }
        let mut at = build(self.setup.as_ref()).map_err(|e| CliError(format!("--L {l}: {e}")))?;
        at.copy_params_from(&flow).map_err(|e| self.err(e))?;
        Ok(at)
    }

    /// The f32 flow (training, sampling).
    pub fn flow_f32(&self) -> CliResult<Flow<f32>> {
        self.flow(|s| s.flow_f32(&mut StdRng::seed_from_u64(0)))
    }

    /// The f64 flow (`apply` on f64 inputs).
    pub fn flow_f64(&self) -> CliResult<Flow<f64>> {
        self.flow(|s| s.flow_f64(&mut StdRng::seed_from_u64(0)))
    }

    fn err(&self, e: impl std::fmt::Display) -> CliError {
        CliError(format!("{}: {e}", self.path.display()))
    }
}

/// The theory named in a checkpoint's metadata.
pub fn theory_of<'a>(theories: &[&'a dyn Theory], path: &Path) -> CliResult<&'a dyn Theory> {
    let st = SafeTensors::read(path).map_err(|e| CliError(e.to_string()))?;
    let name: String = meta_value(path, &st.metadata, "theory")?;
    crate::theory::find(theories, &name)
        .ok_or_else(|| CliError(format!("{}: unknown theory {name:?} in checkpoint", path.display())))
}

/// Reads a checkpoint that must be of `theory`, with its parameters validated.
pub fn open(theory: &dyn Theory, path: &Path) -> CliResult<Loaded> {
    // SafeTensors::read names the file in its errors.
    let st = SafeTensors::read(path).map_err(|e| CliError(e.to_string()))?;
    let meta = st.metadata.clone();
    let found: String = meta_value(path, &meta, "theory")?;
    if found != theory.name() {
        return Err(CliError(format!("{}: a {found} checkpoint, expected {}", path.display(), theory.name())));
    }
    let file = path.display().to_string();
    let params = Params::from_metadata(&theory.params(), &meta, &file).map_err(CliError)?;
    let setup = theory.setup(&params).map_err(|e| {
        if e.starts_with(&file) {
            CliError(e)
        } else {
            CliError(format!("{file}: {e}"))
        }
    })?;
    let l_trained = params.raw("L").and_then(|v| v.trim().parse().ok());
    Ok(Loaded { path: path.to_path_buf(), st, meta, params, setup, trained: None, l_trained })
}

/// [`open`], run at lattice size `l` when given: the theory's setup at `l` (every other
/// parameter from the checkpoint), with the checkpoint's own setup kept in
/// [`Loaded::trained`] to load the flow ([`Loaded::flow`]). `l` equal to the checkpoint's
/// size is the same as none.
///
/// # Errors
/// As [`open`]; if the theory has no lattice size `L`; if the setup refuses `l` (the error
/// names `--L`).
pub fn open_at(theory: &dyn Theory, path: &Path, l: Option<usize>) -> CliResult<Loaded> {
    let over = l.map(|l| BTreeMap::from([("L".to_string(), l.to_string())])).unwrap_or_default();
    open_with(theory, path, &over)
}

/// [`open`] with some parameters replaced (`overrides` by flag name, e.g. `L`, `beta`):
/// the setup is the theory's at the checkpoint's values with these replaced, the
/// checkpoint's own setup is kept in [`Loaded::trained`] to load the flow. Overrides equal
/// to the stored values change nothing.
///
/// # Errors
/// As [`open`]; if `L` is overridden and the theory has none; if the setup refuses the new
/// values (the errors name the flags).
pub fn open_with(theory: &dyn Theory, path: &Path, overrides: &BTreeMap<String, String>) -> CliResult<Loaded> {
    let mut ck = open(theory, path)?;
    if overrides.contains_key("L") && ck.l_trained.is_none() {
        return Err(CliError(format!("--L: the {} theory has no lattice size parameter L", theory.name())));
    }
    // the checkpoint's values as flags, with the overrides: errors then name the flags
    let mut given: BTreeMap<String, String> = theory
        .params()
        .iter()
        .filter_map(|p| ck.params.raw(p.key).map(|v| (p.flag.to_string(), v.to_string())))
        .collect();
    given.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
    let params = Params::from_flags(&theory.params(), &given);
    let setup = theory.setup(&params).map_err(CliError)?;
    if setup.params() == ck.setup.params() {
        return Ok(ck);
    }
    ck.trained = Some(std::mem::replace(&mut ck.setup, setup));
    ck.params = params;
    Ok(ck)
}

/// The lattice size the run is at (the setup's canonical value of `L`).
pub fn run_size(ck: &Loaded) -> String {
    ck.setup.params().get("L").cloned().unwrap_or_default()
}

/// The metadata entries that say at which size a flow was trained and at which it runs:
/// `L_trained` (the checkpoint's `L`) when the run is at another size, nothing otherwise
/// (then `L` is both).
pub fn size_metadata(ck: &Loaded) -> BTreeMap<String, String> {
    match ck.l_trained {
        Some(l0) if ck.setup.params().get("L") != Some(&l0.to_string()) => {
            BTreeMap::from([("L_trained".to_string(), l0.to_string())])
        }
        _ => BTreeMap::new(),
    }
}

/// A checkpoint metadata entry parsed as `V`; the error names the file and the key.
pub fn meta_value<V: std::str::FromStr>(path: &Path, meta: &BTreeMap<String, String>, key: &str) -> CliResult<V> {
    checkpoint::meta_get(meta, key).map_err(|e| CliError(format!("{}: {e}", path.display())))
}

/// Writes Adam's state, then the model checkpoint with the run's metadata, its step and the
/// name of that optimizer file, then removes older optimizer files. Both writes are atomic
/// (temp file + rename) and the model's rename is the commit point: a kill at any moment
/// leaves a model whose optimizer file exists and is of the same step.
pub fn save(trainer: &Trainer<f32>, dir: &Path, meta: &BTreeMap<String, String>) -> CliResult<()> {
    let opt_name = optimizer_file(trainer.step);
    let mut meta = meta.clone();
    meta.insert("step".into(), trainer.step.to_string());
    meta.insert(OPTIMIZER_KEY.into(), opt_name.clone());
    let mut opt = SafeTensors::default();
    let (m, v) = trainer.adam.moments();
    for ((name, t), (m, v)) in trainer.flow.named_params().into_iter().zip(m.iter().zip(&v)) {
        opt.insert_f32(format!("exp_avg.{name}"), t.shape(), m);
        opt.insert_f32(format!("exp_avg_sq.{name}"), t.shape(), v);
    }
    opt.metadata.insert("adam_step".into(), trainer.adam.steps().to_string());
    opt.metadata.insert("step".into(), trainer.step.to_string());
    opt.write(&dir.join(&opt_name)).map_err(|e| CliError(e.to_string()))?;
    checkpoint::save(&dir.join(MODEL_FILE), &trainer.flow, &meta).map_err(|e| CliError(e.to_string()))?;
    // the model now points at opt_name: older optimizer files are no longer needed
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let old =
            name == LEGACY_OPTIMIZER_FILE || (name.starts_with("optimizer-step") && name.ends_with(".safetensors"));
        if old && name != opt_name {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(())
}

/// Removes temporary files that an interrupted write left in `dir` (`.NAME.tmpPID`).
pub fn clean_temp_files(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let tmp = name.starts_with('.')
            && name
                .rsplit_once(".tmp")
                .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
        if tmp {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Restores Adam's moments from the optimizer file the checkpoint `model` names (or, for
/// older checkpoints, `optimizer.safetensors` next to it), if it was written at the same
/// step (otherwise Adam restarts, with a note on stderr).
pub fn restore_optimizer(trainer: &mut Trainer<f32>, model: &Path, meta: &BTreeMap<String, String>) -> CliResult<()> {
    let name = meta.get(OPTIMIZER_KEY).map_or(LEGACY_OPTIMIZER_FILE, String::as_str);
    if name.contains('/') || name.contains('\\') || name.starts_with('.') {
        return Err(CliError(format!(
            "{}: metadata entry \"optimizer\" = {name:?} is not a file name",
            model.display()
        )));
    }
    let path = model.with_file_name(name);
    let Ok(opt) = SafeTensors::read(&path) else {
        eprintln!("note: no readable {} next to the checkpoint; Adam restarts from zero moments", path.display());
        return Ok(());
    };
    if opt.metadata.get("step") != Some(&trainer.step.to_string()) {
        eprintln!("note: {} is not from step {}; Adam restarts from zero moments", path.display(), trainer.step);
        return Ok(());
    }
    let err = |e: CheckpointError| CliError(format!("{}: {e}", path.display()));
    let (mut m, mut v) = (Vec::new(), Vec::new());
    for (name, t) in trainer.flow.named_params() {
        m.push(opt.get_f32_shaped(&format!("exp_avg.{name}"), t.shape()).map_err(err)?);
        v.push(opt.get_f32_shaped(&format!("exp_avg_sq.{name}"), t.shape()).map_err(err)?);
    }
    let adam_step: u64 = checkpoint::meta_get(&opt.metadata, "adam_step").map_err(err)?;
    trainer.adam.restore(adam_step, m, v);
    Ok(())
}
