//! latflow-theory: one module per lattice theory, behind one interface that every tool
//! (`latflow train`, `sample`, `apply`, `hmc`) uses.
//!
//! A [`Theory`] is an entry of the registry ([`builtin`]): its name, its parameters
//! (couplings, lattice, flow architecture, with defaults: [`Param`]) and its training
//! defaults. Given parameter values (from flags or from a checkpoint's metadata, both
//! validated by the same code) it makes a [`Setup`]: the theory at those couplings, which
//! holds everything the tools need:
//! - the action on `f64` slices with its force (HMC, evaluation) and on the tape (training);
//! - the flow architectures it offers, built in f32 or f64;
//! - the observables it reports (name, per-configuration function);
//! - its reference values *for these couplings* ([`Reference`]): exact results where
//!   known, latflow's own cached HMC values, a published number only at its own couplings
//!   (the tools run latflow's HMC on demand for observables without a reference);
//! - what its sample plots show.
//!
//! Files: [`params`] (parameters and their parsing), [`phi4`], [`u1`] (the two theories),
//! this file (the traits and the registry). Adding a theory: `docs/architecture.md`,
//! "Add a theory".

pub mod params;
pub mod phi4;
pub mod u1;

pub use params::{Group, Param, Params, Source};

use latflow_flow::model::Flow;
use latflow_flow::train::TrainConfig;
use latflow_physics::Action;
use latflow_tensor::{AdamConfig, Var};
use rand::RngCore;
use std::collections::BTreeMap;

/// A lattice theory: a registry entry that parses and validates its parameters.
pub trait Theory: Sync {
    /// The name on the command line and in checkpoints (`phi4`).
    fn name(&self) -> &'static str;
    /// The name in printed text (`phi^4`).
    fn title(&self) -> &'static str;
    /// Its parameters with defaults, in the order of the help text.
    fn params(&self) -> Vec<Param>;
    /// Training defaults (schedule, run directory).
    fn train_defaults(&self) -> TrainDefaults;
    /// The theory at the given parameter values.
    ///
    /// # Errors
    /// A message naming the bad value (a flag or a metadata entry, see [`Params::error`]).
    fn setup(&self, p: &Params) -> Result<Box<dyn Setup>, String>;
}

/// A theory at given couplings, lattice and architecture.
pub trait Setup: Sync {
    /// The values it was made from, canonical (what checkpoints store), by metadata key.
    fn params(&self) -> BTreeMap<String, String>;
    /// The couplings and lattice in a few words (`L=8 M2=-4 lam=8`).
    fn describe(&self) -> String;
    /// The flow architecture in a few words (`16 layers, hidden [8, 8], kernel 3`).
    fn describe_flow(&self) -> String;
    /// The action on `f64` slices with its force (HMC, ensembles).
    fn action(&self) -> &dyn Action;
    /// `S(x)` of a batch on the tape (training; `log p = -S`).
    fn tape_action(&self, x: &Var<f32>) -> Var<f32>;
    /// A freshly initialized flow in f32, all randomness from `rng`.
    ///
    /// # Errors
    /// If the setup cannot carry a flow (e.g. a lattice of another dimension).
    fn flow_f32(&self, rng: &mut dyn RngCore) -> Result<Flow<f32>, String>;
    /// The same flow in f64 (`apply` on f64 inputs, audits).
    ///
    /// # Errors
    /// As [`Setup::flow_f32`].
    fn flow_f64(&self, rng: &mut dyn RngCore) -> Result<Flow<f64>, String>;
    /// Chooses what the user left to latflow (phi^4's `--prior free`: the prior's mass from
    /// a pilot HMC run at the couplings) and says what it chose, for the log; `train` calls
    /// it before building a new flow. Nothing to choose by default.
    ///
    /// # Errors
    /// If the choice cannot be made (e.g. a pilot chain that does not move).
    fn choose_auto(&mut self) -> Result<Option<String>, String> {
        Ok(None)
    }
    /// The shape of one configuration as saved ensembles store it (`(L, L)` for a 2D
    /// scalar field, `(2, L, L)` for 2D links); flat by default.
    fn config_shape(&self) -> Vec<usize> {
        vec![self.action().dof()]
    }
    /// Whether flows are trained and sampled as the mixture `q_mix(x) = (q(x) + q(-x)) / 2`
    /// of the flow and its image under the action's global flip (`--mixture z2`,
    /// `latflow_flow::z2`); false by default.
    fn mixture(&self) -> bool {
        false
    }
    /// What of this setup's flow runs on the CPU only (`--device cuda` refuses it, saying
    /// so); `None` when everything has CUDA kernels.
    fn cpu_only(&self) -> Option<String> {
        None
    }
    /// A starting configuration for HMC.
    fn hmc_start(&self, rng: &mut dyn RngCore) -> Vec<f64>;
    /// The observables it measures on every configuration; the first is the primary one.
    fn observables(&self) -> Vec<Observable>;
    /// Quantities computed from the means of several observables (connected
    /// susceptibility, Binder cumulant, effective mass, correlation length), reported after
    /// the observables; none by default.
    fn derived(&self) -> Vec<Derived> {
        Vec::new()
    }
    /// Reference values known for exactly these couplings and lattice.
    fn references(&self) -> Vec<Reference>;
    /// What a sample plot shows of one configuration: values on a `(rows, cols)` grid,
    /// and the plot's title for 16 flow samples.
    fn sample_image(&self, config: &[f64]) -> (Vec<f64>, usize, usize);
    /// The title of the grid of sample images.
    fn sample_title(&self) -> String;
}

/// Settings of a training run that depend on the theory.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainDefaults {
    /// Optimizer, schedule, batch and steps.
    pub train: TrainConfig,
    /// Steps between progress lines and checkpoints.
    pub era: usize,
    /// The run directory.
    pub out: &'static str,
}

impl TrainDefaults {
    /// Batch 64, Adam from `lr` along a cosine to 1e-4, seed 0.
    pub fn cosine(lr: f64, steps: usize, era: usize, out: &'static str) -> Self {
        let train = TrainConfig {
            batch: 64,
            adam: AdamConfig { lr, ..AdamConfig::default() },
            lr_final: Some(1e-4),
            steps,
            seed: 0,
        };
        TrainDefaults { train, era, out }
    }
}

/// A function of one configuration.
pub type ConfigFn = Box<dyn Fn(&[f64]) -> f64 + Sync>;

/// An observable measured on every configuration.
pub struct Observable {
    /// Short name for files (`chi2`, `q2`).
    pub key: String,
    /// Name in printed text (`chi_2`, `<Q^2>`).
    pub label: String,
    /// Decimals printed.
    pub digits: usize,
    /// Its value on one configuration.
    pub f: ConfigFn,
    /// Whether ensembles are compared with a reference for it (latflow's HMC runs on
    /// demand when the theory knows none).
    pub compare: bool,
    /// An integer-valued charge whose tunnelling between sectors is reported and plotted
    /// against a plain HMC chain: the plot's file stem (`topology`).
    pub tunnelling: Option<&'static str>,
    /// Whether it is printed (false for inputs of derived quantities only, like `M^4`).
    pub shown: bool,
    /// A distribution worth seeing (phi^4's M): its histogram along the flow's chain, next
    /// to HMC's with and without the global flip, goes to `{stem}.svg`.
    pub histogram: Option<&'static str>,
}

impl Observable {
    /// An observable compared with references, not a charge.
    pub fn new(
        key: impl Into<String>,
        label: impl Into<String>,
        digits: usize,
        f: impl Fn(&[f64]) -> f64 + Sync + 'static,
    ) -> Self {
        Observable {
            key: key.into(),
            label: label.into(),
            digits,
            f: Box::new(f),
            compare: true,
            tunnelling: None,
            shown: true,
            histogram: None,
        }
    }

    /// The same, with its histogram plotted in `{stem}.svg`.
    pub fn histogram(mut self, stem: &'static str) -> Self {
        self.histogram = Some(stem);
        self
    }

    /// The same, measured only as an input of derived quantities (not printed).
    pub fn hidden(mut self) -> Self {
        self.shown = false;
        self.compare = false;
        self
    }

    /// The same, reported without a reference.
    pub fn without_reference(mut self) -> Self {
        self.compare = false;
        self
    }

    /// The same, marked as a charge whose history is plotted in `{stem}.svg`.
    pub fn charge(mut self, stem: &'static str) -> Self {
        self.tunnelling = Some(stem);
        self
    }
}

/// A function of several means.
pub type MeansFn = Box<dyn Fn(&[f64]) -> f64 + Sync>;

/// A function of the means of observables: `F(<A_1>, ..., <A_k>)`, its error from the
/// Gamma method of the projected series (Wolff 2004 section 3.1) along a chain, or the
/// delta method under reweighting.
pub struct Derived {
    /// Short name for files (`U4`).
    pub key: String,
    /// Name in printed text (`U_4`).
    pub label: String,
    /// Decimals printed.
    pub digits: usize,
    /// Keys of the observables whose means it takes, in the order `f` reads them.
    pub inputs: Vec<String>,
    /// `F` of those means.
    pub f: MeansFn,
    /// Whether it is compared with references (latflow's HMC on demand when none is known).
    pub compare: bool,
}

impl Derived {
    /// A derived quantity compared with references.
    pub fn new(
        key: impl Into<String>,
        label: impl Into<String>,
        digits: usize,
        inputs: &[String],
        f: impl Fn(&[f64]) -> f64 + Sync + 'static,
    ) -> Self {
        Derived { key: key.into(), label: label.into(), digits, inputs: inputs.to_vec(), f: Box::new(f), compare: true }
    }

    /// The positions of its inputs in `obs`.
    ///
    /// # Panics
    /// If an input is not among them (a theory's definition error).
    #[track_caller]
    pub fn columns(&self, obs: &[Observable]) -> Vec<usize> {
        self.inputs
            .iter()
            .map(|k| {
                obs.iter().position(|o| &o.key == k).unwrap_or_else(|| panic!("derived {}: no input {k}", self.key))
            })
            .collect()
    }
}

/// A reference value of one observable at a setup's couplings.
#[derive(Clone, Debug, PartialEq)]
pub struct Reference {
    /// The observable's (or derived quantity's) key.
    pub key: String,
    /// Where it comes from (`exact, 2D`, `HMC, tutorial`, `HMC, latflow`).
    pub label: String,
    /// The value.
    pub value: f64,
    /// Its error; zero for exact values.
    pub error: f64,
    /// Decimals printed.
    pub digits: usize,
    /// A remark printed after it (`9.6M trajectories`).
    pub note: String,
}

impl Reference {
    /// An exact value.
    pub fn exact(key: impl Into<String>, label: &str, value: f64, digits: usize) -> Self {
        Reference { key: key.into(), label: label.into(), value, error: 0.0, digits, note: String::new() }
    }

    /// A measured value with its error.
    pub fn measured(key: impl Into<String>, label: &str, value: f64, error: f64, digits: usize, note: &str) -> Self {
        Reference { key: key.into(), label: label.into(), value, error, digits, note: note.into() }
    }

    /// `(estimate - value) / sqrt(error^2 + self.error^2)`: the deviation in sigma.
    pub fn pull(&self, estimate: f64, error: f64) -> f64 {
        (estimate - self.value) / (error * error + self.error * self.error).sqrt()
    }
}

/// The theories latflow ships, in the order of the help text. Adding a theory adds one
/// line here.
pub fn builtin() -> Vec<&'static dyn Theory> {
    vec![&phi4::Phi4Theory, &u1::U1Theory]
}

/// The theory called `name` in `theories`.
pub fn find<'a>(theories: &[&'a dyn Theory], name: &str) -> Option<&'a dyn Theory> {
    theories.iter().copied().find(|t| t.name() == name)
}
