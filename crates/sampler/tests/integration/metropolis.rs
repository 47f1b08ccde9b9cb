use latflow_sampler::metropolis::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Exactness on a discrete toy: q uniform on {0,1,2}, p proportional to (1,2,3).
/// With 60000 steps the empirical frequencies match p within 4 sigma (binomial errors
/// inflated by sqrt(2 tau), tau <= 3 measured loosely by the acceptance).
#[test]
fn stationary_distribution_is_p() {
    let mut rng = StdRng::seed_from_u64(5);
    let p: [f64; 3] = [1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0];
    let n = 60_000;
    let states: Vec<usize> = (0..n).map(|_| rng.gen_range(0..3)).collect();
    let lw: Vec<f64> = states.iter().map(|&s| (p[s] / (1.0 / 3.0)).ln()).collect();
    let mut m = IndependenceMetropolis::new();
    m.offer_batch(0, &lw, &mut rng);
    let mut counts = [0usize; 3];
    for &i in m.history() {
        counts[states[i]] += 1;
    }
    for s in 0..3 {
        let f = counts[s] as f64 / n as f64;
        let sigma = (p[s] * (1.0 - p[s]) / n as f64).sqrt() * (2.0 * 3.0f64).sqrt();
        assert!((f - p[s]).abs() < 4.0 * sigma, "state {s}: {f} vs {}", p[s]);
    }
    assert!(m.acceptance() > 0.5 && m.acceptance() < 1.0);
}

#[test]
fn perfect_proposals_are_always_accepted_and_nan_never() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut m = IndependenceMetropolis::new();
    m.offer_batch(0, &[0.3; 100], &mut rng);
    assert_eq!(m.acceptance(), 1.0);
    assert!(!m.offer(100, f64::NAN, &mut rng));
}
