//! A toy theory added the way `docs/architecture.md` ("Add a theory") says, in this one
//! file: the free scalar field, `S = sum_n [phi(n) sum_mu (2 phi(n) - phi(n+mu) - phi(n-mu))
//! + M2 phi(n)^2]`, as a theory of its own (not phi^4 at lam = 0). Its module is the
//! `FreeTheory` / `FreeSetup` pair below; its registration is the list of theories handed
//! to `latflow::cli::run`. Every generic command then works on it: `train` (with the
//! tutorial's affine-coupling flow), `sample`, `apply` and `hmc`, and the exact results
//! `chi_2 = 1 / (2 M2)`, `<M> = 0` are its references.

use latflow::cli;
use latflow::flow::model::Flow;
use latflow::flow::phi4::Phi4FlowConfig;
use latflow::io::safetensors::SafeTensors;
use latflow::physics::observables::{magnetization, two_point_susceptibility};
use latflow::physics::{Action, Lattice};
use latflow::sampler::stats::{gamma_method_replicas, S_TAU_DEFAULT};
use latflow::tensor::Var;
use latflow::theory::{Group, Observable, Param, Params, Reference, Setup, Theory, TrainDefaults};
use rand::{Rng, RngCore};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Sigma allowed between a seeded HMC estimate and the exact value.
const SIGMA: f64 = 4.0;

/// The free field's registry entry.
struct FreeTheory;

impl Theory for FreeTheory {
    fn name(&self) -> &'static str {
        "free"
    }
    fn title(&self) -> &'static str {
        "free field"
    }
    fn params(&self) -> Vec<Param> {
        vec![
            Param::new("L", "8", "lattice extent", Group::Lattice),
            Param::new("nd", "2", "dimensions (HMC)", Group::HmcOnly),
            Param::new("m2", "1", "mass squared M2 > 0", Group::Coupling),
            Param::new("layers", "4", "affine coupling layers", Group::Flow),
            Param::new("hidden", "8,8", "hidden channels", Group::Flow),
            Param::new("kernel", "3", "odd kernel size", Group::Flow),
        ]
    }
    fn train_defaults(&self) -> TrainDefaults {
        TrainDefaults::cosine(3e-3, 300, 100, "runs/free")
    }
    fn setup(&self, p: &Params) -> Result<Box<dyn Setup>, String> {
        let (l, nd, m2) = (p.positive("L")?, p.positive("nd")?, p.finite("m2")?);
        if m2 <= 0.0 {
            return Err(p.error("m2", format!("must be positive, got {m2}")));
        }
        if l.checked_pow(nd as u32).is_none_or(|v| v > 1 << 20) {
            return Err(format!("lattice {l}^{nd} is too large"));
        }
        let arch = Phi4FlowConfig {
            l,
            layers: p.positive("layers")?,
            hidden: p.positive_list("hidden")?,
            kernel: p.positive("kernel")?,
            ..Default::default()
        };
        Ok(Box::new(FreeSetup { arch, nd, action: FreeAction { lattice: Lattice::hypercubic(l, nd), m2 } }))
    }
}

/// `S = phi^T (-Laplacian + M2) phi` on slices, with its force `2 (-Laplacian + M2) phi`.
struct FreeAction {
    lattice: Lattice,
    m2: f64,
}

impl FreeAction {
    /// `(-Laplacian + M2) phi` at site `n`.
    fn k_phi(&self, x: &[f64], n: usize) -> f64 {
        let nd = self.lattice.nd();
        let lap: f64 = (0..nd).map(|mu| 2.0 * x[n] - x[self.lattice.fwd(n, mu)] - x[self.lattice.bwd(n, mu)]).sum();
        lap + self.m2 * x[n]
    }
}

impl Action for FreeAction {
    fn dof(&self) -> usize {
        self.lattice.volume()
    }
    fn action(&self, x: &[f64]) -> f64 {
        (0..x.len()).map(|n| x[n] * self.k_phi(x, n)).sum()
    }
    fn force(&self, x: &[f64], out: &mut [f64]) {
        for (n, o) in out.iter_mut().enumerate() {
            *o = 2.0 * self.k_phi(x, n);
        }
    }
}

struct FreeSetup {
    arch: Phi4FlowConfig,
    nd: usize,
    action: FreeAction,
}

impl FreeSetup {
    fn flow<T: latflow::tensor::Float>(&self, rng: &mut dyn RngCore) -> Result<Flow<T>, String> {
        if self.nd != 2 {
            return Err("the flows are two-dimensional".into());
        }
        self.arch.validate()?;
        Ok(self.arch.build(rng))
    }
}

impl Setup for FreeSetup {
    fn params(&self) -> BTreeMap<String, String> {
        let h: Vec<String> = self.arch.hidden.iter().map(|v| v.to_string()).collect();
        BTreeMap::from([
            ("L".to_string(), self.arch.l.to_string()),
            ("m2".into(), self.action.m2.to_string()),
            ("layers".into(), self.arch.layers.to_string()),
            ("hidden".into(), h.join(",")),
            ("kernel".into(), self.arch.kernel.to_string()),
        ])
    }
    fn describe(&self) -> String {
        format!("L={} M2={}", self.arch.l, self.action.m2)
    }
    fn describe_flow(&self) -> String {
        format!("{} affine layers", self.arch.layers)
    }
    fn action(&self) -> &dyn Action {
        &self.action
    }
    /// The same action on a batch `(N, L, L)` through the tape.
    fn tape_action(&self, x: &Var<f32>) -> Var<f32> {
        let mut k = x.mul_scalar(4.0 + self.action.m2);
        for axis in [1, 2] {
            k = k.sub(&x.roll(axis, 1)).sub(&x.roll(axis, -1));
        }
        x.mul(&k).sum_axes(&[1, 2])
    }
    fn flow_f32(&self, rng: &mut dyn RngCore) -> Result<Flow<f32>, String> {
        self.flow(rng)
    }
    fn flow_f64(&self, rng: &mut dyn RngCore) -> Result<Flow<f64>, String> {
        self.flow(rng)
    }
    fn hmc_start(&self, rng: &mut dyn RngCore) -> Vec<f64> {
        (0..self.action.dof()).map(|_| rng.gen_range(-0.1..0.1)).collect()
    }
    fn observables(&self) -> Vec<Observable> {
        vec![
            Observable::new("chi2", "chi_2", 4, two_point_susceptibility),
            Observable::new("M", "<M>", 4, magnetization),
        ]
    }
    fn references(&self) -> Vec<Reference> {
        vec![Reference::exact("chi2", "exact", 1.0 / (2.0 * self.action.m2), 4), Reference::exact("M", "exact", 0.0, 4)]
    }
    fn sample_image(&self, config: &[f64]) -> (Vec<f64>, usize, usize) {
        (config.to_vec(), self.arch.l, config.len() / self.arch.l)
    }
    fn sample_title(&self) -> String {
        "16 free-field samples".into()
    }
}

fn run(args: &[&str]) -> Result<(), String> {
    let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    cli::run(&[&FreeTheory], &argv).map_err(|e| e.0)
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("latflow-toy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// `(value, error)` of a row of `summary.csv`.
fn summary(dir: &Path, quantity: &str) -> (f64, f64) {
    let text = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    let line = text.lines().find(|l| l.starts_with(&format!("{quantity},"))).unwrap_or_else(|| panic!("{text}"));
    let f: Vec<f64> = line.split(',').skip(1).map(|v| v.parse().unwrap_or(0.0)).collect();
    (f[0], f[1])
}

#[test]
fn a_toy_theory_trains_samples_applies_and_runs_hmc_through_the_generic_driver() {
    let dir = temp_dir("train");
    let d = dir.to_str().unwrap();
    run(&["train", "free", "--m2", "0.5", "--n", "4096", "--out", d, "--quiet"]).unwrap();
    let exact = 1.0 / (2.0 * 0.5);
    // Training went through the toy's tape action: the loss fell, the flow is usable.
    let hist = std::fs::read_to_string(dir.join("history.csv")).unwrap();
    let loss: Vec<f64> = hist.lines().skip(1).map(|l| l.split(',').nth(1).unwrap().parse().unwrap()).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (first, last) = (mean(&loss[..20]), mean(&loss[loss.len() - 20..]));
    println!("loss: first 20 steps {first:.3}, last 20 {last:.3}");
    assert!(loss.len() == 300 && last < first - 1.0, "training did not lower the loss: {first} -> {last}");
    let (acc, _) = summary(&dir, "acceptance");
    assert!(acc > 0.2, "300 steps should give a usable flow, acceptance {acc}");
    assert_eq!(summary(&dir, "chi2_ref_exact"), (exact, 0.0));
    // (The flow's chi_2 after 300 steps is not compared with the exact value: like phi^4 at
    // lam = 0, its Metropolis estimate sits low by more than its Gamma error, the flow
    // missing the tail of the soft zero mode: see the closing note of issue 7.)

    // sample: the checkpoint names its theory; this registry knows it, the built-in one not
    let ckpt = dir.join("model.safetensors");
    let meta = SafeTensors::read(&ckpt).unwrap().metadata;
    assert_eq!((meta["theory"].as_str(), meta["m2"].as_str(), meta["L"].as_str()), ("free", "0.5", "8"));
    let out = dir.join("sample");
    let c = ckpt.to_str().unwrap();
    run(&["sample", "--checkpoint", c, "--n", "2048", "--seed", "5", "--out", out.to_str().unwrap()]).unwrap();
    assert!(summary(&out, "chi2_metropolis").1 > 0.0);
    let argv: Vec<String> = ["sample", "--checkpoint", c].iter().map(|s| s.to_string()).collect();
    let e = cli::run(&latflow::theory::builtin(), &argv).unwrap_err().0;
    assert!(e.contains("unknown theory \"free\""), "{e}");

    // apply forward then reverse: back to z
    let (z_in, x_out, z_out) = (dir.join("z.safetensors"), dir.join("x.safetensors"), dir.join("zz.safetensors"));
    let z: Vec<f64> = (0..3 * 64).map(|i| ((i * 37 % 101) as f64 / 50.0) - 1.0).collect();
    let mut st = SafeTensors::default();
    st.insert_f64("z", &[3, 8, 8], &z);
    st.write(&z_in).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    run(&["apply", "--checkpoint", c, "--input", &s(&z_in), "--output", &s(&x_out)]).unwrap();
    run(&["apply", "--checkpoint", c, "--input", &s(&x_out), "--output", &s(&z_out), "--reverse"]).unwrap();
    let back = SafeTensors::read(&z_out).unwrap().get_f64("z").unwrap();
    let dz = back.iter().zip(&z).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(dz < 1e-10, "apply round trip in f64: max |dz| = {dz:e}");

    // hmc with the toy's action and force: observables.csv in the run directory, and
    // chi_2 agrees with the exact value (Gamma-method errors over both chains)
    let h = dir.join("hmc");
    run(&["hmc", "free", "--m2", "0.5", "--n-traj", "20000", "--chains", "2", "--quiet", "--out", h.to_str().unwrap()])
        .unwrap();
    let csv = std::fs::read_to_string(h.join("observables.csv")).unwrap();
    assert_eq!(csv.lines().next(), Some("chain,traj,accepted,dH,chi2,M,S"));
    assert_eq!(csv.lines().count(), 1 + 2 * 20000);
    let mut chains = [Vec::new(), Vec::new()];
    for l in csv.lines().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        chains[f[0].parse::<usize>().unwrap()].push(f[4].parse::<f64>().unwrap());
    }
    let refs: Vec<&[f64]> = chains.iter().map(Vec::as_slice).collect();
    let g = gamma_method_replicas(&refs, S_TAU_DEFAULT);
    println!("HMC of the toy: chi_2 = {g}");
    assert!((g.mean - exact).abs() < SIGMA * g.error, "HMC chi_2 {} +- {} vs exact {exact}", g.mean, g.error);

    // the theory's own validation, from flags and from checkpoint metadata alike
    assert!(run(&["train", "free", "--m2", "-1", "--out", d]).unwrap_err().contains("--m2 must be positive"));
    std::fs::remove_dir_all(&dir).ok();
}
