//! What a flow-HMC leapfrog step costs next to a training step (issue "flow-HMC", target:
//! a leapfrog step cheaper than a training step at the same lattice and batch), and a whole
//! flow-HMC trajectory next to plain HMC. The demo architectures (phi^4 M2 = -4, lam = 8,
//! 16 affine couplings; U(1) beta = 2, 16 NCP couplings, 2 mixture components; hidden
//! [8, 8], kernel 3), freshly initialized, at L = 16 with 64 chains = batch 64:
//!
//! - `train step`: one reverse-KL step in f32 (sample, flow, action, loss, backward with
//!   the weight gradients, Adam), as `cargo bench --bench train_step` at 8x8;
//! - `force f32` / `force f64`: one flow-HMC force of all 64 chains
//!   ([`LatentPotential::potential_force`]: a forward pass and an input-only reverse sweep,
//!   no weight gradients) with the flow in f32 (SIMD kernels) or f64;
//! - `fhmc trajectory`: one trajectory of all chains, 10 leapfrog steps of the f32 force and
//!   `H` in f64 at its ends (what `latflow fhmc` runs by default);
//! - `hmc trajectory`: one plain HMC trajectory (10 steps) of 64 chains, rayon over chains;
//!
//! and the ultralocal U(1) flow of `scripts/freezing.sh` (kernel-1 nets): its f32 force
//! through the tape and through the fused map `UltralocalU1` (f32, also with the action's
//! force on the lanes, and f64), the fused map with a zero cotangent (the flow's own share),
//! next to the action's force alone; and the plaquette map (`fhmc --plaquette-map`): its
//! force on f32 lanes and its f64 map (`H`).
//!
//! ```text
//! cargo bench --bench flow_hmc               # FLOW_HMC_L=8 for another lattice size
//! FLOW_HMC_ONLY=ultralocal cargo bench --bench flow_hmc   # only the ultralocal flow
//! ```
//!
//! Medians of repeated runs after two warm-ups, all cases in one run (the machines are
//! shared: compare ratios within a run).

mod common;

use common::median_ms;
use latflow::flow::model::Flow;
use latflow::flow::net::Activation;
use latflow::flow::phi4::Phi4FlowConfig;
use latflow::flow::train::{TapeAction, TrainConfig, Trainer};
use latflow::flow::u1::model::{U1FlowConfig, U1GaugeAction};
use latflow::flow::u1::{CircleMixture, PlaquetteU1, UltralocalU1};
use latflow::physics::{phi4_action_var, Action, Lattice, Phi4, U1};
use latflow::sampler::flow_hmc::{FlowHmcChains, LatentMap, LatentPotential};
use latflow::sampler::hmc::{chain_seed, HmcChain, HmcConfig};
use latflow::tensor::{AdamConfig, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rayon::prelude::*;

const CHAINS: usize = 64;

struct Row {
    model: &'static str,
    train: f64,
    force32: f64,
    force64: f64,
    fhmc: f64,
    hmc: f64,
}

fn measure<A: TapeAction<f32>>(
    model: &'static str,
    build32: &dyn Fn() -> Flow<f32>,
    build64: &dyn Fn() -> Flow<f64>,
    tape_action: &A,
    action: &dyn Action,
    hmc_start: &dyn Fn(usize) -> Vec<f64>,
) -> Row {
    let config = TrainConfig { batch: CHAINS, adam: AdamConfig::default(), lr_final: None, steps: usize::MAX, seed: 0 };
    let mut tr = Trainer::new(build32(), config);
    let train = median_ms(
        || {
            tr.step(tape_action).unwrap();
        },
        20,
    );
    let (f32flow, f64flow) = (build32(), build64());
    let z: Vec<f64> = f64flow.prior.sample(CHAINS, &mut StdRng::seed_from_u64(1)).into_vec();
    let d = z.len() / CHAINS;
    let (mut x, mut u, mut f) = (vec![0.0; z.len()], vec![0.0; CHAINS], vec![0.0; z.len()]);
    let exact = LatentPotential::new(&f64flow, action);
    let mixed = exact.with_force_map(&f32flow);
    let force32 = median_ms(|| mixed.potential_force(&z, &mut x, &mut u, &mut f), 20);
    let force64 = median_ms(|| exact.potential_force(&z, &mut x, &mut u, &mut f), 10);
    let cfg = HmcConfig::default();
    let mut chains = FlowHmcChains::new(mixed, z.clone());
    let mut rngs: Vec<StdRng> = (0..CHAINS).map(|c| StdRng::seed_from_u64(chain_seed(0, c))).collect();
    let fhmc = median_ms(
        || {
            chains.trajectory(&cfg, &mut rngs);
        },
        5,
    );
    let mut plain: Vec<(HmcChain, StdRng)> =
        (0..CHAINS).map(|c| (HmcChain::new(action, hmc_start(c)), StdRng::seed_from_u64(chain_seed(0, c)))).collect();
    assert_eq!(d, action.dof());
    let hmc = median_ms(
        || {
            plain.par_iter_mut().for_each(|(ch, rng)| {
                ch.trajectory(action, &cfg, rng);
            })
        },
        20,
    );
    Row { model, train, force32, force64, fhmc, hmc }
}

fn main() {
    latflow::tensor::malloc::keep_large_blocks_on_heap();
    let l: usize = std::env::var("FLOW_HMC_L").ok().map(|v| v.parse().expect("FLOW_HMC_L: an integer")).unwrap_or(16);
    if std::env::var("FLOW_HMC_ONLY").is_ok_and(|v| v == "ultralocal") {
        ultralocal(l);
        return;
    }
    let phi4 = Phi4::new(Lattice::new(&[l, l]), -4.0, 8.0);
    let phi4_tape = |x: &Var<f32>| phi4_action_var(x, -4.0, 8.0);
    let arch = Phi4FlowConfig { l, ..Phi4FlowConfig::default() };
    let rows = [
        measure(
            "phi4",
            &|| arch.build::<f32>(&mut StdRng::seed_from_u64(0)),
            &|| arch.build::<f64>(&mut StdRng::seed_from_u64(0)),
            &phi4_tape,
            &phi4,
            &|_| vec![0.0; l * l],
        ),
        {
            let u1 = U1::new(Lattice::new(&[l, l]), 2.0);
            let arch = U1FlowConfig { l, ..U1FlowConfig::default() };
            measure(
                "u1",
                &|| arch.build::<f32>(&mut StdRng::seed_from_u64(0)),
                &|| arch.build::<f64>(&mut StdRng::seed_from_u64(0)),
                &U1GaugeAction { beta: 2.0 },
                &u1,
                &|_| vec![0.0; 2 * l * l],
            )
        },
    ];
    println!(
        "\nL = {l}, {CHAINS} chains = batch {CHAINS}, {} rayon threads; median ms (10 leapfrog steps per trajectory)",
        rayon::current_num_threads()
    );
    println!("model  train step  force f32  force f64  f32/train  fhmc trajectory  hmc trajectory");
    for r in rows {
        println!(
            "{:<6} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>16.1} {:>15.2}",
            r.model,
            r.train,
            r.force32,
            r.force64,
            r.force32 / r.train,
            r.fhmc,
            r.hmc
        );
    }
    ultralocal(l);
}

/// The ultralocal U(1) flow of `scripts/freezing.sh` (16 couplings, kernel-1 nets, 2
/// components, tanh), freshly initialized: the flow-HMC force of 64 chains at beta = 6
/// through the tape in f32 and through the fused map (`UltralocalU1`) in f32 and f64.
fn ultralocal(l: usize) {
    let arch = U1FlowConfig { l, layers: 16, n_mix: 2, hidden: vec![1], kernel: 1, activation: Activation::Tanh };
    let (f32flow, f64flow) =
        (arch.build::<f32>(&mut StdRng::seed_from_u64(0)), arch.build::<f64>(&mut StdRng::seed_from_u64(0)));
    let fused = UltralocalU1::from_flow(&f64flow).expect("kernel-1 couplings are ultralocal");
    let fused32 = fused.clone().f32_force();
    let u1 = U1::new(Lattice::new(&[l, l]), 6.0);
    let z: Vec<f64> = f64flow.prior.sample(CHAINS, &mut StdRng::seed_from_u64(1)).into_vec();
    let (mut x, mut u, mut f) = (vec![0.0; z.len()], vec![0.0; CHAINS], vec![0.0; z.len()]);
    let tape = LatentPotential::new(&f64flow, &u1).with_force_map(&f32flow);
    let tape_ms = median_ms(|| tape.potential_force(&z, &mut x, &mut u, &mut f), 10);
    let mixed = LatentPotential::new(&fused, &u1).with_force_map(&fused32);
    let fused32_ms = median_ms(|| mixed.potential_force(&z, &mut x, &mut u, &mut f), 50);
    let lanes32 = fused.clone().with_wilson_lanes(6.0);
    let lanes = LatentPotential::new(&fused, &u1).with_force_map(&lanes32);
    let lanes_ms = median_ms(|| lanes.potential_force(&z, &mut x, &mut u, &mut f), 50);
    let exact = LatentPotential::new(&fused, &u1);
    let fused64_ms = median_ms(|| exact.potential_force(&z, &mut x, &mut u, &mut f), 20);
    // the flow's share of the mixed force: the same pullback with a zero cotangent
    let zero = |_: &[f64], g: &mut [f64]| g.fill(0.0);
    let flow_only_ms = median_ms(
        || {
            let mut ld = vec![0.0; CHAINS];
            fused32.pullback(&z, &mut x, &mut ld, &zero, &mut f);
        },
        50,
    );
    let action_ms = median_ms(
        || {
            f.par_chunks_mut(2 * l * l).zip(z.par_chunks(2 * l * l)).for_each(|(fc, zc)| u1.force(zc, fc));
        },
        50,
    );
    // the plaquette map (fhmc --plaquette-map 3 --map-beta 3): its f32 lanes force and its
    // f64 map (H, once per trajectory)
    let pm = PlaquetteU1::new(l, CircleMixture::fit(3.0, 3));
    let pm32 = pm.clone().with_wilson_lanes(6.0);
    let pm_force_ms = median_ms(
        || {
            let mut ld = vec![0.0; CHAINS];
            pm32.pullback(&z, &mut x, &mut ld, &zero, &mut f);
        },
        50,
    );
    let pm_h_ms = median_ms(|| LatentPotential::new(&pm, &u1).potential(&z, &mut x, &mut u), 50);
    println!("\nultralocal U(1) flow (16 layers, kernel 1), L = {l}, {CHAINS} chains, beta = 6; median ms per force");
    println!(
        "tape f32  fused f32  fused f32, action on the lanes  fused f64  tape/fused f32  fused f32, zero cotangent  \
         action force alone"
    );
    println!(
        "{tape_ms:>8.2} {fused32_ms:>10.3} {lanes_ms:>31.3} {fused64_ms:>10.3} {:>15.1} {flow_only_ms:>26.3} \
         {action_ms:>19.3}",
        tape_ms / fused32_ms
    );
    println!("\nplaquette map (3 components fitted at beta 3), L = {l}, {CHAINS} chains, beta = 6; median ms");
    println!("force (f32 lanes)  U (f64 map, once per trajectory)");
    println!("{pm_force_ms:>17.3} {pm_h_ms:>33.3}");
}
