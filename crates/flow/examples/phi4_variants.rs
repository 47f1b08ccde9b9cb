//! Trains one phi^4 flow variant the way `latflow train phi4` does (f32, batch 64, Adam lr
//! 3e-3 cosine to 1e-4, the tutorial's couplings 8x8, M2 = -4, lam = 8 unless given) and
//! measures it on an independence-Metropolis ensemble: the comparison of issue 13 (plain vs
//! Z2-equivariant couplings, normal vs free-field prior, the flow vs its Z2 mixture).
//!
//! ```text
//! cargo run --release -p latflow-flow --features research --example phi4_variants -- \
//!     coupling=affine|z2sym|z2odd prior=normal|free:M2 objective=flow|mix \
//!     steps=12000 seed=0 n=8192 m2=-4 lam=8
//! ```
//! Prints one line `key=value ...`: training seconds and ms/step, the last 500 steps' mean
//! loss and batch ESS, and on `n` proposals (batches of 1024, RNG seed+1) the Metropolis
//! acceptance, ESS/N of all proposals and the chain's <|M|>, for the flow (`flow:`) and for
//! its Z2 mixture (`mix:`, [`latflow_flow::z2::Z2Mixture`]).
//!
//! Measured 2026-11-30 on the 2-core dev box (`lscpu`: AMD EPYC, 2 CPUs, shared with other
//! builds: the load average was 4-7, so the ms/step of the long runs vary by 2x between runs;
//! the cost ratios come from interleaved 300-step runs), 16 layers, hidden [8, 8], 12000
//! steps, n = 8192. "acc / ESS" of the flow, and of its Z2 mixture in brackets:
//!
//! ```text
//! tutorial, M2 = -4, lam = 8 (<|M|> = 0.087)   seed 0                      seed 1
//! affine, normal prior                         0.645/0.600 (0.675/0.663)   0.609/0.535 (0.672/0.634)
//! z2sym,  normal prior                         0.595/0.525                 0.598/0.466
//! z2odd,  normal prior                         0.604/0.490                 0.557/0.448
//! affine, free prior m2 = 0.67                 0.842/0.900 (0.856/0.933)   0.844/0.888 (0.862/0.935)
//! z2odd,  free prior m2 = 0.67                 0.843/0.911
//! affine, trained through q_mix                (0.679/0.663)
//!
//! M2 = -4, lam = 5 (HMC: chi_2 = 4.90, tau_int(M) = 24; flows' <|M|> 0.24)   seed 0
//! affine, normal prior                         0.373/0.041 (0.453/0.226)
//! z2sym,  normal prior                         0.402/0.178
//! z2odd,  normal prior                         0.344/0.157
//! affine, trained through q_mix                (0.573/0.445)
//! affine, free prior m2 = 0.67                 0.571/0.435 (0.600/0.569)
//! affine, free prior, trained through q_mix    (0.716/0.736)
//!
//! cost per step, interleaved 300-step runs (seed 7; the quietest of 3 rounds):
//! affine 2.75 ms, z2sym 5.82 ms (2.1x), z2odd 3.85 ms (1.4x), q_mix objective 5.54 ms (2.0x),
//! free prior 2.85 ms (1.04x)
//! ```
//! (The Z2 couplings' mixture equals the flow, up to the sampling noise of the sign.) The Z2
//! couplings train worse per step than the plain one at the tutorial's couplings and cost
//! 1.4-2.1x per step, so per second they lose; the free-field prior (m2 = 0.67, matched to the
//! measured chi_2 = 1/(2 m2) = 0.74) costs nothing and wins most; the Z2 mixture of a plain flow
//! is free at training time and helps, most in the nearly broken phase (lam = 5), where training
//! through it helps further.

use latflow_flow::model::Flow;
use latflow_flow::phi4::{Coupling, Phi4FlowConfig, PriorKind, Z2Kind};
use latflow_flow::train::{ess, Objective, TrainConfig, Trainer};
use latflow_flow::z2::Z2Mixture;
use latflow_physics::{phi4_action_var, Action, Lattice, Phi4};
use latflow_sampler::ensemble::{IndependenceSampler, ProposalSource, Sampler};
use latflow_tensor::{AdamConfig, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::time::Instant;

fn main() {
    let args: BTreeMap<String, String> = std::env::args()
        .skip(1)
        .map(|a| {
            let (k, v) = a.split_once('=').unwrap_or_else(|| panic!("expected key=value, got {a}"));
            (k.to_string(), v.to_string())
        })
        .collect();
    let get = |k: &str, d: &str| args.get(k).cloned().unwrap_or_else(|| d.to_string());
    let steps: usize = get("steps", "12000").parse().unwrap();
    let seed: u64 = get("seed", "0").parse().unwrap();
    let n: usize = get("n", "8192").parse().unwrap();
    let m2: f64 = get("m2", "-4").parse().unwrap();
    let lam: f64 = get("lam", "8").parse().unwrap();
    let coupling = match get("coupling", "affine").as_str() {
        "affine" => Coupling::Affine,
        "z2sym" => Coupling::Z2(Z2Kind::Symmetrized),
        "z2odd" => Coupling::Z2(Z2Kind::OddNet),
        c => panic!("coupling {c}?"),
    };
    let prior_s = get("prior", "normal");
    let prior = match prior_s.split_once(':') {
        None if prior_s == "normal" => PriorKind::Normal,
        Some(("free", m)) => PriorKind::Free { m2: m.parse().unwrap() },
        _ => panic!("prior {prior_s}?"),
    };
    let objective = match get("objective", "flow").as_str() {
        "flow" => Objective::Flow,
        "mix" => Objective::Z2Mixture,
        o => panic!("objective {o}?"),
    };
    let arch = Phi4FlowConfig { coupling, prior, ..Phi4FlowConfig::default() };
    let flow: Flow<f32> = arch.build(&mut StdRng::seed_from_u64(seed));
    let train = TrainConfig {
        batch: 64,
        adam: AdamConfig { lr: 3e-3, ..AdamConfig::default() },
        lr_final: Some(1e-4),
        steps,
        seed,
    };
    let mut trainer = Trainer::new(flow, train);
    trainer.objective = objective;
    let action = |x: &Var<f32>| phi4_action_var(x, m2, lam);
    let t0 = Instant::now();
    let mut tail = Vec::new();
    for k in 0..steps {
        let m = trainer.step(&action).unwrap_or_else(|e| panic!("{e}"));
        if k + 500 >= steps {
            tail.push((m.loss, m.ess));
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let mean = |f: fn(&(f64, f64)) -> f64| tail.iter().map(f).sum::<f64>() / tail.len() as f64;
    print!(
        "coupling={} prior={prior_s} objective={} steps={steps} seed={seed} train_s={secs:.1} ms_per_step={:.2} \
         loss_tail={:.3} batch_ess_tail={:.3}",
        get("coupling", "affine"),
        get("objective", "flow"),
        1e3 * secs / steps as f64,
        mean(|t| t.0),
        mean(|t| t.1)
    );
    let phys = Phi4::new(Lattice::hypercubic(8, 2), m2, lam);
    let s = |x: &[f64]| phys.action(x);
    let mix = Z2Mixture::new(&trainer.flow);
    let sources: [(&str, &dyn ProposalSource); 2] = [("flow", &trainer.flow), ("mix", &mix)];
    for (name, src) in sources {
        let t1 = Instant::now();
        let e = IndependenceSampler::new(src, &s, 1024).sample(n, &mut StdRng::seed_from_u64(seed + 1));
        let lq = e.logq.as_ref().expect("flow ensembles carry log q");
        let lw: Vec<f64> = e.action.iter().zip(lq).map(|(s, q)| -s - q).collect();
        let absm: f64 = e.history.iter().map(|&i| (e.config(i).iter().sum::<f64>() / 64.0).abs()).sum::<f64>()
            / e.history.len() as f64;
        print!(
            " {name}: acc={:.3} ess={:.3} absM={absm:.4} eval_s={:.1}",
            e.acceptance(),
            ess(&lw),
            t1.elapsed().as_secs_f64()
        );
    }
    println!();
}
