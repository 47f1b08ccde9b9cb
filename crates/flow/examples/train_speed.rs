//! Scratch timing of phi^4 training steps (to be replaced by the bench).
use latflow_flow::phi4::Phi4FlowConfig;
use latflow_flow::train::{TrainConfig, Trainer};
use latflow_tensor::{AdamConfig, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;

fn action(x: &Var<f32>) -> Var<f32> {
    let (m2, lam) = (-4.0, 8.0);
    let mut a = x.square().mul_scalar(m2).add(&x.powi(4).mul_scalar(lam));
    for ax in [1, 2] {
        let k = x.square().mul_scalar(2.0).sub(&x.mul(&x.roll(ax, -1))).sub(&x.mul(&x.roll(ax, 1)));
        a = a.add(&k);
    }
    a.sum_axes(&[1, 2])
}

fn main() {
    let batch: usize = std::env::args().nth(1).map_or(64, |s| s.parse().unwrap());
    let steps: usize = std::env::args().nth(2).map_or(200, |s| s.parse().unwrap());
    let flow = Phi4FlowConfig::default().build::<f32, _>(&mut StdRng::seed_from_u64(0));
    let cfg = TrainConfig { batch, adam: AdamConfig::default(), lr_final: None, steps, seed: 0 };
    let mut tr = Trainer::new(flow, cfg);
    let t0 = std::time::Instant::now();
    for k in 0..steps {
        let m = tr.step(&action).unwrap();
        if k % 100 == 0 || k + 1 == steps {
            println!(
                "{} loss {:.3} ess {:.3} {:.2} ms/step",
                m.step,
                m.loss,
                m.ess,
                t0.elapsed().as_secs_f64() * 1e3 / (k + 1) as f64
            );
        }
    }
}
