//! Helpers shared by the summary benches (`train_step`, `flow_hmc`, `conv2d_backward`).

use std::time::Instant;

/// Median wall time of `f` in ms over `reps` runs, after 2 warm-up runs.
pub fn median_ms(mut f: impl FnMut(), reps: usize) -> f64 {
    f();
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Mean wall time of `f` in ms as `torch_reference.py`'s `time_steps` takes it: `warm`
/// untimed runs, then `n` runs timed together, total / `n`. The same statistic as the
/// PyTorch figures `scripts/compare_pytorch.sh` puts next to it (a mean over a window of
/// `n` steps, slow moments of a shared machine included).
#[allow(dead_code)] // used by some of the benches that include this module
pub fn reference_mean_ms(mut f: impl FnMut(), warm: usize, n: usize) -> f64 {
    for _ in 0..warm {
        f();
    }
    let t0 = Instant::now();
    for _ in 0..n {
        f();
    }
    t0.elapsed().as_secs_f64() * 1e3 / n as f64
}

/// `lscpu`'s model name line (empty where `lscpu` is missing), for the benches' headers.
#[allow(dead_code)] // used by some of the benches that include this module
pub fn cpu_model() -> String {
    std::process::Command::new("sh")
        .arg("-c")
        .arg("lscpu | grep 'Model name'")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
