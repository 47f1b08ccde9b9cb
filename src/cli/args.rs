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
                if a.switches.iter().any(|s| s == name) || a.values.contains_key(name) {
                    return Err(CliError(format!("flag --{name} given twice")));
                }
                if switches.contains(&name) {
                    if inline.is_some() {
                        return Err(CliError(format!("flag --{name} takes no value")));
                    }
                    a.switches.push(name.to_string());
                } else if valued.contains(&name) {
                    let v = match inline {
                        Some(v) => v,
                        None => it.next().cloned().ok_or_else(|| CliError(format!("flag --{name} needs a value")))?,
                    };
                    a.values.insert(name.to_string(), v);
                } else {
                    let mut known: Vec<&str> = valued.iter().chain(switches).copied().collect();
                    known.sort();
                    let hint = known
                        .iter()
                        .map(|k| (edit_distance(k, name), k))
                        .filter(|(d, _)| *d <= 2)
                        .min()
                        .map_or(String::new(), |(_, k)| format!("; did you mean --{k}?"));
                    let list: Vec<String> = known.iter().map(|k| format!("--{k}")).collect();
                    return Err(CliError(format!("unknown flag --{name}{hint} (accepted: {})", list.join(" "))));
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

    /// An error for a stray word after `cmd`'s flags (a single-dash flag gets a hint).
    pub fn reject_positional(&self, cmd: &str) -> CliResult<()> {
        match self.positional.first() {
            None => Ok(()),
            Some(p) => {
                let hint = match p.strip_prefix('-') {
                    Some(f) if !f.starts_with('-') && !f.is_empty() && f.parse::<f64>().is_err() => {
                        format!(" (flags start with two dashes: --{f}?)")
                    }
                    _ => String::new(),
                };
                Err(CliError(format!("{cmd}: unexpected argument {p:?}{hint}")))
            }
        }
    }

    /// A path flag that must not be empty (`--out ''` would mean the current directory).
    pub fn path(&self, name: &str) -> CliResult<Option<std::path::PathBuf>> {
        match self.values.get(name) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Err(CliError(format!("--{name} must not be empty"))),
            Some(v) => Ok(Some(std::path::PathBuf::from(v))),
        }
    }

    /// Whether the switch `--name` was given.
    pub fn has(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }
}

/// Levenshtein distance (case-insensitive), for suggestions of near-miss flags.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.to_lowercase().chars().collect(), b.to_lowercase().chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
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
    fn rejects_repeated_flags_and_suggests_near_misses() {
        let e = Args::parse(&s(&["--L", "8", "--L", "16"]), &["L"], &[]).unwrap_err().0;
        assert_eq!(e, "flag --L given twice");
        let e = Args::parse(&s(&["--quiet", "--quiet"]), &[], &["quiet"]).unwrap_err().0;
        assert_eq!(e, "flag --quiet given twice");
        let e = Args::parse(&s(&["--step", "3"]), &["steps", "seed"], &[]).unwrap_err().0;
        assert!(e.starts_with("unknown flag --step; did you mean --steps?"), "{e}");
        let e = Args::parse(&s(&["--l", "3"]), &["L", "lam"], &[]).unwrap_err().0;
        assert!(e.contains("did you mean --L?"), "{e}");
        assert!(!Args::parse(&s(&["--bogus"]), &["L"], &[]).unwrap_err().0.contains("did you mean"));
        assert!(Args::parse(&s(&["--quiet=1"]), &[], &["quiet"]).unwrap_err().0.contains("takes no value"));
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
