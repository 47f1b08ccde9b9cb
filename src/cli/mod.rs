//! Subcommands of the `latflow` binary: `apply`, `audit` and `hmc` live in their own
//! modules (`run(args)`); `train` and `sample` dispatch on the theory to `phi4run` and
//! `u1run`, which share `flowrun` (training loop, checkpoints, ensembles, plots).

pub mod apply;
pub mod args;
pub mod audit;
pub mod flowrun;
pub mod hmc;
pub mod phi4run;
pub mod u1run;

pub use args::{Args, CliError, CliResult};

/// One line per subcommand, for `latflow --help`.
pub const USAGE: &str = "\
latflow: normalizing flows for lattice field theory (arXiv:2101.08176)

usage: latflow [COMMAND] [FLAGS]

commands:
  (none)     the tutorial demo (see README)
  help       this text
  train      train a flow, then sample it exactly and compare with HMC:
             latflow train phi4 [--L 8 --m2 -4 --lam 8 --layers 16 --hidden 8,8 --kernel 3]
             latflow train u1   [--L 8 --beta 2 --layers 16 --mix 2 --hidden 8,8 --kernel 3]
             common: [--batch 64 --steps N --lr X --lr-final Y|none --seed 0 --era N --out DIR
                      --n 8192 --sample-batch 1024 --therm 512 --resume FILE --device cpu|cuda --quiet]
  sample     exact sampling from a checkpoint: latflow sample --checkpoint FILE [--n 8192
             --batch 1024 --therm 512 --seed 1 --out DIR --device cpu|cuda]
  apply      push latent samples through a checkpoint's flow (or back with --reverse):
             latflow apply --checkpoint FILE --input IN.safetensors --output OUT.safetensors [--reverse]
  audit      gradient audit of every op (f64 finite differences); flags: --seed N
  hmc        HMC baseline: latflow hmc phi4 [--L 8 --m2 -4 --lam 8] | latflow hmc u1 [--L 8 --beta 2]
             [--n-traj 10000 --n-therm 500 --chains 4 --steps 10 --tau 1.0 --seed 0 --out FILE.csv]
";

/// Dispatches `argv[1..]` to a subcommand.
pub fn dispatch(argv: &[String]) -> CliResult<()> {
    let (cmd, rest) = match argv.split_first() {
        None => return demo(),
        Some((c, r)) => (c.as_str(), r),
    };
    match cmd {
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        "apply" => apply::run(rest),
        "audit" => audit::run(rest),
        "hmc" => hmc::run(rest),
        "train" => train(rest),
        "sample" => sample(rest),
        other => Err(CliError(format!("unknown command {other:?}\n\n{USAGE}"))),
    }
}

/// `cargo run --release` with no arguments: the tutorial's phi^4 demo with the defaults.
fn demo() -> CliResult<()> {
    let run = phi4run::Phi4Run::default();
    let flow =
        run.arch.build::<f32, _>(&mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(run.common.train.seed));
    let trainer = latflow::flow::train::Trainer::new(flow, run.common.train.clone());
    phi4run::execute(run, trainer, false)
}

fn train(rest: &[String]) -> CliResult<()> {
    let theory_flags = match rest.first().map(String::as_str) {
        Some("u1") => u1run::TRAIN_FLAGS,
        _ => phi4run::TRAIN_FLAGS,
    };
    let flags: Vec<&str> = flowrun::COMMON_TRAIN_FLAGS.iter().chain(theory_flags).copied().collect();
    let a = Args::parse(rest, &flags, &["quiet"])?;
    match a.positional.first().map(String::as_str) {
        Some("phi4") => phi4run::train(&a),
        Some("u1") => u1run::train(&a),
        Some(t) => Err(CliError(format!("unknown theory {t:?} (expected phi4 or u1)"))),
        None => Err(CliError("train: which theory? (latflow train phi4 ...)".into())),
    }
}

fn sample(rest: &[String]) -> CliResult<()> {
    let a = Args::parse(rest, &["checkpoint", "n", "batch", "therm", "seed", "out", "device"], &[])?;
    let path: std::path::PathBuf =
        a.opt("checkpoint")?.ok_or_else(|| CliError("sample: --checkpoint FILE is required".into()))?;
    // Errors of read_metadata name the file already.
    let (_, meta) = latflow::flow::checkpoint::read_metadata(&path).map_err(|e| CliError(e.to_string()))?;
    match meta.get("theory").map(String::as_str) {
        Some("phi4") => phi4run::sample(&path, &a),
        Some("u1") => u1run::sample(&path, &a),
        Some(t) => Err(CliError(format!("{}: unknown theory {t:?} in checkpoint", path.display()))),
        None => Err(CliError(format!("{}: checkpoint metadata has no theory", path.display()))),
    }
}
