//! Are the quoted errors of the flow estimators honest? Draws ensembles exactly as
//! `latflow sample --checkpoint CKPT --n 8192 --seed S` does (seeds FROM..=TO, batch 1024,
//! 512 thermalization steps) and summarizes, for the primary observable (chi_2, <Q^2>), the
//! pulls (estimate - reference) / error of:
//! - the Metropolis chain with the plain Gamma method (`stats::gamma_method`, S_tau = 1.5),
//! - the Metropolis chain with the IMH tail correction (`tails::imh_gamma`),
//! - self-normalized reweighting with the delta-method error (`reweight::reweight`).
//!
//! `cargo run --release --example error_pulls -- CKPT FROM TO [REFERENCE]`; REFERENCE defaults
//! to phi^4 chi_2 = 0.7444 and U(1) <Q^2> = 1.2393 as in `scripts/sampling_pulls.sh`.
//! The standard deviation of the pulls over S ensembles has an error of about
//! sd / sqrt(2 (S - 1)).

use latflow::cli::checkpoints;
use latflow::sampler::ensemble::{IndependenceSampler, Sampler};
use latflow::sampler::stats::{gamma_method, S_TAU_DEFAULT};
use latflow::sampler::tails::{imh_gamma, weight_tail};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::PathBuf;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 4 {
        eprintln!("usage: error_pulls CKPT FROM TO [REFERENCE]");
        std::process::exit(2);
    }
    let path = PathBuf::from(&a[1]);
    let (from, to): (u64, u64) = (a[2].parse().expect("FROM"), a[3].parse().expect("TO"));
    let theories = latflow::theory::builtin();
    let theory = checkpoints::theory_of(&theories, &path).unwrap_or_else(|e| panic!("{e}"));
    let ck = checkpoints::open(theory, &path).unwrap_or_else(|e| panic!("{e}"));
    let flow = ck.flow_f32().unwrap_or_else(|e| panic!("{e}"));
    let setup = ck.setup.as_ref();
    let obs = setup.observables();
    let reference: f64 = match a.get(4) {
        Some(r) => r.parse().expect("REFERENCE"),
        None if obs[0].key == "chi2" => 0.7444,
        None => 1.2393,
    };
    let names = ["Metropolis, Gamma method", "Metropolis, IMH tail (new)", "reweighting, delta method"];
    let mut est: Vec<Vec<(f64, f64)>> = vec![Vec::new(); names.len()];
    let (mut k_sum, mut k_n, mut wmax_sum) = (0.0, 0usize, 0.0);
    for seed in from..=to {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
        let action = |c: &[f64]| setup.action().action(c);
        let e = IndependenceSampler::new(&flow, &action, 1024).sample(8192, &mut rng);
        let lw = e.log_weights().expect("flow ensembles carry log q");
        let v = e.measure(&obs[0].f);
        let chain = e.chain_of(&v, 512);
        let g = gamma_method(&chain, S_TAU_DEFAULT);
        let t = imh_gamma(&chain, &lw);
        let rw = e.reweight(&v).expect("log q").estimate;
        est[0].push((g.mean, g.error));
        est[1].push((t.mean, t.error));
        est[2].push((rw.value, rw.error));
        let d = weight_tail(&lw);
        if let Some(k) = d.k_hat {
            k_sum += k;
            k_n += 1;
        }
        wmax_sum += d.max_weight;
    }
    let s = (to - from + 1) as f64;
    println!(
        "{} ensembles (seeds {from}..{to}) of {}: mean k-hat {:.3}, mean max w/<w> {:.1}; {} reference {reference}",
        s,
        path.display(),
        k_sum / k_n.max(1) as f64,
        wmax_sum / s,
        obs[0].label
    );
    for (name, v) in names.iter().zip(&est) {
        let m = v.iter().map(|x| x.0).sum::<f64>() / s;
        let scatter = (v.iter().map(|x| (x.0 - m).powi(2)).sum::<f64>() / (s - 1.0)).sqrt();
        // a chain stuck on one proposal after thermalization quotes error 0: no pull
        let ok: Vec<&(f64, f64)> = v.iter().filter(|x| x.1 > 0.0 && x.1.is_finite()).collect();
        let qerr = ok.iter().map(|x| x.1).sum::<f64>() / ok.len() as f64;
        let p: Vec<f64> = ok.iter().map(|x| (x.0 - reference) / x.1).collect();
        let s = p.len() as f64;
        let pm = p.iter().sum::<f64>() / s;
        let psd = (p.iter().map(|x| (x - pm).powi(2)).sum::<f64>() / (s - 1.0)).sqrt();
        let out2 = p.iter().filter(|x| x.abs() > 2.0).count();
        println!(
            "{name:<28} mean {m:.4}  scatter {scatter:.4}  mean quoted error {qerr:.4}  pulls: mean {pm:+.2} +- {:.2}, sd {psd:.2} +- {:.2}, {out2} beyond 2{}",
            psd / s.sqrt(),
            psd / (2.0 * (s - 1.0)).sqrt(),
            if ok.len() < v.len() { format!(", {} with error 0 left out", v.len() - ok.len()) } else { String::new() }
        );
    }
}
