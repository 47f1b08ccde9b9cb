//! How stiff is a flow's latent potential? Flow-HMC's leapfrog needs `eps^2 lambda_max < ~1`,
//! where `lambda_max` is the largest curvature of `U(z) = S(f(z)) - log|det J_f(z)|`. This
//! estimates it by power iteration on the Hessian (Hessian-vector products by central
//! differences of the force, step 1e-5, in f64) at prior samples of a checkpoint, and prints
//! per chain `lambda` (the Rayleigh quotient of the last iterate; a negative one is a
//! direction of negative curvature larger in magnitude than any positive one) and the four
//! latent coordinates that carry most of its eigenvector (index: weight).
//!
//! `cargo run --release --features research --example latent_stiffness -- CKPT [CHAINS [ITERATIONS]]`
//! (defaults 8 chains, 40 iterations; prior samples seeded by 3, start vectors by 5).

use latflow::cli::checkpoints;
use latflow::sampler::flow_hmc::LatentPotential;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 2 {
        eprintln!("usage: latent_stiffness CKPT [CHAINS [ITERATIONS]]");
        std::process::exit(2);
    }
    let n: usize = a.get(2).map_or(8, |v| v.parse().expect("CHAINS: a positive integer"));
    let iterations: usize = a.get(3).map_or(40, |v| v.parse().expect("ITERATIONS: a positive integer"));
    let theories = latflow::theory::builtin();
    let path = Path::new(&a[1]);
    let theory = checkpoints::theory_of(&theories, path).unwrap_or_else(|e| panic!("{e}"));
    let ck = checkpoints::open(theory, path).unwrap_or_else(|e| panic!("{e}"));
    let flow = ck.flow_f64().unwrap_or_else(|e| panic!("{e}"));
    let pot = LatentPotential::new(&flow, ck.setup.action());
    let d = pot.dof();
    let z0 = flow.prior.sample(n, &mut StdRng::seed_from_u64(3)).into_vec();
    let mut rng = StdRng::seed_from_u64(5);
    let mut v: Vec<f64> = (0..n * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let (mut x, mut u) = (vec![0.0; n * d], vec![0.0; n]);
    let (mut fp, mut fm) = (vec![0.0; n * d], vec![0.0; n * d]);
    let mut lambda = vec![0.0; n];
    let h = 1e-5;
    for _ in 0..iterations {
        for c in v.chunks_mut(d) {
            let norm = c.iter().map(|x| x * x).sum::<f64>().sqrt();
            c.iter_mut().for_each(|x| *x /= norm);
        }
        let shifted = |s: f64| -> Vec<f64> { z0.iter().zip(&v).map(|(z, v)| z + s * v).collect() };
        pot.potential_force(&shifted(h), &mut x, &mut u, &mut fp);
        pot.potential_force(&shifted(-h), &mut x, &mut u, &mut fm);
        let hv: Vec<f64> = fp.iter().zip(&fm).map(|(p, m)| (p - m) / (2.0 * h)).collect();
        for (c, l) in lambda.iter_mut().enumerate() {
            *l = (c * d..(c + 1) * d).map(|i| hv[i] * v[i]).sum();
        }
        v = hv;
    }
    println!(
        "{} at {}: largest latent curvature per chain ({iterations} iterations)",
        path.display(),
        ck.setup.describe()
    );
    for (c, l) in lambda.iter().enumerate() {
        let vc = &v[c * d..(c + 1) * d];
        let norm = vc.iter().map(|x| x * x).sum::<f64>().sqrt();
        let mut idx: Vec<usize> = (0..d).collect();
        idx.sort_by(|&i, &j| vc[j].abs().total_cmp(&vc[i].abs()));
        let top: Vec<String> = idx[..4.min(d)].iter().map(|&i| format!("{i}: {:+.2}", vc[i] / norm)).collect();
        println!(
            "chain {c}: lambda {l:+.3e}   eps for eps^2 |lambda| = 1: {:.4}   top coordinates {}",
            1.0 / l.abs().sqrt(),
            top.join(", ")
        );
    }
}
