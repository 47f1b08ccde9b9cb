//! Subcommands of the `latflow` binary. Each lives in its own module with
//! `pub fn run(args: &[String]) -> CliResult<()>`.

pub mod args;
pub mod audit;

pub use args::{Args, CliError, CliResult};

/// One line per subcommand, for `latflow --help`.
pub const USAGE: &str = "\
latflow: normalizing flows for lattice field theory (arXiv:2101.08176)

usage: latflow [COMMAND] [FLAGS]

commands:
  (none)     the tutorial demo (see README)
  help       this text
  audit      gradient audit of every op (f64 finite differences); flags: --seed N
";

/// Dispatches `argv[1..]` to a subcommand.
pub fn dispatch(argv: &[String]) -> CliResult<()> {
    let (cmd, rest) = match argv.split_first() {
        None => return Err(CliError(format!("no command given\n\n{USAGE}"))),
        Some((c, r)) => (c.as_str(), r),
    };
    let _ = rest;
    match cmd {
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        "audit" => audit::run(rest),
        other => Err(CliError(format!("unknown command {other:?}\n\n{USAGE}"))),
    }
}
