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
