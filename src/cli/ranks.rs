//! The ranks a command runs over: one process, or the ranks of an MPI job
//! (`mpirun -np N latflow train ...`, built with `--features mpi`).
//!
//! `train` spreads each step's shards over the ranks ([`crate::flow::train::Trainer::step_over`]:
//! the parameters are those of one process, bit for bit); `train`'s evaluation ensemble and
//! `sample` draw the flow's proposals on every rank
//! ([`crate::sampler::ensemble::IndependenceSampler::sample_over`]); `hmc` and `fhmc` run their
//! chains on the ranks. Rank 0 prints and writes the run directory, except that each rank writes
//! the ensemble chunks of its own (flow-)HMC chains. Every rank reads the command line's files
//! (checkpoints) itself: the ranks share a file system.
//!
//! An error on any rank ends the whole job (`MPI_Abort`), since the other ranks would wait
//! for it forever.

use super::{CliError, CliResult};
use latflow_comm::{Comm, SingleProcess};
use std::path::{Path, PathBuf};

/// Environment variable of the fault-injection test hook: `RANK:STEP` makes rank `RANK`
/// exit (status 3, without finalizing MPI, as a crashed node would) when it is about to take
/// training step `STEP`. The tests check that the job then stops with an error and the
/// last checkpoint intact. Unset in normal runs.
pub const FAULT_ENV: &str = "LATFLOW_FAULT_RANK_EXIT";

/// Environment variables through which launchers tell a process its job's size: OpenMPI,
/// then MPICH / Intel MPI (PMI).
const SIZE_VARS: [&str; 2] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"];

/// The job size a launcher announced, if any.
fn launched_size() -> Option<usize> {
    SIZE_VARS.iter().find_map(|v| std::env::var(v).ok()).and_then(|s| s.trim().parse().ok())
}

/// The ranks of this process's job: MPI's when built with the `mpi` feature and started by
/// a launcher, else one process.
///
/// # Errors
/// Without the `mpi` feature, when a launcher started several copies (each would run the
/// whole job alone, and all would write the same run directory).
pub fn world() -> CliResult<Box<dyn Comm>> {
    world_of(launched_size())
}

/// [`world`] for a job of `launched` ranks (`None`: not started by a launcher).
fn world_of(launched: Option<usize>) -> CliResult<Box<dyn Comm>> {
    #[cfg(feature = "mpi")]
    if launched.is_some() {
        let mpi = latflow_comm::Mpi::init().ok_or_else(|| CliError("MPI was initialized twice".into()))?;
        return Ok(Box::new(mpi));
    }
    match launched {
        Some(n) if n > 1 && !cfg!(feature = "mpi") => Err(CliError(format!(
            "started as one of {n} MPI ranks, but this latflow was built without MPI: each rank would run \
             the whole job alone; build it with `cargo build --release --features mpi`"
        ))),
        _ => Ok(Box::new(SingleProcess)),
    }
}

/// Refuses a command that runs on one process only when started on several ranks.
pub fn single_only(comm: &dyn Comm, cmd: &str) -> CliResult<()> {
    if comm.size() > 1 {
        return Err(CliError(format!(
            "latflow {cmd} runs on one process, not on {} ranks: start it without mpirun (train, sample, hmc and fhmc \
             spread over ranks)",
            comm.size()
        )));
    }
    Ok(())
}

/// Rank 0's `dir` on every rank: each rank chose its run directory itself (`--out`, or the
/// first free `runs/NAME-k`), and a rank that started late may have seen rank 0's files.
pub fn root_dir(comm: &dyn Comm, dir: &Path) -> PathBuf {
    if comm.size() == 1 {
        return dir.to_path_buf();
    }
    let bytes = comm.broadcast(0, dir.as_os_str().as_encoded_bytes());
    // SAFETY: the bytes are rank 0's `as_encoded_bytes` of an OsStr, from the same binary
    // on the same platform (ranks of one job run one executable)
    PathBuf::from(unsafe { std::ffi::OsString::from_encoded_bytes_unchecked(bytes) })
}

/// The rank and step of [`FAULT_ENV`], if set.
///
/// # Errors
/// When it is set but not `RANK:STEP`.
pub fn fault_at() -> CliResult<Option<(usize, usize)>> {
    match std::env::var(FAULT_ENV) {
        Ok(v) => parse_fault(&v).map(Some),
        Err(_) => Ok(None),
    }
}

/// `RANK:STEP` of [`FAULT_ENV`].
fn parse_fault(v: &str) -> CliResult<(usize, usize)> {
    v.split_once(':')
        .and_then(|(r, s)| Some((r.trim().parse().ok()?, s.trim().parse().ok()?)))
        .ok_or_else(|| CliError(format!("{FAULT_ENV} must be RANK:STEP (a test hook), got {v:?}")))
}

/// The fault hook: exits this process (status 3) if [`FAULT_ENV`] names this rank and `step`.
pub fn maybe_fail(comm: &dyn Comm, fault: Option<(usize, usize)>, step: usize) {
    if fault == Some((comm.rank(), step)) {
        eprintln!("rank {} of {}: exiting before step {step} ({FAULT_ENV}, a test hook)", comm.rank(), comm.size());
        std::process::exit(3);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(feature = "mpi"))]
    #[test]
    fn a_build_without_mpi_refuses_several_ranks() {
        let e = world_of(Some(2)).err().expect("2 ranks refused").0;
        assert!(e.contains("one of 2 MPI ranks") && e.contains("--features mpi"), "{e}");
        for launched in [None, Some(1)] {
            assert_eq!(world_of(launched).unwrap().size(), 1, "{launched:?}");
        }
    }

    #[test]
    fn the_fault_hook_reads_rank_and_step() {
        assert_eq!(parse_fault("1:12").unwrap(), (1, 12));
        assert_eq!(parse_fault(" 0 : 3 ").unwrap(), (0, 3));
        for bad in ["1", "1:x", "-1:2", ""] {
            let e = parse_fault(bad).unwrap_err().0;
            assert!(e.contains("LATFLOW_FAULT_RANK_EXIT must be RANK:STEP"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn single_only_commands_name_the_rank_count() {
        assert!(single_only(&SingleProcess, "apply").is_ok());
        let e = latflow_comm::ThreadRanks::run(2, |c| single_only(c, "apply").unwrap_err().0);
        assert!(e[0].contains("latflow apply runs on one process, not on 2 ranks"), "{}", e[0]);
    }
}
