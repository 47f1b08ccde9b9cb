//! One reverse-KL training step (sample a batch, action, loss, backward, Adam) of the
//! tutorial's two models, f32, at batch 64 and 1024, on the CPU with rayon's default
//! pool (2 threads on the dev box):
//!
//! - phi^4 8x8 (M2 = -4, lam = 8), 16 affine couplings, hidden [8, 8], kernel 3;
//! - U(1) 8x8 (beta = 2), 16 gauge-equivariant NCP couplings, 2 mixture components.
//!
//! ```text
//! cargo bench --bench train_step
//! ```
//!
//! PyTorch 2.11 on the same machine: `python3 ../shared/reference/torch_reference.py
//! timing --device cpu --threads 2 --batches 64 1024` (figures and ratios in the README).
//! After criterion's own report, a summary line per case prints the median ms/step of 50
//! (batch 64) or 20 steps and the mean ms/step the way `torch_reference.py timing` measures
//! PyTorch (5 warm-up steps, then `max(3, min(50, 2e5 / batch))` = 50 steps timed together:
//! the same statistic over the same number of steps, slow moments of a shared machine
//! included) (`TRAIN_STEP_SUMMARY_ONLY=1` prints only that; `scripts/compare_pytorch.sh` runs it
//! between two PyTorch runs). `TRAIN_STEP_CASES=phi4/1024,u1/64` runs only the cases named
//! (handy under `perf record`).
//!
//! On the GPU (feature `cuda`): `TRAIN_STEP_DEVICE=cuda cargo bench --features cuda --bench
//! train_step` runs the same steps with the flow on the device at batch 64, 1024 and 16384
//! (`TRAIN_STEP_BATCHES=64,16384` picks others). Each step ends with the device synchronized
//! (the loss and the batch metrics are read back), so wall time per step is device time
//! plus host time. PyTorch on the same GPU: `torch_reference.py timing --device cuda
//! --batches 64 1024 16384`.

mod common;

use common::{median_ms, reference_mean_ms};
use criterion::Criterion;
use latflow::flow::phi4::Phi4FlowConfig;
use latflow::flow::train::{TrainConfig, Trainer};
use latflow::flow::u1::model::{U1FlowConfig, U1GaugeAction};
use latflow::physics::phi4_action_var;
use latflow::tensor::{AdamConfig, Device, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::time::Duration;

/// Untimed steps before `torch_reference.py`'s timed ones (`time_steps(..., warm=5)`).
const REFERENCE_WARM: usize = 5;

/// Steps `torch_reference.py timing` times at `batch`: `max(3, min(50, int(2e5 / batch)))`.
fn reference_steps(batch: usize) -> usize {
    (200_000 / batch).clamp(3, 50)
}

/// The summary's figures of one case: the median ms of `reps` steps, the kernel launches per
/// step during those (0 on the CPU), then the mean ms as `torch_reference.py` times it.
fn time_steps(mut step: impl FnMut(), reps: usize, batch: usize) -> (f64, f64, u64) {
    let launches0 = launches();
    let ms = median_ms(&mut step, reps);
    let l = (launches() - launches0) / (reps as u64 + 2);
    (ms, reference_mean_ms(step, REFERENCE_WARM, reference_steps(batch)), l)
}

fn config(batch: usize) -> TrainConfig {
    TrainConfig { batch, adam: AdamConfig::default(), lr_final: None, steps: usize::MAX, seed: 0 }
}

/// CUDA kernels launched so far (0 without the `cuda` feature).
fn launches() -> u64 {
    #[cfg(feature = "cuda")]
    return latflow::cuda_kernels::ops::launch_count();
    #[cfg(not(feature = "cuda"))]
    0
}

fn main() {
    latflow::tensor::malloc::keep_large_blocks_on_heap();
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(10);
    let mut summary = Vec::new();
    // TRAIN_STEP_SUMMARY_ONLY=1 skips criterion and prints only the median table.
    let summary_only = std::env::var_os("TRAIN_STEP_SUMMARY_ONLY").is_some();
    let cases = std::env::var("TRAIN_STEP_CASES").ok();
    let wanted = |model: &str, batch: usize| match &cases {
        None => true,
        Some(list) => list.split(',').any(|c| c.trim() == format!("{model}/{batch}")),
    };
    let device = match std::env::var("TRAIN_STEP_DEVICE") {
        Ok(d) => Device::parse(&d).unwrap_or_else(|e| panic!("TRAIN_STEP_DEVICE: {e}")),
        Err(_) => Device::Cpu,
    };
    if let Err(e) = device.check() {
        panic!("TRAIN_STEP_DEVICE={}: {e}", device.name());
    }
    let batches: Vec<usize> = match std::env::var("TRAIN_STEP_BATCHES") {
        Ok(list) => list.split(',').map(|b| b.trim().parse().expect("TRAIN_STEP_BATCHES: integers")).collect(),
        Err(_) if device == Device::Cuda => vec![64, 1024, 16384],
        Err(_) => vec![64, 1024],
    };
    for batch in batches {
        let reps = if batch <= 64 {
            50
        } else if batch <= 1024 {
            20
        } else {
            10
        };
        if wanted("phi4", batch) {
            let mut flow = Phi4FlowConfig::default().build::<f32>(&mut StdRng::seed_from_u64(0));
            flow.to_device(device).unwrap();
            let mut tr = Trainer::new(flow, config(batch));
            let action = |x: &Var<f32>| phi4_action_var(x, -4.0, 8.0);
            if !summary_only {
                c.bench_function(&format!("train_step/phi4/b{batch}"), |b| b.iter(|| tr.step(&action).unwrap()));
            }
            let (ms, mean, l) = time_steps(|| _ = tr.step(&action).unwrap(), reps, batch);
            summary.push(("phi4", batch, ms, mean, l));
        }

        if !wanted("u1", batch) {
            continue;
        }
        let mut flow = U1FlowConfig::default().build::<f32>(&mut StdRng::seed_from_u64(0));
        flow.to_device(device).unwrap();
        let mut tr = Trainer::new(flow, config(batch));
        let action = U1GaugeAction { beta: 2.0 };
        if !summary_only {
            c.bench_function(&format!("train_step/u1/b{batch}"), |b| b.iter(|| tr.step(&action).unwrap()));
        }
        let (ms, mean, l) = time_steps(|| _ = tr.step(&action).unwrap(), reps, batch);
        summary.push(("u1", batch, ms, mean, l));
    }
    c.final_summary();
    let dev = match device {
        Device::Cpu => format!("cpu, {} rayon threads", rayon::current_num_threads()),
        Device::Cuda => format!("cuda: {}", latflow::tensor::gpu_name().unwrap_or_default()),
    };
    println!("\nmodel  batch  median ms/step  mean ms/step as torch_reference  (f32, {dev})");
    for (m, b, ms, mean, l) in summary {
        if device == Device::Cuda {
            println!("{m:<6} {b:>5}  {ms:>10.2}  {mean:>10.2}   ({l} kernel launches per step)");
        } else {
            println!("{m:<6} {b:>5}  {ms:>10.2}  {mean:>10.2}");
        }
    }
}
