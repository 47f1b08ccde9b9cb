use latflow_comm::Comm;
use latflow_sampler::ensemble::*;
use latflow_sampler::metropolis::IndependenceMetropolis;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// The ensemble of `sample_over` on `ranks` threads as ranks, as rank 0 collects it.
fn ensemble_over(ranks: usize, n: usize, batch: usize, seed: u64) -> (Ensemble, ChainCounts) {
    let action = |x: &[f64]| -((1.0 + x[0]).ln());
    let mut out = latflow_comm::ThreadRanks::run(ranks, |comm| {
        let mut e = Ensemble::new(1);
        let counts = IndependenceSampler::new(&Three, &action, batch)
            .sample_over(n, seed, comm, &mut |b| {
                for i in 0..b.len() {
                    e.push(b.config(i), b.action[i], Some(b.logq[i]));
                }
                e.history.extend_from_slice(b.chain);
                Ok(())
            })
            .unwrap();
        assert_eq!(counts.is_some(), comm.rank() == 0);
        assert!(comm.rank() == 0 || e.is_empty(), "only rank 0's sink is called");
        (e, counts)
    });
    let (e, counts) = out.swap_remove(0);
    (e, counts.unwrap())
}

#[test]
fn sample_over_gives_one_ensemble_for_any_number_of_ranks() {
    // 1003 proposals in batches of 100: 11 batches, the last of 3; 4 ranks leave rank 3
    // without a batch in the last round
    let (one, c1) = ensemble_over(1, 1003, 100, 9);
    assert_eq!((one.len(), c1.len), (1003, 1003));
    for ranks in [2, 3, 4, 12] {
        let (e, c) = ensemble_over(ranks, 1003, 100, 9);
        assert_eq!(c, c1, "{ranks} ranks");
        assert_eq!(e.history, one.history, "{ranks} ranks");
        assert!(e.configs().eq(one.configs()), "{ranks} ranks");
    }
    // the chain samples p(x) = (1 + x) / 6: within 5 sigma, the binomial error doubled for
    // the autocorrelation of independence Metropolis at acceptance ~0.8
    let visits = |k: f64| one.chain_of(&one.measure(|c| f64::from(c[0] == k)), 0).iter().sum::<f64>() / 1003.0;
    for (k, p) in [(0.0, 1.0 / 6.0), (1.0, 2.0 / 6.0), (2.0, 3.0 / 6.0)] {
        assert!((visits(k) - p).abs() < 5.0 * (p * (1.0 - p) / 1003.0f64).sqrt() * 2.0, "x = {k}: {}", visits(k));
    }
    // another seed, another chain: the seed is used
    assert_ne!(ensemble_over(2, 1003, 100, 10).0.history, one.history);
}

/// q uniform on {0, 1, 2} (as one real value), p proportional to (1, 2, 3).
struct Three;
impl ProposalSource for Three {
    fn dof(&self) -> usize {
        1
    }
    fn propose(&self, n: usize, rng: &mut dyn RngCore) -> (Vec<f64>, Vec<f64>) {
        let x: Vec<f64> = (0..n).map(|_| rng.gen_range(0..3) as f64).collect();
        (x, vec![(1.0f64 / 3.0).ln(); n])
    }
}

/// The sampler's chain is the independence-Metropolis chain of its proposals: state
/// frequencies match p within 4 sigma (binomial errors inflated by sqrt(2 tau), tau <= 3),
/// and the batch size does not change the ensemble.
#[test]
fn samples_p_and_does_not_depend_on_the_batch() {
    let action = |x: &[f64]| -((x[0] + 1.0) / 6.0).ln();
    let n = 60_000;
    let e = IndependenceSampler::new(&Three, &action, 1000).sample(n, &mut StdRng::seed_from_u64(5));
    assert_eq!((e.len(), e.history.len()), (n, n));
    let x = e.measure(|c| c[0]);
    for s in 0..3 {
        let f = e.chain_of(&x, 0).iter().filter(|&&v| v == s as f64).count() as f64 / n as f64;
        let p = (s + 1) as f64 / 6.0;
        let sigma = (p * (1.0 - p) / n as f64).sqrt() * 6f64.sqrt();
        assert!((f - p).abs() < 4.0 * sigma, "state {s}: {f} vs {p}");
    }
    let rw = e.reweight(&x).unwrap();
    assert!((rw.estimate.value - 14.0 / 6.0 + 1.0).abs() < 4.0 * rw.estimate.error, "{rw:?}");
    assert!(e.acceptance() > 0.5 && e.acceptance() < 1.0);
}

/// Streaming hands every proposal of the ensemble to the sink once, in order, with the
/// chain's state, and stops at a sink error.
#[test]
fn streaming_matches_sampling_and_stops_on_errors() {
    let action = |x: &[f64]| -((x[0] + 1.0) / 6.0).ln();
    let all = IndependenceSampler::new(&Three, &action, 100).sample(1000, &mut StdRng::seed_from_u64(3));
    let mut seen = Vec::new();
    let mut sink = |b: &ProposalBatch| {
        assert_eq!(b.first, seen.len());
        for i in 0..b.len() {
            seen.push((b.config(i)[0], b.action[i], b.logq[i], b.chain[i]));
        }
        Ok(())
    };
    let mut sampler = IndependenceSampler::new(&Three, &action, 100);
    let c = sampler.sample_streaming(1000, &mut StdRng::seed_from_u64(3), &mut sink).unwrap();
    assert_eq!(c, ChainCounts { len: 1000, accepted: all.accepted, proposed: all.proposed });
    assert_eq!(seen.len(), 1000);
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(*s, (all.config(i)[0], all.action[i], all.logq.as_ref().unwrap()[i], all.history[i]));
    }
    // the chain as the history-keeping IndependenceMetropolis runs it, batch by batch
    let mut m = IndependenceMetropolis::new();
    let mut rng = StdRng::seed_from_u64(3);
    for first in (0..1000).step_by(100) {
        let (x, logq) = Three.propose(100, &mut rng);
        let lw: Vec<f64> = x.iter().zip(&logq).map(|(x, q)| -action(&[*x]) - q).collect();
        m.offer_batch(first, &lw, &mut rng);
    }
    assert_eq!(m.history(), &all.history[..]);
    let mut calls = 0;
    let r = sampler.sample_streaming(1000, &mut StdRng::seed_from_u64(3), &mut |_| {
        calls += 1;
        Err("disk full".into())
    });
    assert_eq!((r.unwrap_err(), calls), ("disk full".to_string(), 1));
}

#[test]
fn push_checks_lengths_and_log_q() {
    let mut e = Ensemble::new(2);
    e.push(&[1.0, 2.0], 0.5, None);
    assert_eq!(e.config(0), &[1.0, 2.0]);
    assert!(e.log_weights().is_none() && e.reweight(&[1.0]).is_none());
    let r = std::panic::catch_unwind(move || e.push(&[1.0, 2.0], 0.5, Some(0.0)));
    assert!(r.is_err(), "log q for some configurations only must panic");
}
