//! `--save`: where and with which metadata `sample`, `train` and `hmc` write their
//! ensembles (the format: [`latflow_io::ensemble`]), and the HMC chains' sink.
//!
//! Every chunk's metadata says what produced it: the theory and its parameters (the keys
//! of a checkpoint's metadata, so `measure` rebuilds the same setup), the sampler and its
//! settings and seed, the latflow version, and for flow ensembles the checkpoint's path and
//! SHA-256.

use super::{CliError, CliResult};
use crate::io::ensemble::{write_manifest, ChunkWriter, Layout, MANIFEST_FILE};
use crate::io::safetensors::Dtype;
use crate::sampler::hmc::{ChainSink, RunConfig, TrajectoryInfo};
use crate::theory::{Setup, Theory};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The ensemble's directory inside a run directory.
pub const ENSEMBLE_DIR: &str = "ensemble";

/// Metadata key naming the sampler that produced an ensemble.
pub const SAMPLER_KEY: &str = "sampler";
/// [`SAMPLER_KEY`] of a flow's independence-Metropolis ensemble.
pub const SAMPLER_FLOW: &str = "flow-independence-metropolis";
/// [`SAMPLER_KEY`] of an HMC ensemble.
pub const SAMPLER_HMC: &str = "hmc";

/// Where an ensemble goes and the metadata of its chunks.
#[derive(Clone, Debug)]
pub struct Target {
    /// The ensemble directory (created, emptied of old chunks).
    pub dir: PathBuf,
    /// The run's metadata.
    pub metadata: BTreeMap<String, String>,
}

/// Whether `run_dir` holds chunks of a saved ensemble (which [`Target::create`] removes).
pub fn holds_chunks(run_dir: &Path) -> bool {
    std::fs::read_dir(run_dir.join(ENSEMBLE_DIR)).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.starts_with("chunk-s") && name.ends_with(".safetensors")
        })
    })
}

impl Target {
    /// Creates `run_dir/ensemble` and removes the chunks (and temporary chunk files) of an
    /// earlier ensemble there (the caller has checked that the run directory may be
    /// overwritten).
    pub fn create(run_dir: &Path, metadata: BTreeMap<String, String>) -> CliResult<Target> {
        let dir = run_dir.join(ENSEMBLE_DIR);
        std::fs::create_dir_all(&dir)
            .map_err(|e| CliError(format!("cannot create ensemble directory {}: {e}", dir.display())))?;
        let entries = std::fs::read_dir(&dir).map_err(|e| CliError(format!("cannot read {}: {e}", dir.display())))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            // chunks, the temporary files of chunks a killed run was writing, the manifest
            // of a finished one and its temporary file
            if name.starts_with("chunk-s") && name.ends_with(".safetensors")
                || name.starts_with(".chunk-s")
                || name == MANIFEST_FILE
                || name.starts_with(&format!(".{MANIFEST_FILE}.tmp"))
            {
                std::fs::remove_file(entry.path())
                    .map_err(|e| CliError(format!("cannot remove old chunk {}: {e}", entry.path().display())))?;
            }
        }
        Ok(Target { dir, metadata })
    }

    /// Writes the finished ensemble's manifest (every rank's chunks complete; rank 0 calls
    /// it once the run is done): [`crate::io::ensemble::write_manifest`].
    ///
    /// # Errors
    /// A chunk that does not read back, or the write's error.
    pub fn seal(&self) -> CliResult<usize> {
        write_manifest(&self.dir).map_err(|e| CliError(format!("the ensemble's manifest: {e}")))
    }

    /// A writer of stream `stream`.
    pub fn writer(&self, stream: usize, layout: Layout) -> ChunkWriter {
        ChunkWriter::new(&self.dir, stream, layout, self.metadata.clone())
    }

    /// A writer of stream `stream` buffering at most about `bytes` (many streams at once).
    pub fn writer_within(&self, stream: usize, layout: Layout, bytes: usize) -> ChunkWriter {
        let per = bytes.min(crate::io::ensemble::CHUNK_BYTES) / (layout.dof() * layout.dtype.size()).max(1);
        ChunkWriter::with_chunk_len(&self.dir, stream, layout, self.metadata.clone(), per.max(1))
    }
}

/// Chunks of a flow ensemble: `x` in f32 (the flow's own numbers), `action`, `logq`, and
/// `chain` (per Metropolis step, the index of the configuration the chain sits on).
pub fn flow_layout(shape: &[usize]) -> Layout {
    Layout {
        shape: shape.to_vec(),
        dtype: Dtype::F32,
        floats: vec!["action".into(), "logq".into()],
        ints: vec!["chain".into()],
    }
}

/// Chunks of an HMC chain: `x` in f64, `action`, `dH`, and `accepted` (0 or 1).
pub fn hmc_layout(shape: &[usize]) -> Layout {
    Layout {
        shape: shape.to_vec(),
        dtype: Dtype::F64,
        floats: vec!["action".into(), "dH".into()],
        ints: vec!["accepted".into()],
    }
}

fn common(theory: &dyn Theory, params: &BTreeMap<String, String>, sampler: &str) -> BTreeMap<String, String> {
    let mut m = params.clone();
    m.insert("theory".into(), theory.name().into());
    m.insert(SAMPLER_KEY.into(), sampler.into());
    m.insert("latflow_version".into(), env!("CARGO_PKG_VERSION").into());
    m
}

/// Metadata of a flow ensemble drawn from `checkpoint`.
pub fn flow_metadata(
    theory: &dyn Theory,
    setup: &dyn Setup,
    checkpoint: &Path,
    n: usize,
    batch: usize,
    therm: usize,
    seed: u64,
) -> CliResult<BTreeMap<String, String>> {
    let mut m = common(theory, &setup.params(), SAMPLER_FLOW);
    m.insert("checkpoint".into(), checkpoint.display().to_string());
    m.insert("checkpoint_sha256".into(), crate::io::digest::sha256_file(checkpoint).map_err(CliError)?);
    for (k, v) in [("n", n as u64), ("batch", batch as u64), ("therm", therm as u64), ("seed", seed)] {
        m.insert(k.into(), v.to_string());
    }
    m.insert(
        "columns".into(),
        "x: configurations (flow samples); action: S(x); logq: log q(x) under the flow; chain: for each \
         independence-Metropolis step, the index of the configuration the chain sits on (drop the first \
         `therm` steps)"
            .into(),
    );
    Ok(m)
}

/// Metadata of an HMC ensemble (`params`: every parameter value by metadata key).
pub fn hmc_metadata(
    theory: &dyn Theory,
    params: &BTreeMap<String, String>,
    run: &RunConfig,
) -> BTreeMap<String, String> {
    let mut m = common(theory, params, SAMPLER_HMC);
    for (k, v) in [
        ("chains", run.n_chains.to_string()),
        ("n_traj", run.n_traj.to_string()),
        ("n_therm", run.n_therm.to_string()),
        ("steps", run.hmc.n_steps.to_string()),
        ("tau", run.hmc.trajectory_length.to_string()),
        ("flip", run.hmc.flip.to_string()),
        ("integrator", run.hmc.integrator.name().to_string()),
        ("seed", run.seed.to_string()),
    ] {
        m.insert(k.into(), v);
    }
    m.insert(
        "columns".into(),
        "x: the configuration after each recorded trajectory (stream = chain; thermalization not saved); \
         action: S(x); dH: the trajectory's energy violation; accepted: 1 if the trajectory was accepted"
            .into(),
    );
    m
}

/// One HMC chain's writer as the sampler's sink.
pub struct HmcSink(pub ChunkWriter);

impl ChainSink for HmcSink {
    fn record(&mut self, _t: usize, x: &[f64], info: &TrajectoryInfo, obs: &[f64]) -> Result<(), String> {
        // the HMC driver measures the action last
        let s = obs.last().copied().unwrap_or(f64::NAN);
        self.0.push(x, &[s, info.delta_h], &[info.accepted as i64])
    }

    fn finish(self: Box<Self>) -> Result<(), String> {
        self.0.finish().map(|_| ())
    }
}
