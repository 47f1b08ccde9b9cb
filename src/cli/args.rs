//! A small flag parser (`--name value`, `--switch`), so the binary needs no argument
//! crate. Every subcommand declares the flags it accepts; unknown flags, missing values
//! and unparsable numbers are errors that name the flag.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A user error: printed as `error: ...` with exit status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError(e.to_string())
    }
}

/// Shorthand for a [`CliError`] result.
pub type CliResult<T> = Result<T, CliError>;

/// Parsed flags of one subcommand: positional words and `--flag value` pairs.
#[derive(Debug, Default)]
pub struct Args {
    /// Words that are not flags, in order.
    pub positional: Vec<String>,
    values: BTreeMap<String, String>,
    switches: Vec<String>,
}

impl Args {
    /// Parses `raw` accepting only the `valued` flags (which take a value) and the
    /// `switches` (which do not). Names are given without the leading `--`.
    pub fn parse(raw: &[String], valued: &[&str], switches: &[&str]) -> CliResult<Args> {
        let mut a = Args::default();
        let mut it = raw.iter();
        while let Some(w) = it.next() {
            if let Some(name) = w.strip_prefix("--") {
                let (name, inline) = match name.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (name, None),
                };
                if switches.contains(&name) {
                    a.switches.push(name.to_string());
                } else if valued.contains(&name) {
                    let v = match inline {
                        Some(v) => v,
                        None => it.next().cloned().ok_or_else(|| CliError(format!("flag --{name} needs a value")))?,
                    };
                    a.values.insert(name.to_string(), v);
                } else {
                    let mut known: Vec<String> = valued.iter().chain(switches).map(|s| format!("--{s}")).collect();
                    known.sort();
                    return Err(CliError(format!("unknown flag --{name} (accepted: {})", known.join(" "))));
                }
            } else {
                a.positional.push(w.clone());
            }
        }
        Ok(a)
    }

    /// The value of `--name` parsed as `T`, or `default` when absent.
    pub fn get<T: FromStr>(&self, name: &str, default: T) -> CliResult<T> {
        match self.values.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| CliError(format!("--{name}: cannot parse {v:?}"))),
        }
    }

    /// The value of `--name` if given.
    pub fn opt<T: FromStr>(&self, name: &str) -> CliResult<Option<T>> {
        self.values
            .get(name)
            .map(|v| v.parse().map_err(|_| CliError(format!("--{name}: cannot parse {v:?}"))))
            .transpose()
    }

    /// A positive integer flag (sizes, counts).
    pub fn positive(&self, name: &str, default: usize) -> CliResult<usize> {
        let v: i64 = self.get(name, default as i64)?;
        if v <= 0 {
            return Err(CliError(format!("--{name} must be positive, got {v}")));
        }
        Ok(v as usize)
    }

    /// A finite float flag.
    pub fn finite(&self, name: &str, default: f64) -> CliResult<f64> {
        let v: f64 = self.get(name, default)?;
        if !v.is_finite() {
            return Err(CliError(format!("--{name} must be finite, got {v}")));
        }
        Ok(v)
    }

    /// Whether the switch `--name` was given.
    pub fn has(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_values_switches_and_positionals() {
        let a = Args::parse(&s(&["phi4", "--L", "8", "--m2=-4", "--quiet"]), &["L", "m2"], &["quiet"]).unwrap();
        assert_eq!(a.positional, vec!["phi4"]);
        assert_eq!(a.positive("L", 4).unwrap(), 8);
        assert_eq!(a.finite("m2", 0.0).unwrap(), -4.0);
        assert!(a.has("quiet"));
    }

    #[test]
    fn rejects_unknown_missing_and_bad_values() {
        assert!(Args::parse(&s(&["--nope"]), &["L"], &[]).unwrap_err().0.contains("unknown flag --nope"));
        assert!(Args::parse(&s(&["--L"]), &["L"], &[]).unwrap_err().0.contains("needs a value"));
        let a = Args::parse(&s(&["--L", "-3"]), &["L"], &[]).unwrap();
        assert!(a.positive("L", 1).unwrap_err().0.contains("must be positive"));
        let a = Args::parse(&s(&["--L", "x"]), &["L"], &[]).unwrap();
        assert!(a.positive("L", 1).is_err());
    }
}
