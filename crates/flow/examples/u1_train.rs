//! Scratch: train the tutorial's U(1) flow (8x8, beta = 2) and measure it.
//!
//! usage: u1_train [steps=1500] [batch=64] [lr=5e-3] [lr_final=1e-4|none] [seed=0]
//!
//! The defaults are the tuned ones (cosine schedule from 5e-3 to 1e-4); the tutorial's
//! are `1000 64 1e-3 none`.
//!
//! Prints loss / ESS during training, then draws 8192 flow samples, runs an independence
//! Metropolis chain on them (accept with prob min(1, exp(lw_new - lw_cur)), lw = log p - log q)
//! and reports the ESS, the acceptance and <Q^2> (512 thermalization, binned jackknife).
use latflow_flow::train::{ess, TrainConfig, Trainer};
use latflow_flow::u1::{topological_charges, U1FlowConfig, U1GaugeAction};
use latflow_physics::u1::exact_q2_2d;
use latflow_physics::{Action, Lattice, U1};
use latflow_tensor::AdamConfig;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn arg<T: std::str::FromStr>(i: usize, default: T) -> T {
    std::env::args().nth(i).and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// Mean and binned-jackknife error of `x` with bins of `bin`.
fn binned_mean(x: &[f64], bin: usize) -> (f64, f64) {
    let bins: Vec<f64> = x.chunks_exact(bin).map(|c| c.iter().sum::<f64>() / bin as f64).collect();
    let n = bins.len() as f64;
    let m = bins.iter().sum::<f64>() / n;
    let var = bins.iter().map(|b| (b - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

/// CPU seconds (user + system) this process has used, from /proc/self/stat (0 if
/// unavailable): the machine is shared, so wall time alone overstates the cost.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let steps: usize = arg(1, 1500);
    let batch: usize = arg(2, 64);
    let lr: f64 = arg(3, 5e-3);
    let lr_final: Option<f64> = match std::env::args().nth(4) {
        None => Some(1e-4),
        Some(s) => s.parse().ok(),
    };
    let seed: u64 = arg(5, 0);
    let beta = 2.0;
    let l = 8;
    let flow = U1FlowConfig::default().build::<f32, _>(&mut StdRng::seed_from_u64(seed));
    let adam = AdamConfig { lr, ..AdamConfig::default() };
    let mut tr = Trainer::new(flow, TrainConfig { batch, adam, lr_final, steps, seed });
    let action = U1GaugeAction { beta };
    println!("U(1) 8x8 beta={beta}: steps {steps}, batch {batch}, lr {lr} -> {lr_final:?}, seed {seed}");
    let t0 = Instant::now();
    let (mut loss_acc, mut ess_acc, mut k_acc) = (0.0, 0.0, 0);
    for k in 1..=steps {
        let m = tr.step(&action).expect("training step");
        loss_acc += m.loss;
        ess_acc += m.ess;
        k_acc += 1;
        if k % (steps / 10).max(1) == 0 || k == steps {
            println!(
                "step {k:5}  loss {:8.3}  ess {:.3}  lr {:.2e}  {:.1} ms/step",
                loss_acc / k_acc as f64,
                ess_acc / k_acc as f64,
                m.lr,
                t0.elapsed().as_secs_f64() * 1e3 / k as f64
            );
            (loss_acc, ess_acc, k_acc) = (0.0, 0.0, 0);
        }
    }
    let t_train = t0.elapsed().as_secs_f64();
    let cpu_train = cpu_seconds();
    // sampling
    let t1 = Instant::now();
    let g = U1::new(Lattice::new(&[l, l]), beta);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let (mut lw, mut qs) = (Vec::new(), Vec::new());
    for _ in 0..8 {
        let (x, logq) = tr.flow.sample::<f32, _>(1024, &mut rng);
        let xs: Vec<f64> = x.data().iter().map(|&v| v as f64).collect();
        for (c, q) in xs.chunks(2 * l * l).zip(logq.data()) {
            lw.push(-g.action(c) - *q as f64);
        }
        qs.extend(topological_charges(&x));
    }
    let t_sample = t1.elapsed().as_secs_f64();
    let cpu_sample = cpu_seconds() - cpu_train;
    // independence Metropolis
    let mut cur = 0;
    let mut acc = 0;
    let mut chain = vec![qs[0]];
    for i in 1..lw.len() {
        if rng.gen::<f64>() < (lw[i] - lw[cur]).min(0.0).exp() {
            cur = i;
            acc += 1;
        }
        chain.push(qs[cur]);
    }
    let accept = acc as f64 / (lw.len() - 1) as f64;
    let q2: Vec<f64> = chain[512..].iter().map(|q| q.round().powi(2)).collect();
    let (m16, e16) = binned_mean(&q2, 16);
    let (m64, e64) = binned_mean(&q2, 64);
    let exact = exact_q2_2d(beta, l * l);
    println!(
        "train {t_train:.1} s (cpu {cpu_train:.1} s), sample {t_sample:.2} s (cpu {cpu_sample:.2} s) | ESS(8192) {:.4} | accept {accept:.4} | <Q^2> = {m16:.3} +- {e16:.3} (bins 16), {m64:.3} +- {e64:.3} (bins 64); exact {exact:.4}; ({:.1} sigma)",
        ess(&lw),
        (m64 - exact) / e64
    );
}
