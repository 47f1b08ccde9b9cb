//! U(1) gauge theory (arXiv:2101.08176 section V): the Wilson action of
//! [`latflow_physics::U1`], the tutorial's gauge-equivariant flow ([`latflow_flow::u1`]),
//! the observables <Q^2>, the average plaquette and the topological charge Q (whose
//! tunnelling is compared with plain HMC), and the reference values known at the run's
//! couplings: in two dimensions <Q^2> exactly on the torus at any beta and L
//! ([`latflow_physics::u1::exact_q2_2d`]), `<Q> = 0` by symmetry, and the tutorial's HMC
//! value <Q^2> = 1.23 +- 0.02 at its own couplings (8x8, beta = 2).

use crate::params::join_list;
use crate::{Group, Observable, Param, Params, Reference, Setup, Theory, TrainDefaults};
use latflow_flow::model::Flow;
use latflow_flow::net::Activation;
use latflow_flow::u1::U1FlowConfig;
use latflow_physics::u1::exact_q2_2d;
use latflow_physics::{u1_action_var, Action, Lattice, U1};
use latflow_tensor::{Float, Var};
use rand::{Rng, RngCore};
use std::collections::BTreeMap;

/// The tutorial's HMC value of <Q^2> on 8x8 at beta = 2 (arXiv:2101.08176 section V).
pub const Q2_HMC_TUTORIAL: (f64, f64) = (1.23, 0.02);

/// Largest lattice volume accepted (sites), before anything is allocated (the neighbour
/// tables of 4M sites in 4D take 256 MB).
pub const MAX_VOLUME: usize = 1 << 22;

/// The U(1) registry entry.
pub struct U1Theory;

impl Theory for U1Theory {
    fn name(&self) -> &'static str {
        "u1"
    }

    fn title(&self) -> &'static str {
        "U(1)"
    }

    fn params(&self) -> Vec<Param> {
        vec![
            Param::new("L", "8", "lattice extent (a multiple of 4 for flows)", Group::Lattice),
            Param::new("nd", "2", "dimensions (HMC; flows are 2D)", Group::HmcOnly),
            Param::new("beta", "2", "inverse coupling beta", Group::Coupling),
            Param::new("layers", "16", "gauge-equivariant coupling layers", Group::Flow),
            Param::new("mix", "2", "components of each NCP mixture", Group::Flow).stored_as("n_mix"),
            Param::new("hidden", "8,8", "hidden channels of each coupling's conv net", Group::Flow),
            Param::new("kernel", "3", "odd conv kernel size", Group::Flow),
            Param::new("activation", "leaky", "leaky | tanh: hidden activation (tanh: smooth, for fhmc)", Group::Flow)
                .optional(),
        ]
    }

    /// Adam lr 5e-3 cosine to 1e-4, 5000 steps of batch 64 (README, "U(1) gauge theory").
    fn train_defaults(&self) -> TrainDefaults {
        TrainDefaults::cosine(5e-3, 5000, 500, "runs/u1")
    }

    fn setup(&self, p: &Params) -> Result<Box<dyn Setup>, String> {
        let l = p.positive("L")?;
        let nd = p.positive("nd")?;
        if !(2..=4).contains(&nd) {
            return Err(p.error("nd", format!("must be in 2..=4 for u1, got {nd}")));
        }
        if l.checked_pow(nd as u32).filter(|&v| v <= MAX_VOLUME).is_none() {
            return Err(format!("lattice {l}^{nd} is too large (at most {MAX_VOLUME} sites)"));
        }
        let beta = p.coupling("beta")?;
        if l < 2 {
            return Err(
                p.error("L", format!("must be at least 2 (a plaquette needs two sites per direction), got {l}"))
            );
        }
        let arch = U1FlowConfig {
            l,
            layers: p.positive("layers")?,
            n_mix: p.positive("n_mix")?,
            hidden: p.positive_list("hidden")?,
            kernel: p.positive("kernel")?,
            activation: Activation::parse(p.raw("activation").unwrap_or("leaky"))
                .map_err(|e| p.error("activation", e))?,
        };
        let action = U1::new(Lattice::hypercubic(l, nd), beta);
        Ok(Box::new(U1Setup { arch, nd, beta, action }))
    }
}

/// U(1) at given beta, lattice and architecture.
pub struct U1Setup {
    /// The flow architecture.
    pub arch: U1FlowConfig,
    /// Dimensions of the lattice.
    pub nd: usize,
    /// Inverse coupling.
    pub beta: f64,
    action: U1,
}

impl U1Setup {
    /// The flow; the architecture is checked here (HMC needs none).
    fn flow<T: Float>(&self, rng: &mut dyn RngCore) -> Result<Flow<T>, String> {
        if self.nd != 2 {
            return Err(format!("the U(1) flows are two-dimensional; this lattice has nd = {}", self.nd));
        }
        self.arch.validate()?;
        Ok(self.arch.build(rng))
    }

    /// Whether these are the tutorial's couplings (8x8, beta = 2).
    pub fn is_tutorial(&self) -> bool {
        self.arch.l == 8 && self.nd == 2 && self.beta == 2.0
    }
}

impl Setup for U1Setup {
    fn params(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("L".to_string(), self.arch.l.to_string()),
            ("beta".into(), self.beta.to_string()),
            ("layers".into(), self.arch.layers.to_string()),
            ("n_mix".into(), self.arch.n_mix.to_string()),
            ("hidden".into(), join_list(&self.arch.hidden)),
            ("kernel".into(), self.arch.kernel.to_string()),
            ("activation".into(), self.arch.activation.name().into()),
        ])
    }

    fn describe(&self) -> String {
        let nd = if self.nd == 2 { String::new() } else { format!(" Nd={}", self.nd) };
        format!("L={}{nd} beta={}", self.arch.l, self.beta)
    }

    fn describe_flow(&self) -> String {
        let a = &self.arch;
        let act =
            if a.activation == Activation::TUTORIAL { String::new() } else { format!(", {}", a.activation.name()) };
        format!("{} layers, {} mixture components, hidden {:?}, kernel {}{act}", a.layers, a.n_mix, a.hidden, a.kernel)
    }

    fn action(&self) -> &dyn Action {
        &self.action
    }

    fn tape_action(&self, x: &Var<f32>) -> Var<f32> {
        u1_action_var(x, self.beta)
    }

    fn flow_f32(&self, rng: &mut dyn RngCore) -> Result<Flow<f32>, String> {
        self.flow(rng)
    }

    fn flow_f64(&self, rng: &mut dyn RngCore) -> Result<Flow<f64>, String> {
        self.flow(rng)
    }

    fn config_shape(&self) -> Vec<usize> {
        // links mu-major: (nd, L, ..., L)
        let mut s = vec![self.nd];
        s.extend_from_slice(self.action.lattice().shape());
        s
    }

    fn hmc_start(&self, rng: &mut dyn RngCore) -> Vec<f64> {
        (0..self.action.dof()).map(|_| rng.gen_range(0.0..std::f64::consts::TAU)).collect()
    }

    fn observables(&self) -> Vec<Observable> {
        let (g1, g2, g3) = (self.action.clone(), self.action.clone(), self.action.clone());
        vec![
            Observable::new("q2", "<Q^2>", 3, move |x| {
                let q = g1.topological_charge(x);
                q * q
            }),
            Observable::new("plaq", "<plaquette>", 4, move |x| g2.average_plaquette(x)).without_reference(),
            Observable::new("Q", "<Q>", 3, move |x| g3.topological_charge(x)).charge("topology"),
        ]
    }

    fn references(&self) -> Vec<Reference> {
        let mut r = Vec::new();
        if self.nd == 2 {
            r.push(Reference::exact("q2", "exact, 2D", exact_q2_2d(self.beta, self.arch.l * self.arch.l), 4));
        }
        if self.is_tutorial() {
            r.push(Reference::measured("q2", "HMC, tutorial", Q2_HMC_TUTORIAL.0, Q2_HMC_TUTORIAL.1, 2, ""));
        }
        r.push(Reference::exact("Q", "exact, symmetry", 0.0, 0));
        r
    }

    fn sample_image(&self, config: &[f64]) -> (Vec<f64>, usize, usize) {
        let s = self.action.lattice().shape();
        let mut p = vec![0.0; self.action.lattice().volume()];
        self.action.plaquettes(config, 0, 1, &mut p);
        let cols = s[s.len() - 1];
        (p.iter().map(|x| x.cos()).collect(), p.len() / cols, cols)
    }

    fn sample_title(&self) -> String {
        "cos P_01 of 16 flow samples".into()
    }
}
