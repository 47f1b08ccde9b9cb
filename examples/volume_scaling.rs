//! How far does a flow carry? A checkpoint trained at L0 x L0 applied with no retraining at
//! larger lattices (masks and prior rebuilt, the convolution weights unchanged): the
//! independence-Metropolis acceptance and the ESS per proposal at each L, against the
//! expectation for a flow whose errors are local, `ESS(V) = ESS(V0)^(V/V0)` (the log-weight
//! is a sum of nearly independent local terms, so its variance grows with the volume;
//! Abbott et al. arXiv:2211.07541, Kanwar's lectures).
//!
//! `cargo run --release --example volume_scaling -- OUT.svg L1,L2,... N CKPT [CKPT...]`
//! prints one markdown table row per checkpoint and size and plots ESS against V/V0 with the
//! expected curves (log scale). Sampling seed 0, batch 1024, as `latflow sample --L L`. An ESS
//! below about 10 / N is not measured by N proposals (it is set by the few largest weights and
//! biased high): the plot marks that floor.

use latflow::cli::checkpoints;
use latflow::io::plot;
use latflow::sampler::ensemble::{IndependenceSampler, Sampler};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::{Path, PathBuf};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 5 {
        eprintln!("usage: volume_scaling OUT.svg L1,L2,... N CKPT [CKPT...]");
        std::process::exit(2);
    }
    let out = PathBuf::from(&a[1]);
    let sizes: Vec<usize> = a[2].split(',').map(|v| v.parse().expect("L1,L2,...")).collect();
    let n: usize = a[3].parse().expect("N");
    let theories = latflow::theory::builtin();
    let mut plots = Vec::new();
    println!("| checkpoint | L | V/V0 | acceptance | ESS | ESS(V0)^(V/V0) | sampling s |");
    println!("|---|---|---|---|---|---|---|");
    for (c, ckpt) in a[4..].iter().enumerate() {
        let path = Path::new(ckpt);
        let theory = checkpoints::theory_of(&theories, path).unwrap_or_else(|e| panic!("{e}"));
        let mut measured = Vec::new();
        let mut ess0 = f64::NAN;
        let mut title = String::new();
        for &l in &sizes {
            let ck = checkpoints::open_at(theory, path, Some(l)).unwrap_or_else(|e| panic!("{e}"));
            let l0 = ck.l_trained.unwrap_or(l);
            if title.is_empty() {
                let trained = ck.trained.as_ref().unwrap_or(&ck.setup);
                title = format!("{} flow trained at {}", theory.name(), trained.describe());
            }
            let flow = ck.flow_f32().unwrap_or_else(|e| panic!("{e}"));
            let setup = ck.setup.as_ref();
            let action = |x: &[f64]| setup.action().action(x);
            let t0 = std::time::Instant::now();
            let e = IndependenceSampler::new(&flow, &action, 1024).sample(n, &mut StdRng::seed_from_u64(0));
            let secs = t0.elapsed().as_secs_f64();
            let obs = setup.observables();
            let ess = e.reweight(&e.measure(&obs[0].f)).expect("flow ensembles carry log q").ess;
            let ratio = (l * l) as f64 / (l0 * l0) as f64;
            if l == l0 {
                ess0 = ess;
            }
            let expected = ess0.powf(ratio);
            println!(
                "| {} | {l} | {ratio:.2} | {:.3} | {ess:.4} | {} | {secs:.1} |",
                path.display(),
                e.acceptance(),
                if expected.is_nan() { "-".to_string() } else { format!("{expected:.4}") }
            );
            measured.push((ratio, ess));
        }
        let max_ratio = measured.iter().map(|m| m.0).fold(1.0, f64::max);
        let curve: Vec<(f64, f64)> =
            (0..=100).map(|i| 1.0 + (max_ratio - 1.0) * i as f64 / 100.0).map(|r| (r, ess0.powf(r))).collect();
        let color = plot::PALETTE[c % plot::PALETTE.len()];
        // the ESS estimate needs several effective samples: below ~10 / N it is set by the
        // few largest weights and biased high
        let floor = vec![(1.0, 10.0 / n as f64), (max_ratio, 10.0 / n as f64)];
        plots.push(
            plot::LinePlot::new(title.clone(), "V / V0", "ESS / N")
                .with_log_y(true)
                .with_series(plot::Series::markers("measured (no retraining)", measured).with_color(color))
                .with_series(plot::Series::line("ESS(V0)^(V/V0)", curve).with_color("#555555"))
                .with_series(
                    plot::Series::line(format!("10 / N: below, ESS from {n} proposals is unreliable"), floor)
                        .with_color("#bbbbbb"),
                )
                .with_size(560.0, 360.0),
        );
    }
    plot::write_svg(&out, &plot::panels(&plots, plots.len().min(2)))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
    println!("wrote {}", out.display());
}
