//! Training on the GPU (feature `cuda`; needs a GPU and fails, not skips, without one):
//! one step of each model matches the CPU step (same prior samples, f32 on both sides),
//! and a short GPU run lowers the loss.
#![cfg(feature = "cuda")]

use latflow::flow::phi4::Phi4FlowConfig;
use latflow::flow::train::{TapeAction, TrainConfig, Trainer};
use latflow::flow::u1::model::{U1FlowConfig, U1GaugeAction};
use latflow::physics::phi4_action_var;
use latflow::tensor::{AdamConfig, Device, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// f32 CPU vs GPU after a whole step (a loss summed over the batch, gradients through 16
/// layers, one Adam update), relative to the largest reference magnitude.
const TOL_F32_STEP: f64 = 2e-4;

fn config(batch: usize, steps: usize) -> TrainConfig {
    TrainConfig { batch, adam: AdamConfig { lr: 3e-3, ..AdamConfig::default() }, lr_final: None, steps, seed: 7 }
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

/// Steps the same flow on both devices and compares metrics and parameters after each step.
fn compare_steps<A: TapeAction<f32>>(flow: latflow::flow::model::Flow<f32>, action: &A, batch: usize, steps: usize) {
    if let Err(e) = Device::Cuda.check() {
        panic!("GPU tests need a GPU: {e}");
    }
    let mut cpu = Trainer::new(flow.clone(), config(batch, steps));
    let mut gpu = Trainer::new(flow, config(batch, steps));
    gpu.flow.to_device(Device::Cuda).unwrap();
    assert_eq!(gpu.flow.device(), Device::Cuda);
    for k in 0..steps {
        let mc = cpu.step(action).unwrap();
        let mg = gpu.step(action).unwrap();
        for (what, a, b) in [("loss", mg.loss, mc.loss), ("logq", mg.logq, mc.logq), ("logp", mg.logp, mc.logp)] {
            assert!(rel(a, b) <= TOL_F32_STEP, "step {k}: {what} gpu {a} vs cpu {b}");
        }
        assert!((mg.ess - mc.ess).abs() <= 1e-3, "step {k}: ESS gpu {} vs cpu {}", mg.ess, mc.ess);
        let pc = cpu.flow.named_params();
        let pg = gpu.flow.named_params();
        for ((name, a), (_, b)) in pg.iter().zip(&pc) {
            assert!(a.is_cuda(), "{name} left the GPU");
            let a = a.to_host_vec();
            let scale = b.data().iter().fold(1e-30f32, |m, x| m.max(x.abs())) as f64;
            let e = a.iter().zip(b.data()).map(|(x, y)| ((x - y) as f64).abs()).fold(0.0, f64::max) / scale;
            assert!(e <= TOL_F32_STEP, "step {k}: parameter {name} differs by {e:e} (relative)");
        }
    }
}

#[test]
fn phi4_steps_on_gpu_match_cpu() {
    let flow = Phi4FlowConfig::default().build::<f32>(&mut StdRng::seed_from_u64(3));
    compare_steps(flow, &|x: &Var<f32>| phi4_action_var(x, -4.0, 8.0), 256, 3);
}

#[test]
fn u1_steps_on_gpu_match_cpu() {
    let flow = U1FlowConfig::default().build::<f32>(&mut StdRng::seed_from_u64(3));
    compare_steps(flow, &U1GaugeAction { beta: 2.0 }, 128, 2);
}

#[test]
fn short_gpu_training_lowers_the_loss() {
    if let Err(e) = Device::Cuda.check() {
        panic!("GPU tests need a GPU: {e}");
    }
    let mut flow = Phi4FlowConfig::default().build::<f32>(&mut StdRng::seed_from_u64(0));
    flow.to_device(Device::Cuda).unwrap();
    let mut tr = Trainer::new(flow, config(256, 300));
    let action = |x: &Var<f32>| phi4_action_var(x, -4.0, 8.0);
    let losses: Vec<f64> = (0..300).map(|_| tr.step(&action).unwrap().loss).collect();
    let first: f64 = losses[..20].iter().sum::<f64>() / 20.0;
    let last: f64 = losses[280..].iter().sum::<f64>() / 20.0;
    // the tutorial's loss starts near 100 and falls below 10 within a few hundred steps
    assert!(last < first - 20.0, "loss did not fall: first 20 steps {first:.2}, last 20 {last:.2}");
    // sampling on the GPU gives host-readable samples of the right shape
    let (x, logq) = tr.flow.sample(100, &mut StdRng::seed_from_u64(1));
    assert_eq!(x.shape(), [100, 8, 8]);
    assert!(x.is_cuda() && logq.all_finite());
}

/// Flow-HMC's force through a U(1) flow on the GPU (`fhmc --device cuda`: the f32 flow's
/// forward pass and input-gradient sweep on the device, the action's force on the host)
/// against the same f32 flow on the CPU.
#[test]
fn flow_hmc_force_on_gpu_matches_cpu() {
    use latflow::physics::{Lattice, U1};
    use latflow::sampler::flow_hmc::LatentPotential;
    if let Err(e) = Device::Cuda.check() {
        panic!("GPU tests need a GPU: {e}");
    }
    let l = 8;
    let cpu = U1FlowConfig { l, ..U1FlowConfig::default() }.build::<f32>(&mut StdRng::seed_from_u64(5));
    let f64flow = U1FlowConfig { l, ..U1FlowConfig::default() }.build::<f64>(&mut StdRng::seed_from_u64(5));
    let mut gpu = cpu.clone();
    gpu.to_device(Device::Cuda).unwrap();
    let u1 = U1::new(Lattice::new(&[l, l]), 3.0);
    let n = 16;
    let z: Vec<f64> = f64flow.prior.sample(n, &mut StdRng::seed_from_u64(6)).into_vec();
    let run = |map: &latflow::flow::model::Flow<f32>| {
        let pot = LatentPotential::new(&f64flow, &u1).with_force_map(map);
        let (mut x, mut u, mut f) = (vec![0.0; z.len()], vec![0.0; n], vec![0.0; z.len()]);
        pot.potential_force(&z, &mut x, &mut u, &mut f);
        (u, f)
    };
    let (uc, fc) = run(&cpu);
    let (ug, fg) = run(&gpu);
    let scale = fc.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let e = fg.iter().zip(&fc).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / scale;
    assert!(e <= TOL_F32_STEP, "force gpu vs cpu differs by {e:e} of max |F| = {scale}");
    for (a, b) in ug.iter().zip(&uc) {
        assert!(rel(*a, *b) <= TOL_F32_STEP, "U gpu {a} vs cpu {b}");
    }
}
