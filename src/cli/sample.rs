//! `latflow sample --checkpoint FILE`: exact sampling from any theory's checkpoint (the
//! theory, couplings and architecture are in its metadata), reported like `train`'s
//! evaluation ensemble, into `--out` or a new `sample-seed{S}` directory next to the
//! checkpoint (never over the run's own summary and plots); `--save` also writes the
//! ensemble (configurations, action, log q, the chain) into `OUT/ensemble/`. `--L` samples
//! at another lattice size than the checkpoint's (a multiple of the flow's mask period:
//! [`checkpoints::open_at`]); the saved ensemble then records `L` and `L_trained`.

use super::report::{self, EnsembleArgs};
use super::{checkpoints, save, Args, CliError, CliResult};
use latflow_comm::Comm;
use latflow_theory::Theory;
use std::path::{Path, PathBuf};

/// `latflow sample ...`.
pub fn run(theories: &[&dyn Theory], rest: &[String], comm: &dyn Comm) -> CliResult<()> {
    let a =
        Args::parse(rest, &["checkpoint", "n", "batch", "therm", "seed", "out", "device", "L"], &["force", "save"])?;
    a.reject_positional("sample")?;
    let path: PathBuf =
        a.path("checkpoint")?.ok_or_else(|| CliError("sample: --checkpoint FILE is required".into()))?;
    let theory = checkpoints::theory_of(theories, &path)?;
    let ck = checkpoints::open_at(theory, &path, a.opt("L")?)?;
    let mut flow = ck.flow_f32()?;
    if comm.is_root() {
        note_size(&ck);
    }
    let s = EnsembleArgs {
        n: a.positive("n", 8192)?,
        batch: a.positive("batch", 1024)?,
        therm: a.get("therm", 512usize)?,
        seed: a.get("seed", 1u64)?,
        dir: PathBuf::new(),
        save: None,
    };
    // next to the checkpoint, never into its run directory: sample-seed{S}, -2, -3, ...
    let parent = path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let parent = if parent.as_os_str().is_empty() { PathBuf::from(".") } else { parent };
    let out = super::output_dir(
        a.path("out")?,
        &parent.join(format!("sample-seed{}", s.seed)),
        a.has("force"),
        "choose another --out",
    )?;
    if s.batch > super::train::MAX_BATCH || s.n > super::train::MAX_PROPOSALS {
        return Err(CliError(format!(
            "sample: --batch at most {} and --n at most {}",
            super::train::MAX_BATCH,
            super::train::MAX_PROPOSALS
        )));
    }
    super::check_memory(&flow, s.batch, 2.0, "sampling with this --batch")?;
    let device = super::parse_device(&a)?;
    super::check_device(ck.setup.as_ref(), device)?;
    if comm.size() > 1 && device == crate::tensor::Device::Cuda {
        return Err(CliError(format!("sample: --device cuda samples on one process, not on {} ranks", comm.size())));
    }
    super::move_flow(&mut flow, device)?;
    let dir = super::ranks::root_dir(comm, &out);
    if comm.is_root() {
        super::make_dir(&dir)?;
    }
    let save = if a.has("save") && comm.is_root() {
        let mut meta = save::flow_metadata(theory, ck.setup.as_ref(), &path, s.n, s.batch, s.therm, s.seed)?;
        meta.extend(checkpoints::size_metadata(&ck));
        Some(save::Target::create(&dir, meta)?)
    } else {
        None
    };
    let s = EnsembleArgs { dir, save, ..s };
    report::evaluate(theory, ck.setup.as_ref(), &flow, &s, None, comm)
}

/// Says on stderr when the flow runs at another lattice size than it was trained at.
pub fn note_size(ck: &checkpoints::Loaded) {
    if let Some(l0) = checkpoints::size_metadata(ck).get("L_trained") {
        eprintln!(
            "note: {} was trained at L = {l0}; running it at L = {} (masks rebuilt, parameters unchanged)",
            ck.path.display(),
            checkpoints::run_size(ck)
        );
    }
}
