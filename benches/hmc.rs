//! HMC trajectories per second: phi^4 on 8x8 (M2 = -4, lam = 8, 10 leapfrog steps,
//! trajectory length 1), one chain and many chains in parallel (rayon over chains);
//! U(1) 8x8 (beta = 2) for comparison.
//!
//! ```text
//! cargo bench --bench hmc
//! ```
//!
//! Criterion's throughput "elem/s" is trajectories per second (one element = one full
//! trajectory: momentum refresh, 10 force evaluations, action, Metropolis test).

use criterion::{Criterion, Throughput};
use latflow_physics::{Action, Lattice, Phi4, U1};
use latflow_sampler::hmc::{chain_seed, HmcChain, HmcConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use std::hint::black_box;
use std::time::Duration;

/// Chains in the many-chain case (a multiple of any core count here).
const N_CHAINS: usize = 64;
/// Trajectories each chain runs per measured iteration of the many-chain case.
const TRAJ_PER_CHAIN: usize = 50;

fn chains<A: Action>(a: &A, n: usize, init: impl Fn(&mut StdRng) -> Vec<f64>) -> Vec<(HmcChain, StdRng)> {
    let cfg = HmcConfig::default();
    (0..n)
        .map(|c| {
            let mut rng = StdRng::seed_from_u64(chain_seed(0, c));
            let mut ch = HmcChain::new(a, init(&mut rng));
            for _ in 0..200 {
                ch.trajectory(a, &cfg, &mut rng); // thermalize
            }
            (ch, rng)
        })
        .collect()
}

fn bench_theory<A: Action>(c: &mut Criterion, name: &str, a: &A, init: impl Fn(&mut StdRng) -> Vec<f64> + Copy) {
    let cfg = HmcConfig::default();
    let mut g = c.benchmark_group(format!("hmc/{name}"));
    g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(1));
    let mut one = chains(a, 1, init).pop().expect("one chain");
    g.bench_function("one_chain", |b| b.iter(|| black_box(one.0.trajectory(a, &cfg, &mut one.1))));
    let mut many = chains(a, N_CHAINS, init);
    g.throughput(Throughput::Elements((N_CHAINS * TRAJ_PER_CHAIN) as u64));
    g.bench_function(format!("{N_CHAINS}_chains_rayon"), |b| {
        b.iter(|| {
            many.par_iter_mut().for_each(|(ch, rng)| {
                for _ in 0..TRAJ_PER_CHAIN {
                    black_box(ch.trajectory(a, &cfg, rng));
                }
            })
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let phi4 = Phi4::new(Lattice::new(&[8, 8]), -4.0, 8.0);
    bench_theory(&mut c, "phi4_8x8", &phi4, |r| (0..64).map(|_| r.gen_range(-0.1..0.1)).collect());
    let u1 = U1::new(Lattice::new(&[8, 8]), 2.0);
    bench_theory(&mut c, "u1_8x8", &u1, |r| (0..128).map(|_| r.gen_range(0.0..std::f64::consts::TAU)).collect());
    c.final_summary();
    eprintln!("threads: {}", rayon::current_num_threads());
}
