//! The `latflow` command line, for every theory of the registry
//! ([`latflow_theory::builtin`]): `train`, `sample`, `apply` and `hmc` are generic over
//! [`Theory`]; `audit` checks the engine's gradients.
//!
//! - [`args`]: the flag parser.
//! - [`train`]: `latflow train THEORY` and the demo (training loop, history, `--resume`).
//! - [`checkpoints`]: model and optimizer files of a run directory.
//! - [`report`]: the evaluation ensemble of a flow (summary, references, plots).
//! - [`save`]: where and with which metadata `--save` writes ensembles.
//! - [`sample`], [`apply`], [`hmc`], [`fhmc`], [`measure`], [`audit`]: the other commands.
//! - [`ranks`]: the ranks of an MPI job that `train`, `sample`, `hmc` and `fhmc` spread over.
//!
//! [`run`] takes the list of theories, so a program (or a test) can add its own theory to
//! the built-in ones and use every command on it.

pub mod apply;
pub mod args;
pub mod audit;
pub mod checkpoints;
pub mod fhmc;
pub mod hmc;
pub mod measure;
pub mod ranks;
pub mod report;
pub mod sample;
pub mod save;
pub mod train;

pub use args::{Args, CliError, CliResult};

use latflow_comm::{Comm, SingleProcess};
use latflow_flow::model::Flow;
use latflow_tensor::Device;
use latflow_theory::Theory;
use std::path::{Path, PathBuf};

/// The usage text for `latflow --help`, listing the theories and their parameters.
pub fn usage(theories: &[&dyn Theory]) -> String {
    let mut s = String::from(
        "latflow: normalizing flows for lattice field theory (arXiv:2101.08176)

usage: latflow [COMMAND] [FLAGS]

commands:
  (none)     the tutorial demo: latflow train phi4 with its defaults (see README)
  help       this text
  train      train a flow, then sample it exactly and compare with the references:
             latflow train THEORY [THEORY FLAGS] [--batch 64 --steps N --lr X --lr-final Y|none
               --seed 0 --era N --out DIR --n 8192 --sample-batch 1024 --therm 512
               --resume FILE --init FILE --device cpu|cuda --quiet --save]
             (--init FILE: a new run from a checkpoint's parameters, e.g. at another --L)
  sample     exact sampling from a checkpoint: latflow sample --checkpoint FILE [--n 8192
             --batch 1024 --therm 512 --seed 1 --out DIR --device cpu|cuda --save --L L]
             (--L: at another lattice size, a multiple of the flow's mask period)
             (--save: the ensemble into OUT/ensemble as chunked safetensors files)
  measure    every observable from a saved ensemble: latflow measure DIR [--obs KEY,KEY
             --therm N]
  apply      push latent samples through a checkpoint's flow (or back with --reverse):
             latflow apply --checkpoint FILE --input IN.safetensors --output OUT.safetensors [--reverse
             --L L]
  audit      gradient audit of every op (f64 finite differences); flags: --seed N
  hmc        HMC baseline: latflow hmc THEORY [THEORY FLAGS] [--n-traj 10000 --n-therm 500
             --chains 4 --steps 10 --tau 1.0 --integrator leapfrog|omelyan --seed 0 --out DIR
             --no-csv --quiet --save --flip]
  fhmc       flow-HMC (HMC on a flow's latent field, arXiv:2112.01586): latflow fhmc
             --checkpoint FILE [--L L --n-traj 1000 --n-therm 50 --chains 8 --steps 10 --tau 1.0
             --integrator leapfrog|omelyan --seed 0 --precision f32|f64 --start hmc|prior
             --out DIR --no-csv --quiet --save --tape --identity]
             (the theory's coupling flags, e.g. --beta 6: a target other than the training's;
             --tape: an ultralocal U(1) flow through the tape like any other; --identity:
             plain HMC through the same machinery, the flow's layers left out (2D U(1)))
             latflow fhmc --plaquette-map M [--map-beta B --L L --beta BETA ...]: 2D U(1)
             through the plaquette map (every plaquette through an M-component circle map
             fitted to e^{B cos x}, default B = beta / 2; no checkpoint)

theories (flags with defaults; [hmc] = hmc only, [flow] = train only):
",
    );
    for t in theories {
        s += &format!("  {} ({})\n", t.name(), t.title());
        for p in t.params() {
            let tag = match p.group {
                latflow_theory::Group::HmcOnly => " [hmc]",
                latflow_theory::Group::Flow => " [flow]",
                _ => "",
            };
            s += &format!("    --{:<12} {:<8} {}{tag}\n", p.flag, p.default, p.help);
        }
    }
    s
}

/// The usage of one command, for `latflow COMMAND --help`.
pub fn command_usage(theories: &[&dyn Theory], cmd: &str) -> Option<String> {
    let all = usage(theories);
    let lines: Vec<&str> = all.lines().collect();
    let start = lines.iter().position(|l| l.trim_start().starts_with(&format!("{cmd} ")))?;
    let mut out: Vec<&str> = vec![lines[start]];
    out.extend(lines[start + 1..].iter().take_while(|l| l.starts_with("             ")));
    let mut s = format!("usage (latflow {cmd}):\n{}\n", out.join("\n"));
    if matches!(cmd, "train" | "hmc") {
        s += &all[all.find("theories (").unwrap_or(all.len())..];
    }
    Some(s)
}

/// Runs the command line `argv` (without the program name) over `theories`, in one process.
pub fn run(theories: &[&dyn Theory], argv: &[String]) -> CliResult<()> {
    run_over(theories, argv, &SingleProcess)
}

/// [`run`] on the ranks of `comm` ([`ranks`]): `train`, `sample`, `hmc` and `fhmc` spread their work
/// over them; the other commands refuse more than one rank.
pub fn run_over(theories: &[&dyn Theory], argv: &[String], comm: &dyn Comm) -> CliResult<()> {
    let (cmd, rest) = match argv.split_first() {
        None => return train::run(theories, &["phi4".to_string()], comm),
        Some((c, r)) => (c.as_str(), r),
    };
    if !matches!(cmd, "train" | "sample" | "hmc" | "fhmc") {
        ranks::single_only(comm, cmd)?;
    }
    if rest.iter().any(|a| a == "--help" || a == "-h") {
        if let Some(u) = command_usage(theories, cmd) {
            print!("{u}");
            return Ok(());
        }
    }
    match cmd {
        "help" | "--help" | "-h" => {
            print!("{}", usage(theories));
            Ok(())
        }
        "version" | "--version" | "-V" => {
            println!("latflow {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        "apply" => apply::run(theories, rest),
        "audit" => audit::run(rest),
        "hmc" => hmc::run(theories, rest, comm),
        "fhmc" => fhmc::run(theories, rest, comm),
        "measure" => measure::run(theories, rest),
        "train" => train::run(theories, rest, comm),
        "sample" => sample::run(theories, rest, comm),
        other => Err(CliError(format!("unknown command {other:?}\n\n{}", usage(theories)))),
    }
}

/// The theory named by `word` (the first argument of `command`).
pub fn pick_theory<'a>(theories: &[&'a dyn Theory], word: Option<&String>, command: &str) -> CliResult<&'a dyn Theory> {
    let names: Vec<&str> = theories.iter().map(|t| t.name()).collect();
    match word.map(String::as_str).filter(|w| !w.starts_with("--")) {
        None => Err(CliError(format!("{command}: which theory? (latflow {command} {} ...)", names[0]))),
        Some(w) => latflow_theory::find(theories, w)
            .ok_or_else(|| CliError(format!("{command}: unknown theory {w:?} (expected {})", names.join(" or ")))),
    }
}

/// Files the commands write into a run directory; a directory holding one of them holds a
/// run, which no command overwrites without `--force`.
pub const RUN_FILES: &[&str] =
    &["model.safetensors", "history.csv", "summary.csv", hmc::OBSERVABLES_FILE, save::ENSEMBLE_DIR];

/// The first of [`RUN_FILES`] in `dir`, if any.
pub fn holds_run(dir: &Path) -> Option<&'static str> {
    RUN_FILES.iter().copied().find(|f| dir.join(f).exists())
}

/// Where a command writes: `explicit` (`--out`), which must not hold a run unless `force`;
/// else the first of `default`, `default-2`, `default-3`, ... that holds none (so the demo,
/// run twice, keeps both runs). `what` completes the error's advice.
pub fn output_dir(explicit: Option<PathBuf>, default: &Path, force: bool, what: &str) -> CliResult<PathBuf> {
    if let Some(dir) = explicit {
        if let (Some(f), false) = (holds_run(&dir), force) {
            return Err(CliError(format!(
                "{} already holds a run ({f}); {what}, or pass --force to overwrite it",
                dir.display()
            )));
        }
        return Ok(dir);
    }
    let name = default.file_name().map_or_else(|| "run".into(), |n| n.to_string_lossy().to_string());
    (1..10_000)
        .map(|k| if k == 1 { default.to_path_buf() } else { default.with_file_name(format!("{name}-{k}")) })
        .find(|d| holds_run(d).is_none() && (d.is_dir() || !d.exists()))
        .ok_or_else(|| CliError(format!("no free run directory next to {}", default.display())))
}

/// Memory a flow may take for its activations (training: a shard's tape per thread; sampling:
/// one batch without a tape), checked before any of it is allocated.
pub const MEMORY_LIMIT_BYTES: f64 = 8.0 * (1u64 << 30) as f64;

/// Estimates the activation memory of `flow` on `batch` samples at a time, `copies` values per
/// activation (tape: value, gradient, temporaries), and refuses sizes over
/// [`MEMORY_LIMIT_BYTES`].
pub fn check_memory(flow: &Flow<f32>, batch: usize, copies: f64, what: &str) -> CliResult<()> {
    let sites: usize = flow.prior.shape().iter().product();
    // every conv output (N, cout, H, W) is an activation; weights are the 4-d parameters
    let channels: usize = flow.params().iter().filter(|t| t.shape().len() == 4).map(|t| t.shape()[0]).sum();
    let bytes = batch as f64 * sites as f64 * (channels + 2 * flow.layers().len()) as f64 * 4.0 * copies;
    if bytes > MEMORY_LIMIT_BYTES {
        return Err(CliError(format!(
            "{what} would need about {:.1} GiB for activations (limit {:.0} GiB): lower the batch, --L, \
             --hidden or --layers",
            bytes / (1u64 << 30) as f64,
            MEMORY_LIMIT_BYTES / (1u64 << 30) as f64
        )));
    }
    Ok(())
}

/// Creates the run directory (and parents).
pub fn make_dir(dir: &Path) -> CliResult<PathBuf> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError(format!("cannot create run directory {}: {e}", dir.display())))?;
    Ok(dir.to_path_buf())
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
        Device::Cuda => format!("cuda ({})", latflow_tensor::gpu_name().unwrap_or_else(|| "?".into())),
    }
}

/// Refuses `--device cuda` for what of `setup` runs on the CPU only, saying what.
pub fn check_device(setup: &dyn latflow_theory::Setup, device: Device) -> CliResult<()> {
    match (device, setup.cpu_only()) {
        (Device::Cuda, Some(why)) => Err(CliError(format!("--device cuda: {why}"))),
        _ => Ok(()),
    }
}

/// Moves a flow to `device`, with the error as a CLI error.
pub fn move_flow(flow: &mut Flow<f32>, device: Device) -> CliResult<()> {
    flow.to_device(device).map_err(|e| CliError(format!("--device {}: {e}", device.name())))
}

#[cfg(test)]
mod device_tests {
    use super::*;
    use latflow_theory::Params;

    /// `--device cuda` says plainly which options run on the CPU only.
    #[test]
    fn cuda_refuses_cpu_only_options_by_name() {
        let phi4 = latflow_theory::builtin()[0];
        let given = |v: &[(&str, &str)]| v.iter().map(|(k, x)| (k.to_string(), x.to_string())).collect();
        // the priors (normal, free field) are sampled on the host for every device
        for prior in ["free", "free:0.5", "normal"] {
            let plain = phi4.setup(&Params::from_flags(&phi4.params(), &given(&[("prior", prior)]))).unwrap();
            assert!(check_device(plain.as_ref(), Device::Cuda).is_ok(), "{prior}");
        }
        let opts = given(&[("mixture", "z2"), ("coupling", "z2odd")]);
        let sym = phi4.setup(&Params::from_flags(&phi4.params(), &opts)).unwrap();
        assert!(check_device(sym.as_ref(), Device::Cpu).is_ok());
        let e = check_device(sym.as_ref(), Device::Cuda).unwrap_err().0;
        assert!(e.contains("--coupling z2odd") && e.contains("--mixture z2") && e.contains("CPU only"), "{e}");
    }
}
