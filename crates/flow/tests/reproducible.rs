//! Seeded training repeats bit for bit, whatever the size of the thread pool (the
//! threaded kernels reduce in a fixed order).

use latflow_flow::phi4::Phi4FlowConfig;
use latflow_flow::train::{TrainConfig, Trainer};
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
