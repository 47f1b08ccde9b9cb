//! phi^4 flow runs: `latflow train phi4`, `latflow sample` on a phi^4 checkpoint, and
//! the default demo. Flags, metadata, analysis and plots.

use super::flowrun::{self, Ensemble};
use super::{Args, CliError, CliResult};
use latflow::flow::checkpoint::{self, meta_get};
use latflow::flow::phi4::{Phi4Flow, Phi4FlowConfig};
use latflow::flow::plot;
use latflow::flow::safetensors::SafeTensors;
use latflow::flow::train::{TrainConfig, Trainer};
use latflow::physics::observables::two_point_susceptibility;
use latflow::physics::{phi4_action_var, Action, Lattice, Phi4};
use latflow::sampler::reweight::reweight;
use latflow::sampler::stats::gamma_method;
use latflow::tensor::{AdamConfig, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The tutorial's HMC value of chi_2 on 8x8, M2 = -4, lam = 8 (arXiv:2101.08176 section IV).
pub const CHI2_HMC: (f64, f64) = (0.75, 0.01);

/// Flags of `latflow train phi4` (and the demo's defaults).
pub const TRAIN_FLAGS: &[&str] = &["L", "m2", "lam", "layers", "hidden", "kernel"];

/// A phi^4 training run's settings. Defaults: the tutorial's model and couplings;
/// training schedule chosen for the demo (see README, "Why these defaults").
#[derive(Clone, Debug)]
pub struct Phi4Run {
    /// Architecture.
    pub arch: Phi4FlowConfig,
    /// Bare mass squared M2. Default -4.
    pub m2: f64,
    /// Quartic coupling lam. Default 8.
    pub lam: f64,
    /// Training settings.
    pub train: TrainConfig,
    /// Steps between progress lines and checkpoints. Default 500.
    pub era: usize,
    /// Run directory. Default `runs/phi4`.
    pub out: PathBuf,
    /// Proposals for the evaluation ensemble. Default 8192.
    pub n: usize,
    /// Batch for sampling. Default 1024.
    pub sample_batch: usize,
    /// Thermalization steps dropped from the Metropolis chain. Default 512.
    pub therm: usize,
}

impl Default for Phi4Run {
    fn default() -> Self {
        Phi4Run {
            arch: Phi4FlowConfig::default(),
            m2: -4.0,
            lam: 8.0,
            train: TrainConfig {
                batch: 64,
                adam: AdamConfig { lr: 3e-3, ..AdamConfig::default() },
                lr_final: Some(1e-4),
                steps: 4000,
                seed: 0,
            },
            era: 500,
            out: PathBuf::from("runs/phi4"),
            n: 8192,
            sample_batch: 1024,
            therm: 512,
        }
    }
}

impl Phi4Run {
    /// Settings from flags, starting from the defaults.
    pub fn from_args(a: &Args) -> CliResult<Self> {
        let d = Phi4Run::default();
        let mut r = d.clone();
        r.arch.l = a.positive("L", d.arch.l)?;
        r.m2 = a.finite("m2", d.m2)?;
        r.lam = a.finite("lam", d.lam)?;
        r.arch.layers = a.positive("layers", d.arch.layers)?;
        if let Some(h) = a.opt::<String>("hidden")? {
            r.arch.hidden = flowrun::parse_hidden(&h)?;
        }
        r.arch.kernel = a.positive("kernel", d.arch.kernel)?;
        let c = flowrun::TrainArgs::parse(
            a,
            &flowrun::TrainArgs {
                train: d.train.clone(),
                era: d.era,
                out: d.out.clone(),
                n: d.n,
                sample_batch: d.sample_batch,
                therm: d.therm,
            },
        )?;
        (r.train, r.era, r.out, r.n, r.sample_batch, r.therm) = (c.train, c.era, c.out, c.n, c.sample_batch, c.therm);
        if r.lam < 0.0 {
            return Err(CliError(format!("--lam must be non-negative (the action is unbounded below), got {}", r.lam)));
        }
        r.arch.validate().map_err(CliError)?;
        Ok(r)
    }

    /// The checkpoint metadata describing this run.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let h: Vec<String> = self.arch.hidden.iter().map(|v| v.to_string()).collect();
        BTreeMap::from([
            ("theory".to_string(), "phi4".to_string()),
            ("L".into(), self.arch.l.to_string()),
            ("m2".into(), self.m2.to_string()),
            ("lam".into(), self.lam.to_string()),
            ("layers".into(), self.arch.layers.to_string()),
            ("hidden".into(), h.join(",")),
            ("kernel".into(), self.arch.kernel.to_string()),
            ("final_tanh".into(), self.arch.final_tanh.to_string()),
            ("seed".into(), self.train.seed.to_string()),
            ("batch".into(), self.train.batch.to_string()),
            ("lr".into(), self.train.adam.lr.to_string()),
        ])
    }
}

/// The model a phi^4 checkpoint describes, with its parameters loaded.
pub fn load(path: &Path) -> CliResult<(Phi4Flow<f32>, Phi4, BTreeMap<String, String>)> {
    let err = |e: latflow::flow::safetensors::CheckpointError| CliError(format!("{}: {e}", path.display()));
    let st = SafeTensors::read(path).map_err(err)?;
    let meta = st.metadata.clone();
    let theory: String = meta_get(&meta, "theory").map_err(err)?;
    if theory != "phi4" {
        return Err(CliError(format!("{}: a {theory} checkpoint, expected phi4", path.display())));
    }
    let arch = Phi4FlowConfig {
        l: meta_get(&meta, "L").map_err(err)?,
        layers: meta_get(&meta, "layers").map_err(err)?,
        hidden: flowrun::parse_hidden(&meta_get::<String>(&meta, "hidden").map_err(err)?)?,
        kernel: meta_get(&meta, "kernel").map_err(err)?,
        final_tanh: meta_get(&meta, "final_tanh").map_err(err)?,
    };
    arch.validate().map_err(|e| CliError(format!("{}: {e}", path.display())))?;
    let mut flow = arch.build::<f32, _>(&mut StdRng::seed_from_u64(0));
    checkpoint::load_params(&st, &mut flow).map_err(err)?;
    let action = Phi4::new(
        Lattice::new(&[arch.l, arch.l]),
        meta_get(&meta, "m2").map_err(err)?,
        meta_get(&meta, "lam").map_err(err)?,
    );
    Ok((flow, action, meta))
}

/// `latflow train phi4 ...`: train, checkpoint, then evaluate like `latflow sample`.
pub fn train(a: &Args) -> CliResult<()> {
    let mut run = Phi4Run::from_args(a)?;
    let quiet = a.has("quiet");
    let flow = match a.opt::<PathBuf>("resume")? {
        None => run.arch.build::<f32, _>(&mut StdRng::seed_from_u64(run.train.seed)),
        Some(p) => {
            let (flow, _, meta) = load(&p)?;
            adopt_checkpoint(&mut run, a, &p, &meta)?;
            flow
        }
    };
    let mut trainer = Trainer::new(flow, run.train.clone());
    if let Some(p) = a.opt::<PathBuf>("resume")? {
        let (_, meta) = checkpoint::read_metadata(&p).map_err(|e| CliError(format!("{}: {e}", p.display())))?;
        trainer.step = meta_get(&meta, "step").map_err(|e| CliError(format!("{}: {e}", p.display())))?;
        if trainer.step >= run.train.steps {
            return Err(CliError(format!(
                "{} is at step {}, nothing to do for --steps {}",
                p.display(),
                trainer.step,
                run.train.steps
            )));
        }
        flowrun::restore_optimizer(&mut trainer, &p)?;
    }
    execute(run, trainer, quiet)
}

/// On `--resume`, the run continues the checkpoint's model and theory: its architecture
/// and couplings replace the defaults, and a flag that contradicts them is an error
/// (otherwise the run would train on another action and save metadata that no longer
/// describes the tensors).
fn adopt_checkpoint(run: &mut Phi4Run, a: &Args, p: &Path, meta: &BTreeMap<String, String>) -> CliResult<()> {
    let err = |e: latflow::flow::safetensors::CheckpointError| CliError(format!("{}: {e}", p.display()));
    let stored = Phi4FlowConfig {
        l: meta_get(meta, "L").map_err(err)?,
        layers: meta_get(meta, "layers").map_err(err)?,
        hidden: flowrun::parse_hidden(&meta_get::<String>(meta, "hidden").map_err(err)?)?,
        kernel: meta_get(meta, "kernel").map_err(err)?,
        final_tanh: meta_get(meta, "final_tanh").map_err(err)?,
    };
    let (m2, lam): (f64, f64) = (meta_get(meta, "m2").map_err(err)?, meta_get(meta, "lam").map_err(err)?);
    let checks = [
        ("L", run.arch.l != stored.l, stored.l.to_string()),
        ("layers", run.arch.layers != stored.layers, stored.layers.to_string()),
        ("hidden", run.arch.hidden != stored.hidden, meta["hidden"].clone()),
        ("kernel", run.arch.kernel != stored.kernel, stored.kernel.to_string()),
        ("m2", run.m2 != m2, m2.to_string()),
        ("lam", run.lam != lam, lam.to_string()),
    ];
    for (flag, differs, value) in checks {
        if differs && a.opt::<String>(flag)?.is_some() {
            return Err(CliError(format!(
                "--{flag} contradicts the checkpoint {} being resumed ({flag} = {value}); drop the flag",
                p.display()
            )));
        }
    }
    (run.arch, run.m2, run.lam) = (stored, m2, lam);
    Ok(())
}

/// Runs training then evaluation for prepared settings (the demo enters here).
pub fn execute(
    run: Phi4Run,
    mut trainer: Trainer<f32, latflow::flow::prior::NormalPrior, latflow::flow::affine::AffineCoupling<f32>>,
    quiet: bool,
) -> CliResult<()> {
    let dir = flowrun::make_dir(&run.out)?;
    let (m2, lam) = (run.m2, run.lam);
    let action = move |x: &Var<f32>| phi4_action_var(x, m2, lam);
    eprintln!(
        "training phi^4 flow: L={} M2={} lam={} | {} layers, hidden {:?}, kernel {} | batch {}, {} steps, lr {} -> {:?}, seed {}",
        run.arch.l, m2, lam, run.arch.layers, run.arch.hidden, run.arch.kernel, run.train.batch, run.train.steps,
        run.train.adam.lr, run.train.lr_final, run.train.seed
    );
    let t0 = Instant::now();
    flowrun::train_loop(&mut trainer, &action, run.era, &dir, &run.metadata(), quiet)?;
    let train_s = t0.elapsed().as_secs_f64();
    flowrun::plot_history(&dir)?;
    let phys = Phi4::new(Lattice::new(&[run.arch.l, run.arch.l]), m2, lam);
    evaluate(&trainer.flow, &phys, run.n, run.sample_batch, run.therm, run.train.seed, &dir, Some(train_s))
}

/// `latflow sample --checkpoint FILE` for phi^4.
pub fn sample(path: &Path, a: &Args) -> CliResult<()> {
    let (flow, phys, _) = load(path)?;
    let n = a.positive("n", 8192)?;
    let batch = a.positive("batch", 1024)?;
    let therm = a.get("therm", 512usize)?;
    let seed = a.get("seed", 1u64)?;
    let out: PathBuf = a.get("out", path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf))?;
    let dir = flowrun::make_dir(&out)?;
    evaluate(&flow, &phys, n, batch, therm, seed, &dir, None)
}

/// Draws the ensemble, prints the summary and writes the plots.
#[allow(clippy::too_many_arguments)]
fn evaluate(
    flow: &Phi4Flow<f32>,
    phys: &Phi4,
    n: usize,
    batch: usize,
    therm: usize,
    seed: u64,
    dir: &Path,
    train_s: Option<f64>,
) -> CliResult<()> {
    if therm >= n {
        return Err(CliError(format!("--therm {therm} must be below the number of proposals {n}")));
    }
    let t0 = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let e: Ensemble = flowrun::ensemble(flow, n, batch, &mut rng, |c| phys.action(c));
    let sample_s = t0.elapsed().as_secs_f64();
    let lw = e.log_weights();
    let chi_all: Vec<f64> = e.configs.iter().map(|c| two_point_susceptibility(c)).collect();
    let chain = e.chain.chain_of(&chi_all, therm);
    let g = gamma_method(&chain, 1.5);
    let rw = reweight(&chi_all, &lw);
    println!("== phi^4 flow ensemble: {} proposals (batch {batch}), seed {seed}", n);
    if let Some(t) = train_s {
        println!("training time            {t:.1} s");
    }
    println!("sampling time            {sample_s:.1} s");
    println!("Metropolis acceptance    {:.3}", e.chain.acceptance());
    println!("ESS / N                  {:.3}", rw.ess);
    println!(
        "chi_2 (Metropolis)       {:.4} +- {:.4}   (tau_int {:.2} +- {:.2}, {} steps after {therm} thermalization)",
        g.mean,
        g.error,
        g.tau_int,
        g.tau_int_error,
        chain.len()
    );
    println!("chi_2 (reweighting)      {:.4} +- {:.4}", rw.estimate.value, rw.estimate.error);
    println!("chi_2 (HMC, tutorial)    {:.2} +- {:.2}", CHI2_HMC.0, CHI2_HMC.1);
    let pull = (g.mean - CHI2_HMC.0) / (g.error * g.error + CHI2_HMC.1 * CHI2_HMC.1).sqrt();
    println!("deviation from HMC       {pull:+.2} sigma");
    write_ensemble_plots(&e, phys, dir)?;
    let mut summary = std::fs::File::create(dir.join("summary.csv"))?;
    use std::io::Write;
    writeln!(summary, "quantity,value,error")?;
    writeln!(summary, "acceptance,{},", e.chain.acceptance())?;
    writeln!(summary, "ess,{},", rw.ess)?;
    writeln!(summary, "chi2_metropolis,{},{}", g.mean, g.error)?;
    writeln!(summary, "chi2_tau_int,{},{}", g.tau_int, g.tau_int_error)?;
    writeln!(summary, "chi2_reweighted,{},{}", rw.estimate.value, rw.estimate.error)?;
    println!("wrote {}/{{summary.csv, action.svg, samples.svg}}", dir.display());
    Ok(())
}

fn write_ensemble_plots(e: &Ensemble, phys: &Phi4, dir: &Path) -> CliResult<()> {
    let k = e.configs.len().min(1024);
    let pts: Vec<(f64, f64)> = (0..k).map(|i| (e.action[i], -e.logq[i])).collect();
    let svg =
        plot::scatter_plot("S_eff = -log q against S (1024 flow samples)", "S(x)", "S_eff(x) = -log q(x)", &pts, true);
    plot::write_svg(&dir.join("action.svg"), &svg)?;
    let l = phys.lattice().shape()[0];
    let fields: Vec<Vec<f64>> = e.configs.iter().take(16).cloned().collect();
    let svg = plot::heatmap_grid("16 flow samples of phi", &fields, l, phys.lattice().shape()[1], 4, 4);
    plot::write_svg(&dir.join("samples.svg"), &svg)?;
    Ok(())
}
