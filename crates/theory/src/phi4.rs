//! phi^4 theory (arXiv:2101.08176 section IV): the action of [`latflow_physics::Phi4`],
//! the tutorial's flow of affine couplings ([`latflow_flow::phi4`]), the observables
//! `chi_2 = V<M^2>`, `<M>`, `<|M|>`, the fraction of configurations with M > 0 (how much of
//! each vacuum a sampler sees), the time-slice correlator G(t) (t = 0..L/2), and the
//! quantities derived from their means: the connected `chi_2 = V(<M^2> - <M>^2)`, the Binder
//! cumulant `U_4 = 1 - <M^4>/(3<M^2>^2)`, the second-moment correlation length xi_2 and the effective
//! mass m_eff(t) (`latflow_physics::observables`); and the reference values known at the
//! run's couplings (P(M > 0) = 1/2 by symmetry everywhere):
//! - the tutorial's couplings (8x8, M2 = -4, lam = 8): its published HMC value
//!   chi_2 = 0.75 +- 0.01 and latflow's own, 20 times more precise;
//! - the free field (lam = 0, M2 > 0): exactly `chi_2 = 1 / (2 M2)`, `<M> = 0`, `U_4 = 0`,
//!   G(t) the lattice propagator at zero spatial momentum, `xi_2 = 1 / sqrt(M2)`, and
//!   `<|M|> = sqrt(2 chi_2 / (pi V))` on any lattice (the covariance is
//!   `(1/2)(-Laplacian + M2)^{-1}`, the constant mode is an eigenvector of the Laplacian with
//!   eigenvalue 0, and M is Gaussian with variance `chi_2 / V`);
//! - anywhere else: none (the tools run latflow's HMC on demand).
//!
//! The flow's prior is the free field by default (`--prior free`), its mass chosen before
//! training from the couplings ([`Setup::choose_auto`]): the free field with the theory's
//! propagator at the smallest non-zero lattice momentum, `M2_p = 1/(2 G(p_1)) - p^_1^2`, G from
//! a seeded pilot HMC run ([`pilot`]); README, "The default prior", has the measurements
//! behind the rule (and why not chi_2, which in the broken phase measures the vacua's distance).

use crate::params::join_list;
use crate::{Derived, Group, Observable, Param, Params, Reference, Setup, Theory, TrainDefaults};
use latflow_flow::model::Flow;
use latflow_flow::net::Activation;
use latflow_flow::phi4::{Coupling, Phi4FlowConfig, PriorKind};
use latflow_physics::observables::{
    binder_cumulant, effective_mass, free_correlator, lowest_momentum_propagator, magnetization, second_moment_xi,
    time_slice_correlator, two_point_susceptibility,
};
use latflow_physics::{phi4_action_var, Action, Lattice, Phi4};
use latflow_tensor::{Float, Var};
use rand::{Rng, RngCore};
use std::collections::BTreeMap;

/// The tutorial's HMC value of chi_2 on 8x8, M2 = -4, lam = 8 (arXiv:2101.08176 section IV).
pub const CHI2_HMC_TUTORIAL: (f64, f64) = (0.75, 0.01);

/// latflow's own HMC value at the tutorial's couplings, 20x more precise:
/// `latflow hmc phi4 --n-traj 1200000 --chains 8` (9.6M trajectories, seed 0, 8 s on the
/// 2-core dev box, 2026-11-22) gives chi_2 = 0.74439 +- 0.00048 (tau_int 1.12).
pub const CHI2_HMC_LATFLOW: (f64, f64) = (0.7444, 0.0005);

/// Largest lattice volume accepted (sites), before anything is allocated (the neighbour
/// tables of 4M sites in 4D take 256 MB).
pub const MAX_VOLUME: usize = 1 << 22;

/// Smallest non-zero quartic coupling (and free-field mass squared): below it the f32 action
/// of training sees 0.
pub const MIN_LAM: f64 = 1e-8;

/// Smallest mass squared of the free-field prior (`--prior free:M2`).
pub const MIN_PRIOR_M2: f64 = 1e-6;

/// Chains of the pilot HMC run behind `--prior free`.
pub const PILOT_CHAINS: usize = 4;
/// Recorded trajectories per chain of the pilot run (after [`PILOT_THERM`]) up to 32x32: the
/// mass to about 1% (G(p_1) of one configuration has a relative spread of 0.7 on every
/// volume), more than the prior needs; fewer on larger lattices (`2500 * 1024 / V`, at least
/// [`PILOT_THERM`]: 2% at 64x64, 3% from 128x128), so the pilot stays cheap there (its cost
/// per trajectory grows as `V^(5/4)`).
pub const PILOT_TRAJECTORIES: usize = 2500;
/// Thermalization trajectories per pilot chain.
pub const PILOT_THERM: usize = 250;
/// The pilot's seed: the chosen mass is a function of the couplings and the lattice alone.
pub const PILOT_SEED: u64 = 0x5eed_f7ee;
/// Below this acceptance the pilot is not trusted and `--prior free` asks for a mass.
pub const PILOT_MIN_ACCEPTANCE: f64 = 0.2;

/// What the pilot HMC run measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pilot {
    /// The propagator at the smallest non-zero momentum
    /// ([`latflow_physics::observables::lowest_momentum_propagator`]), its mean.
    pub g_p1: f64,
    /// Recorded trajectories, all chains.
    pub trajectories: usize,
    /// Leapfrog steps per trajectory (of length 1).
    pub n_steps: usize,
    /// The lowest acceptance of its chains: below [`PILOT_MIN_ACCEPTANCE`] a chain is stuck.
    pub min_acceptance: f64,
    /// Acceptance of its trajectories.
    pub acceptance: f64,
}

/// The propagator at the smallest non-zero momentum at the action's couplings from a short
/// HMC run with the global flip: [`PILOT_CHAINS`] chains of [`PILOT_TRAJECTORIES`], seed
/// [`PILOT_SEED`], trajectories of length 1 in `10 (V/64)^(1/4)` leapfrog steps (the
/// leapfrog's `<dH^2>` grows as `V eps^4`: the acceptance of 8x8's 10 steps, about 0.87 at
/// the tutorial's couplings, on every volume; 10 steps give 0.55 at 32x32 and 0 at 64x64).
pub fn pilot(action: &Phi4) -> Pilot {
    let v = action.dof();
    let n_steps = (10.0 * (v as f64 / 64.0).powf(0.25)).ceil().max(10.0) as usize;
    // a chain can stick in its first trajectories, started far from equilibrium, where the
    // forces are large (2 of 4 chains at 256x256): then twice and four times the steps
    let mut p = pilot_with(action, n_steps);
    for more in [2, 4] {
        if p.min_acceptance >= PILOT_MIN_ACCEPTANCE {
            break;
        }
        p = pilot_with(action, n_steps * more);
    }
    p
}

fn pilot_with(action: &Phi4, n_steps: usize) -> Pilot {
    use latflow_sampler::hmc::{run_chains, HmcConfig, Integrator, RunConfig};
    let v = action.dof();
    let config = RunConfig {
        hmc: HmcConfig { trajectory_length: 1.0, n_steps, flip: true, integrator: Integrator::Leapfrog },
        n_chains: PILOT_CHAINS,
        n_therm: PILOT_THERM,
        n_traj: (PILOT_TRAJECTORIES * 1024 / v.max(1)).clamp(PILOT_THERM, PILOT_TRAJECTORIES),
        seed: PILOT_SEED,
    };
    let start = |_: usize, r: &mut rand::rngs::StdRng| (0..action.dof()).map(|_| r.gen_range(-0.1..0.1)).collect();
    let lat = action.lattice();
    let measure = |x: &[f64], out: &mut [f64]| {
        out[0] = lowest_momentum_propagator(lat, x);
    };
    let recs = run_chains(action, &config, 1, start, measure, None);
    let n = recs.len() as f64;
    let mean = |k: usize| {
        recs.iter().map(|r| r.observables[k].iter().sum::<f64>() / r.observables[k].len() as f64).sum::<f64>() / n
    };
    Pilot {
        g_p1: mean(0),
        trajectories: config.n_chains * config.n_traj,
        n_steps,
        acceptance: recs.iter().map(|r| r.acceptance_rate()).sum::<f64>() / n,
        min_acceptance: recs.iter().map(|r| r.acceptance_rate()).fold(1.0, f64::min),
    }
}

/// `x` rounded to `digits` significant digits (a chosen prior mass reads as `0.672`).
fn round_sig(x: f64, digits: usize) -> f64 {
    format!("{x:.*e}", digits.saturating_sub(1)).parse().unwrap_or(x)
}

/// The phi^4 registry entry.
pub struct Phi4Theory;

impl Theory for Phi4Theory {
    fn name(&self) -> &'static str {
        "phi4"
    }

    fn title(&self) -> &'static str {
        "phi^4"
    }

    fn params(&self) -> Vec<Param> {
        vec![
            Param::new("L", "8", "lattice extent (L^nd sites)", Group::Lattice),
            Param::new("nd", "2", "dimensions (HMC; flows are 2D)", Group::HmcOnly),
            Param::new("m2", "-4", "bare mass squared M2", Group::Coupling),
            Param::new("lam", "8", "quartic coupling lam >= 0", Group::Coupling),
            Param::new("layers", "16", "affine coupling layers", Group::Flow),
            Param::new("hidden", "8,8", "hidden channels of each coupling's conv net", Group::Flow),
            Param::new("kernel", "3", "odd conv kernel size", Group::Flow),
            Param::new("final-tanh", "true", "tanh after each net's last convolution", Group::Flow)
                .stored_as("final_tanh"),
            Param::new("coupling", "affine", "affine | z2sym | z2odd (Z2-equivariant couplings)", Group::Flow)
                .optional(),
            Param::new("activation", "leaky", "leaky | tanh: hidden activation (tanh: smooth, for fhmc)", Group::Flow)
                .optional(),
            Param::new("prior", "free", "free | free:M2 | normal (free: chi_2-matched mass, see README)", Group::Flow)
                .added_later_as("normal"),
            Param::new("mixture", "none", "none | z2: train and sample (q(x) + q(-x))/2", Group::Flow).optional(),
        ]
    }

    /// The demo's schedule (README, "Why these defaults"): Adam lr 3e-3 cosine to 1e-4,
    /// 12000 steps of batch 64.
    fn train_defaults(&self) -> TrainDefaults {
        TrainDefaults::cosine(3e-3, 12000, 1000, "runs/phi4")
    }

    fn setup(&self, p: &Params) -> Result<Box<dyn Setup>, String> {
        let l = p.positive("L")?;
        let nd = p.positive("nd")?;
        if !(1..=4).contains(&nd) {
            return Err(p.error("nd", format!("must be in 1..=4 for phi4, got {nd}")));
        }
        if l.checked_pow(nd as u32).filter(|&v| v <= MAX_VOLUME).is_none() {
            return Err(format!("lattice {l}^{nd} is too large (at most {MAX_VOLUME} sites)"));
        }
        let (m2, lam) = (p.coupling("m2")?, p.coupling("lam")?);
        if lam < 0.0 {
            return Err(p.error("lam", format!("must be >= 0 (the action is unbounded below otherwise), got {lam}")));
        }
        if lam > 0.0 && lam < MIN_LAM {
            return Err(p.error("lam", format!("must be 0 or at least {MIN_LAM:e} (it is 0 in f32), got {lam:e}")));
        }
        if lam == 0.0 && m2 < MIN_LAM {
            return Err(
                p.error("m2", format!("must be positive when lam = 0 (the free field needs a mass), got {m2:e}"))
            );
        }
        let arch = Phi4FlowConfig {
            l,
            layers: p.positive("layers")?,
            hidden: p.positive_list("hidden")?,
            kernel: p.positive("kernel")?,
            final_tanh: p.get("final_tanh")?,
            activation: Activation::parse(p.raw("activation").unwrap_or("leaky"))
                .map_err(|e| p.error("activation", e))?,
            coupling: p.raw("coupling").unwrap_or("affine").parse().map_err(|e| p.error("coupling", e))?,
            prior: match p.raw("prior").unwrap_or("normal") {
                // the mass is chosen by `choose_auto` (a pilot HMC run), before any flow is built
                "free" => PriorKind::Normal,
                s => s.parse().map_err(|e| p.error("prior", format!("{e}, or free (latflow chooses M2)")))?,
            },
        };
        let auto_prior = p.raw("prior") == Some("free");
        if let PriorKind::Free { m2: mp } = arch.prior {
            // an f32 prior of variance 1/(2 mp) needs mp in a sane range (1e300 gave one
            // configuration proposed 8192 times, "ESS 1")
            if !(MIN_PRIOR_M2..=crate::params::MAX_COUPLING).contains(&mp) {
                return Err(p.error(
                    "prior",
                    format!("free:M2 needs M2 in [{MIN_PRIOR_M2:e}, {:e}], got {mp:e}", crate::params::MAX_COUPLING),
                ));
            }
        }
        let mixture = match p.raw("mixture").unwrap_or("none") {
            "none" => false,
            "z2" => true,
            other => return Err(p.error("mixture", format!("expected none or z2, got {other:?}"))),
        };
        let action = Phi4::new(Lattice::hypercubic(l, nd), m2, lam);
        Ok(Box::new(Phi4Setup { arch, nd, m2, lam, action, mixture, auto_prior }))
    }
}

/// phi^4 at given couplings, lattice and architecture.
pub struct Phi4Setup {
    /// The flow architecture.
    pub arch: Phi4FlowConfig,
    /// Dimensions of the lattice.
    pub nd: usize,
    /// Bare mass squared.
    pub m2: f64,
    /// Quartic coupling.
    pub lam: f64,
    action: Phi4,
    /// Train and sample the Z2 mixture (`--mixture z2`).
    pub mixture: bool,
    /// `--prior free` whose mass [`Setup::choose_auto`] has not chosen yet (`arch.prior`
    /// is a placeholder until then; no flow is built).
    pub auto_prior: bool,
}

impl Phi4Setup {
    /// The flow; the architecture is checked here (HMC needs none).
    fn flow<T: Float>(&self, rng: &mut dyn RngCore) -> Result<Flow<T>, String> {
        if self.nd != 2 {
            return Err(format!("the phi^4 flows are two-dimensional; this lattice has nd = {}", self.nd));
        }
        if self.auto_prior {
            // `train` chooses the mass first; a checkpoint stores it (`free:M2`), so a bare
            // `free` here is an edited or foreign file's metadata
            return Err("prior = free names no mass: latflow chooses it before training and a checkpoint \
                        stores it as free:M2 (edited metadata?)"
                .into());
        }
        self.arch.validate()?;
        Ok(self.arch.build(rng))
    }

    /// Whether these are the tutorial's couplings (8x8, M2 = -4, lam = 8).
    pub fn is_tutorial(&self) -> bool {
        self.arch.l == 8 && self.nd == 2 && self.m2 == -4.0 && self.lam == 8.0
    }
}

impl Setup for Phi4Setup {
    fn params(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("L".to_string(), self.arch.l.to_string()),
            ("m2".into(), self.m2.to_string()),
            ("lam".into(), self.lam.to_string()),
            ("layers".into(), self.arch.layers.to_string()),
            ("hidden".into(), join_list(&self.arch.hidden)),
            ("kernel".into(), self.arch.kernel.to_string()),
            ("final_tanh".into(), self.arch.final_tanh.to_string()),
            ("coupling".into(), self.arch.coupling.to_string()),
            ("activation".into(), self.arch.activation.name().into()),
            ("prior".into(), if self.auto_prior { "free".into() } else { self.arch.prior.to_string() }),
            ("mixture".into(), if self.mixture { "z2" } else { "none" }.into()),
        ])
    }

    fn describe(&self) -> String {
        let nd = if self.nd == 2 { String::new() } else { format!(" Nd={}", self.nd) };
        format!("L={}{nd} M2={} lam={}", self.arch.l, self.m2, self.lam)
    }

    fn describe_flow(&self) -> String {
        let mut s = format!("{} layers, hidden {:?}, kernel {}", self.arch.layers, self.arch.hidden, self.arch.kernel);
        if self.arch.coupling != Coupling::Affine {
            s += &format!(", {} couplings", self.arch.coupling);
        }
        if self.arch.activation != Activation::TUTORIAL {
            s += &format!(", {}", self.arch.activation.name());
        }
        if self.auto_prior {
            s += ", prior free (mass not chosen yet)";
        } else if self.arch.prior != PriorKind::Normal {
            s += &format!(", prior {}", self.arch.prior);
        }
        if self.mixture {
            s += ", Z2 mixture";
        }
        s
    }

    fn action(&self) -> &dyn Action {
        &self.action
    }

    fn tape_action(&self, x: &Var<f32>) -> Var<f32> {
        phi4_action_var(x, self.m2, self.lam)
    }

    fn flow_f32(&self, rng: &mut dyn RngCore) -> Result<Flow<f32>, String> {
        self.flow(rng)
    }

    fn flow_f64(&self, rng: &mut dyn RngCore) -> Result<Flow<f64>, String> {
        self.flow(rng)
    }

    fn config_shape(&self) -> Vec<usize> {
        self.action.lattice().shape().to_vec()
    }

    fn mixture(&self) -> bool {
        self.mixture
    }

    fn cpu_only(&self) -> Option<String> {
        // the free-field prior is sampled and evaluated on the host like the normal one and
        // moved to the device (Flow::sample_vars): nothing of it runs there
        let mut parts = Vec::new();
        if self.arch.coupling != Coupling::Affine {
            parts.push(format!("--coupling {}", self.arch.coupling));
        }
        if self.mixture {
            parts.push("--mixture z2".to_string());
        }
        (!parts.is_empty()).then(|| {
            format!("{} run on the CPU only for now (not yet tested on a GPU): drop --device cuda", parts.join(", "))
        })
    }

    fn choose_auto(&mut self) -> Result<Option<String>, String> {
        if !self.auto_prior {
            return Ok(None);
        }
        // a lattice or architecture the flows refuse is refused before the pilot runs
        if self.nd != 2 {
            return Err(format!("the phi^4 flows are two-dimensional; this lattice has nd = {}", self.nd));
        }
        self.arch.validate()?;
        let t0 = std::time::Instant::now();
        let (mp, how) = if self.lam == 0.0 {
            (self.m2, "the free theory's own mass, exact".to_string())
        } else {
            let pilot = pilot(&self.action);
            if pilot.min_acceptance < PILOT_MIN_ACCEPTANCE {
                return Err(format!(
                    "--prior free: the pilot HMC run that chooses the prior's mass accepts only {:.3} of its \
                     trajectories at these couplings (a chain: {:.3}, with {} leapfrog steps); give the mass \
                     (--prior free:M2) or use --prior normal",
                    pilot.acceptance, pilot.min_acceptance, pilot.n_steps
                ));
            }
            let p1 = 4.0 * (std::f64::consts::PI / self.arch.l as f64).sin().powi(2);
            let raw = 1.0 / (2.0 * pilot.g_p1) - p1;
            let mp = round_sig(raw, 3).clamp(MIN_PRIOR_M2, crate::params::MAX_COUPLING);
            let how = format!(
                "1/(2 G(p_1)) - p_1^2, G(p_1) = {:.4} from a pilot HMC run ({} trajectories of {} leapfrog steps, \
                 acceptance {:.2}, {:.2} s)",
                pilot.g_p1,
                pilot.trajectories,
                pilot.n_steps,
                pilot.acceptance,
                t0.elapsed().as_secs_f64()
            );
            (mp, how)
        };
        self.arch.prior = PriorKind::Free { m2: mp };
        self.auto_prior = false;
        Ok(Some(format!("prior: the free field with M2 = {mp} = {how}")))
    }

    fn hmc_start(&self, rng: &mut dyn RngCore) -> Vec<f64> {
        (0..self.action.dof()).map(|_| rng.gen_range(-0.1..0.1)).collect()
    }

    fn observables(&self) -> Vec<Observable> {
        let mut o = vec![
            Observable::new("chi2", "chi_2", 4, two_point_susceptibility),
            Observable::new("M", "<M>", 4, magnetization).histogram("magnetization"),
            Observable::new("absM", "<|M|>", 4, |x| magnetization(x).abs()),
            Observable::new("Mpos", "P(M > 0)", 3, |x| (magnetization(x) > 0.0) as u8 as f64),
            Observable::new("M2", "<M^2>", 5, |x| magnetization(x).powi(2)).hidden(),
            Observable::new("M4", "<M^4>", 6, |x| magnetization(x).powi(4)).hidden(),
        ];
        let l0 = self.arch.l;
        for t in 0..=l0 / 2 {
            let lat = self.action.lattice().clone();
            o.push(Observable::new(format!("G{t}"), format!("G({t})"), 4, move |x| {
                let mut g = vec![0.0; t + 1];
                time_slice_correlator(&lat, x, &mut g);
                g[t]
            }));
        }
        o
    }

    fn derived(&self) -> Vec<Derived> {
        let v = self.action.lattice().volume() as f64;
        let l0 = self.arch.l;
        let keys = |v: &[&str]| v.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        let mut d = vec![
            Derived::new("chi2c", "chi_2 connected", 4, &keys(&["M2", "M"]), move |m| v * (m[0] - m[1] * m[1])),
            Derived::new("U4", "U_4 (Binder)", 4, &keys(&["M4", "M2"]), |m| binder_cumulant(m[1], m[0])),
        ];
        let g_keys: Vec<String> = (0..=l0 / 2).map(|t| format!("G{t}")).collect();
        if l0 >= 4 && l0.is_multiple_of(2) {
            d.push(Derived::new("xi2", "xi_2 (2nd moment)", 3, &g_keys, move |g| second_moment_xi(g, l0)));
        }
        for t in 1..l0 / 2 {
            let k = [format!("G{}", t - 1), format!("G{t}"), format!("G{}", t + 1)];
            d.push(Derived::new(format!("meff{t}"), format!("m_eff({t})"), 3, &k, |g| {
                effective_mass(g[0], g[1], g[2])
            }));
        }
        d
    }

    fn references(&self) -> Vec<Reference> {
        let mut r = Vec::new();
        if self.is_tutorial() {
            let (t, l) = (CHI2_HMC_TUTORIAL, CHI2_HMC_LATFLOW);
            r.push(Reference::measured("chi2", "HMC, tutorial", t.0, t.1, 2, ""));
            r.push(Reference::measured("chi2", "HMC, latflow", l.0, l.1, 4, "9.6M trajectories"));
        }
        // Z2: the probability of either sign of M is 1/2 at any couplings (a flow or chain
        // that sits in one vacuum shows here)
        r.push(Reference::exact("Mpos", "exact, symmetry", 0.5, 3));
        if self.lam == 0.0 {
            // M is Gaussian with variance chi_2 / V, so <|M|> = sqrt(2 chi_2 / (pi V)) and U4 = 0
            let v = self.action.lattice().volume() as f64;
            let chi2 = 1.0 / (2.0 * self.m2);
            let free = "exact, free field";
            r.push(Reference::exact("chi2", free, chi2, 4));
            r.push(Reference::exact("M", free, 0.0, 4));
            r.push(Reference::exact("absM", free, (2.0 * chi2 / (std::f64::consts::PI * v)).sqrt(), 4));
            r.push(Reference::exact("chi2c", free, chi2, 4));
            r.push(Reference::exact("U4", free, 0.0, 4));
            let l0 = self.arch.l;
            let g: Vec<f64> = (0..=l0 / 2).map(|t| free_correlator(l0, self.m2, t)).collect();
            for (t, &gt) in g.iter().enumerate() {
                r.push(Reference::exact(format!("G{t}"), free, gt, 4));
            }
            if l0 >= 4 && l0.is_multiple_of(2) {
                r.push(Reference::exact("xi2", free, 1.0 / self.m2.sqrt(), 3));
            }
            for t in 1..l0 / 2 {
                r.push(Reference::exact(format!("meff{t}"), free, effective_mass(g[t - 1], g[t], g[t + 1]), 3));
            }
        }
        r
    }

    fn sample_image(&self, config: &[f64]) -> (Vec<f64>, usize, usize) {
        let s = self.action.lattice().shape();
        let cols = s[s.len() - 1];
        (config.to_vec(), config.len() / cols, cols)
    }

    fn sample_title(&self) -> String {
        "16 flow samples of phi".into()
    }
}
