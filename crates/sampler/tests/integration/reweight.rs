use latflow_sampler::reweight::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

/// q = N(0, 1), p = N(0.5, 1): <x>_p = 0.5 recovered within 4 sigma of the
/// delta-method error, and the ESS matches exp(-mu^2) = 0.78 within 0.03.
#[test]
fn recovers_a_shifted_gaussian_mean() {
    let mut rng = StdRng::seed_from_u64(3);
    let mu = 0.5;
    let xs: Vec<f64> = (0..20_000).map(|_| Normal::new(0.0, 1.0).unwrap().sample(&mut rng)).collect();
    let lw: Vec<f64> = xs.iter().map(|x| -0.5 * (x - mu) * (x - mu) + 0.5 * x * x).collect();
    let r = reweight(&xs, &lw);
    assert!((r.estimate.value - mu).abs() < 4.0 * r.estimate.error, "{r:?}");
    assert!((r.ess - (-mu * mu).exp()).abs() < 0.03, "{r:?}");
    let _ = rng.gen::<f64>();
}

/// Weights with a Pareto tail of index alpha have shape k = 1 / alpha; light-tailed
/// (log-normal with small sigma) weights give k well below 1/2. Tolerance 0.1: the fit
/// uses the top 3 sqrt(N) = 949 of 100k weights, whose k-hat has a standard error of
/// about (1 + k) / sqrt(949) ~ 0.05.
#[test]
fn pareto_k_hat_recovers_the_tail_shape() {
    let mut rng = StdRng::seed_from_u64(9);
    for &alpha in &[1.0f64, 2.0, 4.0] {
        let lw: Vec<f64> = (0..100_000).map(|_| -rng.gen::<f64>().ln() / alpha).collect();
        let k = pareto_k_hat(&lw).unwrap();
        assert!((k - 1.0 / alpha).abs() < 0.1, "alpha {alpha}: k-hat {k}");
    }
    let lw: Vec<f64> = (0..100_000).map(|_| 0.3 * Normal::new(0.0, 1.0).unwrap().sample(&mut rng)).collect();
    assert!(pareto_k_hat(&lw).unwrap() < 0.3);
    assert_eq!(pareto_k_hat(&[0.0; 10]), None);
}

/// A derived quantity of one column is that column's reweighted mean and error, and a
/// ratio of shifted Gaussian means is recovered within 4 sigma.
#[test]
fn derived_reweighting_reduces_to_plain_and_recovers_a_ratio() {
    let mut rng = StdRng::seed_from_u64(12);
    let mu = 0.4;
    let xs: Vec<f64> = (0..20_000).map(|_| Normal::new(0.0, 1.0).unwrap().sample(&mut rng)).collect();
    let lw: Vec<f64> = xs.iter().map(|x| -0.5 * (x - mu) * (x - mu) + 0.5 * x * x).collect();
    let plain = reweight(&xs, &lw);
    let mut one = |g: &mut dyn FnMut(f64, &[f64])| {
        lw.iter().zip(&xs).for_each(|(l, x)| g(*l, &[*x]));
        Ok(())
    };
    let d = reweight_derived_replay(1, &mut one, &|m| m[0]).unwrap();
    assert!((d.estimate.value - plain.estimate.value).abs() < 1e-12, "{d:?} {plain:?}");
    assert!((d.estimate.error / plain.estimate.error - 1.0).abs() < 1e-6, "{d:?} {plain:?}");
    // <x^2> / <1 + x> = (1 + mu^2) / (1 + mu) under p = N(mu, 1)
    let mut two = |g: &mut dyn FnMut(f64, &[f64])| {
        lw.iter().zip(&xs).for_each(|(l, x)| g(*l, &[x * x, 1.0 + x]));
        Ok(())
    };
    let r = reweight_derived_replay(2, &mut two, &|m| m[0] / m[1]).unwrap();
    let exact = (1.0 + mu * mu) / (1.0 + mu);
    assert!((r.estimate.value - exact).abs() < 4.0 * r.estimate.error, "{r:?} vs {exact}");
}

/// The streamed versions give the in-memory numbers bit for bit.
#[test]
fn streamed_reweighting_and_k_hat_match_in_memory() {
    let mut rng = StdRng::seed_from_u64(4);
    for n in [3usize, 40, 1000, 30_000] {
        let mut lw: Vec<f64> = (0..n).map(|_| -rng.gen::<f64>().ln() / 2.5).collect();
        lw[n / 2] = f64::NEG_INFINITY;
        let o: Vec<f64> = (0..n).map(|_| rng.gen::<f64>()).collect();
        let a = reweight(&o, &lw);
        let b = reweight_replay(&mut |f| {
            lw.iter().zip(&o).for_each(|(&l, &v)| f(l, v));
            Ok(())
        })
        .unwrap();
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        let mut top = TopLogWeights::new(n);
        lw.iter().for_each(|&l| top.push(l));
        assert_eq!(pareto_k_hat(&lw).map(f64::to_bits), top.k_hat().map(f64::to_bits), "n = {n}");
    }
}
