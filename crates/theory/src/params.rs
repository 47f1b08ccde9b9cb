//! A theory's parameters: couplings, lattice and flow architecture, as named string values
//! read from command-line flags or checkpoint metadata, with typed getters whose errors name
//! the flag (`--L must be positive, got 0`) or the metadata entry and the file.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Largest magnitude of a coupling ([`Params::coupling`]).
pub const MAX_COUPLING: f64 = 1e6;

/// What a parameter describes, which decides where it is accepted and stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// A coupling of the action (`--m2`, `--beta`): `train`, `hmc`, checkpoints.
    Coupling,
    /// The lattice extent (`--L`): `train`, `hmc`, checkpoints.
    Lattice,
    /// Only for HMC (`--nd`: flows are two-dimensional); never in checkpoints.
    HmcOnly,
    /// The flow's architecture (`--layers`, `--hidden`): `train`, checkpoints.
    Flow,
}

/// One parameter of a theory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Param {
    /// The flag, without `--` (`L`, `m2`, `mix`).
    pub flag: &'static str,
    /// The checkpoint metadata key (usually the flag; `n_mix` for `--mix`).
    pub key: &'static str,
    /// The default value as it would be written on the command line.
    pub default: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// Where it applies.
    pub group: Group,
    /// `Some(v)` when a checkpoint may lack it (it was added after checkpoints existed):
    /// then it reads as `v`, which is what those checkpoints were. Usually the default;
    /// another value when the default changed ([`Param::added_later_as`]).
    pub legacy: Option<&'static str>,
}

impl Param {
    /// A parameter whose metadata key is its flag.
    pub const fn new(flag: &'static str, default: &'static str, help: &'static str, group: Group) -> Self {
        Param { flag, key: flag, default, help, group, legacy: None }
    }

    /// The same parameter, allowed to be missing from a checkpoint's metadata (it was added
    /// later; its default is what older checkpoints were).
    pub const fn optional(mut self) -> Self {
        self.legacy = Some(self.default);
        self
    }

    /// The same parameter, allowed to be missing from a checkpoint's metadata, where it
    /// reads as `legacy`: what older checkpoints were, when that is no longer the default
    /// (phi^4's prior was `normal` before the free-field prior became the default).
    pub const fn added_later_as(mut self, legacy: &'static str) -> Self {
        self.legacy = Some(legacy);
        self
    }

    /// The same parameter stored under another metadata key.
    pub const fn stored_as(mut self, key: &'static str) -> Self {
        self.key = key;
        self
    }

    /// Whether `train` accepts it as a flag and checkpoints store it.
    pub fn in_checkpoint(&self) -> bool {
        self.group != Group::HmcOnly
    }

    /// Whether `hmc` accepts it.
    pub fn for_hmc(&self) -> bool {
        self.group != Group::Flow
    }
}

/// Where parameter values came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Command-line flags (`--L`).
    Flags,
    /// The metadata of this checkpoint file.
    Metadata(String),
}

/// Parameter values by metadata key, with their source.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    values: BTreeMap<String, String>,
    flags: BTreeMap<String, String>,
    source: Source,
}

impl Params {
    /// Values from flags: `given` maps flag names to values; every parameter in `params`
    /// not given takes its default.
    pub fn from_flags(params: &[Param], given: &BTreeMap<String, String>) -> Self {
        let mut values = BTreeMap::new();
        let mut flags = BTreeMap::new();
        for p in params {
            let v = given.get(p.flag).cloned().unwrap_or_else(|| p.default.to_string());
            values.insert(p.key.to_string(), v);
            flags.insert(p.key.to_string(), p.flag.to_string());
        }
        Params { values, flags, source: Source::Flags }
    }

    /// Values from a checkpoint's metadata: every checkpoint parameter must be there
    /// (those added later read as what older checkpoints were, HMC-only ones take their
    /// defaults).
    ///
    /// # Errors
    /// A missing entry, named with the file.
    pub fn from_metadata(params: &[Param], meta: &BTreeMap<String, String>, file: &str) -> Result<Self, String> {
        let mut values = BTreeMap::new();
        let mut flags = BTreeMap::new();
        for p in params {
            let v = match (meta.get(p.key), p.legacy) {
                (Some(v), _) => v.clone(),
                (None, Some(legacy)) if p.in_checkpoint() => legacy.to_string(),
                (None, _) if !p.in_checkpoint() => p.default.to_string(),
                (None, _) => return Err(format!("{file}: missing metadata entry {:?}", p.key)),
            };
            values.insert(p.key.to_string(), v);
            flags.insert(p.key.to_string(), p.flag.to_string());
        }
        Ok(Params { values, flags, source: Source::Metadata(file.to_string()) })
    }

    /// The raw value of `key`.
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Replaces the value of `key` (keeps its source).
    pub fn set(&mut self, key: &str, value: &str) {
        self.values.insert(key.to_string(), value.to_string());
    }

    /// All values by metadata key.
    pub fn values(&self) -> &BTreeMap<String, String> {
        &self.values
    }

    /// Where the values came from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// How errors name `key`: `--L`, or `FILE: metadata entry "L" = "0"`.
    pub fn name(&self, key: &str) -> String {
        match &self.source {
            Source::Flags => format!("--{}", self.flags.get(key).map_or(key, String::as_str)),
            Source::Metadata(f) => format!("{f}: metadata entry {key:?} = {:?}", self.raw(key).unwrap_or("")),
        }
    }

    /// An error about `key`'s value: its [`Params::name`], a colon for metadata, then `msg`.
    pub fn error(&self, key: &str, msg: impl fmt::Display) -> String {
        match &self.source {
            Source::Flags => format!("{} {msg}", self.name(key)),
            Source::Metadata(_) => format!("{}: {msg}", self.name(key)),
        }
    }

    /// `key` parsed as `V`.
    ///
    /// # Errors
    /// If it is missing or cannot be parsed.
    pub fn get<V: FromStr>(&self, key: &str) -> Result<V, String> {
        let raw = self.raw(key).ok_or_else(|| self.error(key, "is missing"))?;
        raw.trim().parse().map_err(|_| format!("{}: cannot parse {raw:?}", self.name(key)))
    }

    /// A positive integer (sizes, counts).
    ///
    /// # Errors
    /// If it is not an integer above zero.
    pub fn positive(&self, key: &str) -> Result<usize, String> {
        let v: i64 = self.get(key)?;
        if v <= 0 {
            return Err(self.error(key, format!("must be positive, got {v}")));
        }
        usize::try_from(v).map_err(|_| self.error(key, "is too large"))
    }

    /// A finite real number.
    ///
    /// # Errors
    /// If it is not a finite number.
    pub fn finite(&self, key: &str) -> Result<f64, String> {
        let v: f64 = self.get(key)?;
        if !v.is_finite() {
            return Err(self.error(key, format!("must be finite, got {v}")));
        }
        Ok(v)
    }

    /// A coupling: finite and at most [`MAX_COUPLING`] in magnitude (lattice couplings are
    /// O(1); a huge one overflows the action in f32 and f64 alike).
    ///
    /// # Errors
    /// If it is not finite or too large.
    pub fn coupling(&self, key: &str) -> Result<f64, String> {
        let v = self.finite(key)?;
        if v.abs() > MAX_COUPLING {
            return Err(self.error(key, format!("must be at most {MAX_COUPLING:e} in magnitude, got {v:e}")));
        }
        Ok(v)
    }

    /// A comma-separated list of positive integers (`8,8`).
    ///
    /// # Errors
    /// If an entry is not a positive integer.
    pub fn positive_list(&self, key: &str) -> Result<Vec<usize>, String> {
        let raw = self.raw(key).ok_or_else(|| self.error(key, "is missing"))?;
        raw.split(',')
            .map(|p| p.trim().parse::<usize>().ok().filter(|&v| v > 0))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("{}: expected positive integers separated by commas, got {raw:?}", self.name(key)))
    }
}

/// `8,8` for `[8, 8]`.
pub fn join_list(v: &[usize]) -> String {
    v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")
}
