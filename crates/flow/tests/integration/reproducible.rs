//! Seeded training repeats bit for bit, whatever the size of the thread pool (the
//! threaded kernels reduce in a fixed order).

use latflow_comm::ThreadRanks;
use latflow_flow::phi4::Phi4FlowConfig;
use latflow_flow::train::{StepMetrics, TrainConfig, Trainer};
use latflow_physics::phi4_action_var;
use latflow_tensor::{AdamConfig, Tensor, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;

fn train_in_pool(threads: usize) -> Vec<Tensor<f32>> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let flow = Phi4FlowConfig { layers: 4, ..Default::default() }.build::<f32>(&mut StdRng::seed_from_u64(7));
        // batch 256 puts the 8->8 convolutions above the threading threshold
        let cfg = TrainConfig { batch: 256, adam: AdamConfig::default(), lr_final: None, steps: 5, seed: 3 };
        let mut tr = Trainer::new(flow, cfg);
        let action = |x: &Var<f32>| phi4_action_var(x, -4.0, 8.0);
        for _ in 0..5 {
            tr.step(&action).unwrap();
        }
        tr.flow.named_params().into_iter().map(|(_, t)| t.clone()).collect()
    })
}

#[test]
fn same_seed_same_parameters_with_one_or_two_threads() {
    let a = train_in_pool(1);
    let b = train_in_pool(2);
    let c = train_in_pool(2);
    assert_eq!(a, b, "1 vs 2 threads");
    assert_eq!(b, c, "two runs with 2 threads");
}

/// Parameters and metrics of `steps` steps with the batch's shards spread over `ranks`
/// threads standing in for MPI ranks (`Trainer::step_over`), as every rank holds them.
fn train_over_ranks(ranks: usize, batch: usize, steps: usize) -> Vec<(Vec<Tensor<f32>>, Vec<StepMetrics>)> {
    ThreadRanks::run(ranks, |comm| {
        let flow = Phi4FlowConfig { layers: 2, ..Default::default() }.build::<f32>(&mut StdRng::seed_from_u64(11));
        let cfg = TrainConfig { batch, adam: AdamConfig::default(), lr_final: Some(1e-4), steps, seed: 5 };
        let mut tr = Trainer::new(flow, cfg);
        let action = |x: &Var<f32>| phi4_action_var(x, -4.0, 8.0);
        let metrics: Vec<StepMetrics> = (0..steps).map(|_| tr.step_over(&action, comm).unwrap()).collect();
        (tr.flow.named_params().into_iter().map(|(_, t)| t.clone()).collect(), metrics)
    })
}

#[test]
fn same_seed_same_parameters_and_metrics_on_any_number_of_ranks() {
    // 200 samples = 4 shards: 3 ranks take 2, 1 and 1 of them; 5 ranks leave one idle
    let (batch, steps) = (200, 6);
    assert_eq!(latflow_flow::train::shard_count(batch), 4);
    let one = train_over_ranks(1, batch, steps).pop().unwrap();
    let plain = train_in_pool_plain(batch, steps);
    assert_eq!(one.0, plain.0, "step_over(SingleProcess-like group of 1) vs step");
    assert_eq!(one.1, plain.1);
    for ranks in [2, 3, 5] {
        for (rank, (params, metrics)) in train_over_ranks(ranks, batch, steps).into_iter().enumerate() {
            for ((name, a), b) in plain_names().iter().zip(&params).zip(&one.0) {
                let bits = |t: &Tensor<f32>| t.data().iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
                assert_eq!(bits(a), bits(b), "{ranks} ranks, rank {rank}: {name}");
            }
            assert_eq!(metrics, one.1, "{ranks} ranks, rank {rank}: metrics");
        }
    }
    // the test can fail: training moved the parameters away from their initial values
    let init = Phi4FlowConfig { layers: 2, ..Default::default() }.build::<f32>(&mut StdRng::seed_from_u64(11));
    assert_ne!(init.named_params()[0].1, &one.0[0]);
}

fn plain_names() -> Vec<String> {
    let flow = Phi4FlowConfig { layers: 2, ..Default::default() }.build::<f32>(&mut StdRng::seed_from_u64(11));
    flow.named_params().into_iter().map(|(n, _)| n).collect()
}

fn train_in_pool_plain(batch: usize, steps: usize) -> (Vec<Tensor<f32>>, Vec<StepMetrics>) {
    let flow = Phi4FlowConfig { layers: 2, ..Default::default() }.build::<f32>(&mut StdRng::seed_from_u64(11));
    let cfg = TrainConfig { batch, adam: AdamConfig::default(), lr_final: Some(1e-4), steps, seed: 5 };
    let mut tr = Trainer::new(flow, cfg);
    let action = |x: &Var<f32>| phi4_action_var(x, -4.0, 8.0);
    let metrics: Vec<StepMetrics> = (0..steps).map(|_| tr.step(&action).unwrap()).collect();
    (tr.flow.named_params().into_iter().map(|(_, t)| t.clone()).collect(), metrics)
}
