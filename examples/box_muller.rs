//! The Box-Muller transform as a normalizing flow (arXiv:2101.08176 section III.A).
//!
//! Uniform `(u1, u2)` on the unit square map to
//! `z1 = sqrt(-2 ln u1) cos(2 pi u2)`, `z2 = sqrt(-2 ln u1) sin(2 pi u2)`, and the change of
//! variables gives `q(z) = r(u) |det dz/du|^-1 = u1 / (2 pi) = exp(-(z1^2 + z2^2)/2) / (2 pi)`:
//! two independent standard normals. This example checks both halves on samples: the
//! histogram of `z1` against the normal pdf, and `log q` from a finite-difference Jacobian
//! against the exact log-density.
//!
//! `cargo run --release --example box_muller`

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::f64::consts::PI;

/// The Box-Muller map `(u1, u2) -> (z1, z2)`.
fn box_muller(u1: f64, u2: f64) -> (f64, f64) {
    let r = (-2.0 * u1.ln()).sqrt();
    (r * (2.0 * PI * u2).cos(), r * (2.0 * PI * u2).sin())
}

/// log|det dz/du| by central differences (step `h`, error ~h^2).
fn log_det_fd(u1: f64, u2: f64, h: f64) -> f64 {
    let d = |f: &dyn Fn(f64) -> (f64, f64)| {
        let (p, m) = (f(h), f(-h));
        ((p.0 - m.0) / (2.0 * h), (p.1 - m.1) / (2.0 * h))
    };
    let (a, c) = d(&|e| box_muller(u1 + e, u2)); // d(z1, z2)/du1
    let (b, e) = d(&|e| box_muller(u1, u2 + e)); // d(z1, z2)/du2
    (a * e - b * c).abs().ln()
}

fn normal_pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * PI).sqrt()
}

fn main() {
    let n = 1_000_000;
    let mut rng = StdRng::seed_from_u64(0);
    // u1 in (0, 1]: ln(0) is excluded
    let samples: Vec<(f64, f64, f64, f64)> = (0..n)
        .map(|_| {
            let (u1, u2) = (1.0 - rng.gen::<f64>(), rng.gen::<f64>());
            let (z1, z2) = box_muller(u1, u2);
            (u1, u2, z1, z2)
        })
        .collect();

    println!("Box-Muller: {n} samples of z1; histogram density vs the standard normal pdf");
    println!("{:>8} {:>10} {:>10} {:>8}", "z", "histogram", "pdf", "pull");
    let (lo, width, bins) = (-3.0, 0.5, 12);
    let mut counts = vec![0usize; bins];
    for s in &samples {
        let k = ((s.2 - lo) / width).floor();
        if (0.0..bins as f64).contains(&k) {
            counts[k as usize] += 1;
        }
    }
    let mut worst: f64 = 0.0;
    for (k, &c) in counts.iter().enumerate() {
        let (a, b) = (lo + k as f64 * width, lo + (k + 1) as f64 * width);
        // exact bin probability by Simpson's rule on the pdf
        let p = (b - a) / 6.0 * (normal_pdf(a) + 4.0 * normal_pdf(0.5 * (a + b)) + normal_pdf(b));
        let err = (p * (1.0 - p) / n as f64).sqrt(); // binomial error of the bin fraction
        let pull = (c as f64 / n as f64 - p) / err;
        worst = worst.max(pull.abs());
        println!(
            "{:>8.2} {:>10.5} {:>10.5} {:>+8.2}",
            0.5 * (a + b),
            c as f64 / n as f64 / width,
            normal_pdf(0.5 * (a + b)),
            pull
        );
    }
    println!("largest pull {worst:.2} sigma over {bins} bins (expect < ~3)\n");

    println!("change of variables: log q(z) = log r(u) - log|det dz/du| (r = 1 on the square)");
    println!("{:>9} {:>9} {:>13} {:>13} {:>10}", "z1", "z2", "log q (flow)", "exact", "diff");
    let (mut max_diff, mut worst_u1) = (0.0f64, 0.0);
    for (i, &(u1, u2, z1, z2)) in samples.iter().take(10_000).enumerate() {
        let logq = 0.0 - log_det_fd(u1, u2, 1e-6 * u1.min(1.0 - u1));
        let exact = -0.5 * (z1 * z1 + z2 * z2) - (2.0 * PI).ln();
        let d = (logq - exact).abs();
        if d > max_diff {
            (max_diff, worst_u1) = (d, u1);
        }
        if i < 6 {
            println!("{z1:>9.4} {z2:>9.4} {logq:>13.8} {exact:>13.8} {:>10.2e}", logq - exact);
        }
    }
    println!(
        "max |log q - exact| over 10000 samples: {max_diff:.2e} (at u1 = {worst_u1:.2e}; step 1e-6 min(u1, 1 - u1))"
    );
    println!("analytically det dz/du = -2 pi / u1, so log q = ln u1 - ln 2 pi = -(z1^2 + z2^2)/2 - ln 2 pi");
}
