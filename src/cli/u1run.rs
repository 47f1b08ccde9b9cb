//! U(1) gauge flow runs: `latflow train u1` and `latflow sample` on a U(1) checkpoint
//! (arXiv:2101.08176 section V). Besides the phi^4 plots, the run directory gets the
//! topological charge against Markov-chain time for the flow ensemble next to an HMC
//! chain at the same beta (the tutorial's picture of a flow that does not freeze).

use super::flowrun::{self, TrainArgs};
use super::{Args, CliError, CliResult};
use latflow::flow::plot;
use latflow::flow::train::{TrainConfig, Trainer};
use latflow::flow::u1::model::{U1Flow, U1FlowConfig, U1GaugeAction};
use latflow::physics::u1::exact_q2_2d;
use latflow::physics::{Action, Lattice, U1};
use latflow::sampler::hmc::{HmcChain, HmcConfig};
use latflow::sampler::reweight::reweight;
use latflow::sampler::stats::{gamma_method, tunnelling_rate, S_TAU_DEFAULT};
use latflow::tensor::AdamConfig;
use latflow::tensor::Device;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The tutorial's HMC value of <Q^2> on 8x8 at beta = 2 (arXiv:2101.08176 section V).
pub const Q2_HMC: (f64, f64) = (1.23, 0.02);

/// Flags of `latflow train u1` besides the common ones.
pub const TRAIN_FLAGS: &[&str] = &["L", "beta", "layers", "mix", "hidden", "kernel"];

/// Defaults of a U(1) run: the tutorial's model at beta = 2; 5000 steps, batch 64, Adam
/// lr 5e-3 with a cosine decay to 1e-4 (see README, "Why these defaults").
pub fn defaults() -> (U1FlowConfig, f64, TrainArgs) {
    let train = TrainConfig {
        batch: 64,
        adam: AdamConfig { lr: 5e-3, ..AdamConfig::default() },
        lr_final: Some(1e-4),
        steps: 5000,
        seed: 0,
    };
    let common = TrainArgs {
        train,
        era: 500,
        out: PathBuf::from("runs/u1"),
        n: 8192,
        sample_batch: 1024,
        therm: 512,
        device: Device::Cpu,
    };
    (U1FlowConfig::default(), 2.0, common)
}

fn metadata(arch: &U1FlowConfig, beta: f64, c: &TrainArgs) -> BTreeMap<String, String> {
    let h: Vec<String> = arch.hidden.iter().map(|v| v.to_string()).collect();
    BTreeMap::from([
        ("theory".to_string(), "u1".to_string()),
        ("L".into(), arch.l.to_string()),
        ("beta".into(), beta.to_string()),
        ("layers".into(), arch.layers.to_string()),
        ("n_mix".into(), arch.n_mix.to_string()),
        ("hidden".into(), h.join(",")),
        ("kernel".into(), arch.kernel.to_string()),
        ("seed".into(), c.train.seed.to_string()),
        ("batch".into(), c.train.batch.to_string()),
        ("lr".into(), c.train.adam.lr.to_string()),
    ])
}

/// The architecture and beta a U(1) checkpoint's metadata describes.
fn arch_from_meta(path: &Path, meta: &BTreeMap<String, String>) -> CliResult<(U1FlowConfig, f64)> {
    let arch = U1FlowConfig {
        l: flowrun::meta_value(path, meta, "L")?,
        layers: flowrun::meta_value(path, meta, "layers")?,
        n_mix: flowrun::meta_value(path, meta, "n_mix")?,
        hidden: flowrun::parse_hidden(&flowrun::meta_value::<String>(path, meta, "hidden")?)?,
        kernel: flowrun::meta_value(path, meta, "kernel")?,
    };
    arch.validate().map_err(|e| CliError(format!("{}: {e}", path.display())))?;
    Ok((arch, flowrun::meta_value(path, meta, "beta")?))
}

/// The model a U(1) checkpoint describes, with its parameters loaded, and beta.
pub fn load(path: &Path) -> CliResult<(U1Flow<f32>, f64, BTreeMap<String, String>)> {
    let (st, meta) = flowrun::open_checkpoint(path, "u1")?;
    let (arch, beta) = arch_from_meta(path, &meta)?;
    let mut flow = arch.build::<f32, _>(&mut StdRng::seed_from_u64(0));
    flowrun::load_into(path, &st, &mut flow)?;
    Ok((flow, beta, meta))
}

/// `latflow train u1 ...`.
pub fn train(a: &Args) -> CliResult<()> {
    let (d_arch, d_beta, d_common) = defaults();
    let common = TrainArgs::parse(a, &d_common)?;
    let (flow, arch, beta, step) = match a.opt::<PathBuf>("resume")? {
        None => {
            let mut arch = d_arch.clone();
            arch.l = a.positive("L", d_arch.l)?;
            arch.layers = a.positive("layers", d_arch.layers)?;
            arch.n_mix = a.positive("mix", d_arch.n_mix)?;
            if let Some(h) = a.opt::<String>("hidden")? {
                arch.hidden = flowrun::parse_hidden(&h)?;
            }
            arch.kernel = a.positive("kernel", d_arch.kernel)?;
            arch.validate().map_err(CliError)?;
            let beta = a.finite("beta", d_beta)?;
            (arch.build::<f32, _>(&mut StdRng::seed_from_u64(common.train.seed)), arch, beta, 0)
        }
        Some(p) => {
            if let Some(f) = TRAIN_FLAGS.iter().find(|f| a.opt::<String>(f).ok().flatten().is_some()) {
                return Err(CliError(format!(
                    "--{f} cannot be combined with --resume: the checkpoint fixes the model and beta"
                )));
            }
            let (flow, beta, meta) = load(&p)?;
            let step: usize = flowrun::meta_value(&p, &meta, "step")?;
            if step >= common.train.steps {
                return Err(CliError(format!(
                    "{} is at step {step}, nothing to do for --steps {}",
                    p.display(),
                    common.train.steps
                )));
            }
            let (arch, _) = arch_from_meta(&p, &meta)?;
            (flow, arch, beta, step)
        }
    };
    let mut trainer = Trainer::new(flow, common.train.clone());
    flowrun::move_flow(&mut trainer.flow, common.device)?;
    trainer.step = step;
    if let Some(p) = a.opt::<PathBuf>("resume")? {
        flowrun::restore_optimizer(&mut trainer, &p)?;
    }
    let dir = flowrun::make_dir(&common.out)?;
    eprintln!(
        "training U(1) flow: L={} beta={beta} | {} layers, {} mixture components, hidden {:?}, kernel {} | batch {}, {} steps, {}, seed {} | {}",
        arch.l, arch.layers, arch.n_mix, arch.hidden, arch.kernel, common.train.batch, common.train.steps,
        flowrun::lr_schedule(&common.train), common.train.seed, flowrun::device_line(trainer.flow.device())
    );
    let t0 = Instant::now();
    flowrun::train_loop(
        &mut trainer,
        &U1GaugeAction { beta },
        common.era,
        &dir,
        &metadata(&arch, beta, &common),
        a.has("quiet"),
    )?;
    let train_s = t0.elapsed().as_secs_f64();
    flowrun::plot_history(&dir)?;
    evaluate(&trainer.flow, beta, common.n, common.sample_batch, common.therm, common.train.seed, &dir, Some(train_s))
}

/// `latflow sample --checkpoint FILE` for U(1).
pub fn sample(path: &Path, a: &Args) -> CliResult<()> {
    let (mut flow, beta, _) = load(path)?;
    let s = flowrun::SampleArgs::parse(path, a)?;
    flowrun::move_flow(&mut flow, s.device)?;
    evaluate(&flow, beta, s.n, s.batch, s.therm, s.seed, &s.dir, None)
}

#[allow(clippy::too_many_arguments)]
fn evaluate(
    flow: &U1Flow<f32>,
    beta: f64,
    n: usize,
    batch: usize,
    therm: usize,
    seed: u64,
    dir: &Path,
    train_s: Option<f64>,
) -> CliResult<()> {
    let l = latflow::flow::prior::Prior::<f32>::shape(&flow.prior)[1];
    let phys = U1::new(Lattice::new(&[l, l]), beta);
    let (e, sample_s) = flowrun::draw(flow, n, batch, therm, seed, |c| phys.action(c))?;
    let lw = e.log_weights();
    let q_all: Vec<f64> = e.configs.iter().map(|c| phys.topological_charge(c)).collect();
    let q2_all: Vec<f64> = q_all.iter().map(|q| q * q).collect();
    let plaq_all: Vec<f64> = e.configs.iter().map(|c| phys.average_plaquette(c)).collect();
    let q_chain = e.chain.chain_of(&q_all, therm);
    let q2 = gamma_method(&e.chain.chain_of(&q2_all, therm), S_TAU_DEFAULT);
    let plaq = gamma_method(&e.chain.chain_of(&plaq_all, therm), S_TAU_DEFAULT);
    let rw = reweight(&q2_all, &lw);
    let exact = exact_q2_2d(beta, l * l);
    // HMC at the same beta, as many trajectories as the flow chain has steps.
    let t1 = Instant::now();
    let hmc_q = hmc_charges(&phys, q_chain.len() + therm, seed, therm);
    let hmc_s = t1.elapsed().as_secs_f64();
    let hmc_q2 = gamma_method(&hmc_q.iter().map(|q| q * q).collect::<Vec<_>>(), S_TAU_DEFAULT);
    let title = format!("U(1) flow ensemble: {n} proposals (batch {batch}), L={l}, beta={beta}, seed {seed}");
    flowrun::print_head(&title, train_s, sample_s, &e, rw.ess);
    println!(
        "<Q^2> (Metropolis)       {:.3} +- {:.3}   (tau_int {:.2} +- {:.2}, {} steps after {therm} thermalization)",
        q2.mean,
        q2.error,
        q2.tau_int,
        q2.tau_int_error,
        q_chain.len()
    );
    println!("<Q^2> (reweighting)      {:.3} +- {:.3}", rw.estimate.value, rw.estimate.error);
    println!("<Q^2> (exact, 2D)        {exact:.4}");
    println!("<Q^2> (HMC, tutorial)    {:.2} +- {:.2}", Q2_HMC.0, Q2_HMC.1);
    let pull = (q2.mean - Q2_HMC.0) / (q2.error * q2.error + Q2_HMC.1 * Q2_HMC.1).sqrt();
    println!("deviation from HMC       {pull:+.2} sigma");
    println!("<plaquette>              {:.4} +- {:.4}", plaq.mean, plaq.error);
    println!(
        "tunnelling rate          flow {:.3}, HMC {:.3} per step   (HMC <Q^2> = {:.3} +- {:.3}, {:.1} s)",
        tunnelling_rate(&q_chain),
        tunnelling_rate(&hmc_q),
        hmc_q2.mean,
        hmc_q2.error,
        hmc_s
    );
    flowrun::write_action_plot(&e, dir)?;
    let show = q_chain.len().min(1000);
    let panel = |title: String, q: &[f64], color: &str| {
        plot::LinePlot::new(title, "Markov-chain step", "Q")
            .with_series(plot::Series::step("Q", enumerate(&q[..show.min(q.len())])).with_color(color))
            .with_size(900.0, 260.0)
    };
    let qp = [
        panel(format!("Flow + independence Metropolis, {l}x{l}, beta = {beta}"), &q_chain, plot::PALETTE[0]),
        panel(format!("HMC (10 leapfrog steps per trajectory), {l}x{l}, beta = {beta}"), &hmc_q, plot::PALETTE[1]),
    ];
    plot::write_svg(&dir.join("topology.svg"), &plot::panels(&qp, 1))?;
    let fields: Vec<Vec<f64>> = e.configs.iter().take(16).map(|c| plaquette_field(&phys, c)).collect();
    let svg = plot::heatmap_grid("cos P_01 of 16 flow samples", &fields, l, l, 4, 4);
    plot::write_svg(&dir.join("samples.svg"), &svg)?;
    let mut s = std::fs::File::create(dir.join("summary.csv"))?;
    writeln!(s, "quantity,value,error")?;
    writeln!(s, "acceptance,{},", e.chain.acceptance())?;
    writeln!(s, "ess,{},", rw.ess)?;
    writeln!(s, "q2_metropolis,{},{}", q2.mean, q2.error)?;
    writeln!(s, "q2_tau_int,{},{}", q2.tau_int, q2.tau_int_error)?;
    writeln!(s, "q2_reweighted,{},{}", rw.estimate.value, rw.estimate.error)?;
    writeln!(s, "q2_exact,{exact},")?;
    writeln!(s, "plaquette,{},{}", plaq.mean, plaq.error)?;
    println!("wrote {}/{{summary.csv, action.svg, topology.svg, samples.svg}}", dir.display());
    Ok(())
}

fn enumerate(v: &[f64]) -> Vec<(f64, f64)> {
    v.iter().enumerate().map(|(i, &q)| (i as f64, q)).collect()
}

/// `cos P_01(n)` on every site of one configuration.
fn plaquette_field(phys: &U1, links: &[f64]) -> Vec<f64> {
    let mut p = vec![0.0; links.len() / 2];
    phys.plaquettes(links, 0, 1, &mut p);
    p.iter().map(|x| x.cos()).collect()
}

/// Q along one HMC chain from a random start, after `therm` trajectories.
fn hmc_charges(phys: &U1, n: usize, seed: u64, therm: usize) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x4a3c);
    let x0: Vec<f64> = (0..phys.dof()).map(|_| rng.gen_range(0.0..std::f64::consts::TAU)).collect();
    let mut chain = HmcChain::new(phys, x0);
    let cfg = HmcConfig::default();
    (0..n)
        .map(|_| {
            chain.trajectory(phys, &cfg, &mut rng);
            phys.topological_charge(chain.config())
        })
        .skip(therm)
        .collect()
}
