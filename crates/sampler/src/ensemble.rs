//! Ensembles and the samplers that produce them.
//!
//! An [`Ensemble`] is what every sampler returns: the configurations it drew, their action,
//! their log density under the proposal (when there is one), and the Markov chain over them
//! (for each chain step, the index of the configuration the chain sits on). Observables are
//! measured once per configuration and read along the chain ([`Ensemble::chain_of`]) or
//! reweighted over the independent proposals ([`Ensemble::reweight`]).
//!
//! Samplers implement [`Sampler`]. [`IndependenceSampler`] draws proposals from any
//! [`ProposalSource`] (a flow: `latflow_flow::proposals`) in batches and runs independence
//! Metropolis over them in order (arXiv:2101.08176 section III.C); later samplers (flow-HMC,
//! mixtures of flows and HMC) return the same [`Ensemble`].
//!
//! ```
//! use latflow_sampler::ensemble::{IndependenceSampler, ProposalSource, Sampler};
//! use rand::{Rng, RngCore, SeedableRng};
//!
//! /// q = N(0, 1) in one variable, proposed exactly.
//! struct Normal;
//! impl ProposalSource for Normal {
//!     fn dof(&self) -> usize { 1 }
//!     fn propose(&self, n: usize, rng: &mut dyn RngCore) -> (Vec<f64>, Vec<f64>) {
//!         let x: Vec<f64> = (0..n).map(|_| rng.sample(rand_distr::StandardNormal)).collect();
//!         let logq = x.iter().map(|x| -0.5 * x * x).collect();
//!         (x, logq)
//!     }
//! }
//! // p = q: every proposal is accepted
//! let action = |x: &[f64]| 0.5 * x[0] * x[0];
//! let e = IndependenceSampler::new(&Normal, &action, 100).sample(1000, &mut rand::rngs::StdRng::seed_from_u64(0));
//! assert_eq!(e.acceptance(), 1.0);
//! assert_eq!(e.len(), 1000);
//! ```

use crate::metropolis::IndependenceMetropolis;
use crate::reweight::{reweight, Reweighted};
use latflow_comm::wire::{Reader, Writer};
use latflow_comm::Comm;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

/// Independent proposals with a known (normalized or not) log density: a flow, a mixture.
pub trait ProposalSource: Sync {
    /// Real values per configuration.
    fn dof(&self) -> usize;
    /// Draws `n` proposals: the configurations, `n * dof()` values row-major, and
    /// `log q` of each.
    fn propose(&self, n: usize, rng: &mut dyn RngCore) -> (Vec<f64>, Vec<f64>);
}

/// Configurations with their action and the Markov chain over them, in memory (a
/// streaming sampler hands its batches to a sink instead:
/// [`IndependenceSampler::sample_streaming`]).
#[derive(Clone, Debug, Default)]
pub struct Ensemble {
    /// The configurations, `len() * dof` values row-major.
    configs: Vec<f64>,
    dof: usize,
    /// `S(x)` of each configuration.
    pub action: Vec<f64>,
    /// `log q(x)` of each configuration under the proposal density (flow samplers).
    pub logq: Option<Vec<f64>>,
    /// For each Markov-chain step, the index of the configuration the chain sits on.
    pub history: Vec<usize>,
    /// Proposals accepted and offered (the first state is not a proposal).
    pub accepted: usize,
    /// Proposals offered.
    pub proposed: usize,
}

impl Ensemble {
    /// An empty ensemble of configurations with `dof` values each.
    pub fn new(dof: usize) -> Self {
        Ensemble { dof, ..Default::default() }
    }

    /// Number of configurations.
    pub fn len(&self) -> usize {
        self.action.len()
    }

    /// Whether the ensemble holds no configuration.
    pub fn is_empty(&self) -> bool {
        self.action.is_empty()
    }

    /// Real values per configuration.
    pub fn dof(&self) -> usize {
        self.dof
    }

    /// Configuration `i`.
    pub fn config(&self, i: usize) -> &[f64] {
        &self.configs[i * self.dof..(i + 1) * self.dof]
    }

    /// The configurations in order.
    pub fn configs(&self) -> impl Iterator<Item = &[f64]> {
        self.configs.chunks_exact(self.dof.max(1))
    }

    /// Appends a configuration with its action and, for flow samplers, `log q`.
    ///
    /// # Panics
    /// If the length is not `dof`, or `logq` is given for some configurations only.
    #[track_caller]
    pub fn push(&mut self, config: &[f64], action: f64, logq: Option<f64>) {
        assert_eq!(config.len(), self.dof, "ensemble of {} values per configuration", self.dof);
        match (&mut self.logq, logq) {
            (Some(v), Some(q)) => v.push(q),
            (None, Some(q)) if self.action.is_empty() => self.logq = Some(vec![q]),
            (None, None) => {}
            _ => panic!("ensemble: log q given for some configurations only"),
        }
        self.configs.extend_from_slice(config);
        self.action.push(action);
    }

    /// Fraction of proposals accepted (0 when nothing was proposed).
    pub fn acceptance(&self) -> f64 {
        if self.proposed == 0 {
            0.0
        } else {
            self.accepted as f64 / self.proposed as f64
        }
    }

    /// Log weights `log p - log q = -S - log q` of flow proposals (`None` without `log q`).
    pub fn log_weights(&self) -> Option<Vec<f64>> {
        self.logq.as_ref().map(|q| self.action.iter().zip(q).map(|(s, q)| -s - q).collect())
    }

    /// An observable on every configuration.
    pub fn measure(&self, f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
        self.configs().map(f).collect()
    }

    /// The chain's values of an observable measured on every configuration, after
    /// dropping the first `thermalize` steps.
    pub fn chain_of(&self, per_config: &[f64], thermalize: usize) -> Vec<f64> {
        self.history.iter().skip(thermalize).map(|&i| per_config[i]).collect()
    }

    /// Self-normalized reweighting of an observable over the (independent) proposals
    /// (`None` without `log q`).
    pub fn reweight(&self, per_config: &[f64]) -> Option<Reweighted> {
        self.log_weights().map(|lw| reweight(per_config, &lw))
    }
}

/// One batch of proposals as an [`IndependenceSampler`] drew and offered them.
#[derive(Clone, Copy, Debug)]
pub struct ProposalBatch<'a> {
    /// Index of the batch's first proposal in the ensemble.
    pub first: usize,
    /// Values per configuration.
    pub dof: usize,
    /// The configurations, `len() * dof` values.
    pub configs: &'a [f64],
    /// `S(x)` of each.
    pub action: &'a [f64],
    /// `log q(x)` of each.
    pub logq: &'a [f64],
    /// For the chain step of each proposal, the index of the configuration the chain sits
    /// on after it was offered (itself if accepted, an earlier one otherwise).
    pub chain: &'a [usize],
}

impl ProposalBatch<'_> {
    /// Proposals in the batch.
    pub fn len(&self) -> usize {
        self.action.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.action.is_empty()
    }

    /// Configuration `i` of the batch.
    pub fn config(&self, i: usize) -> &[f64] {
        &self.configs[i * self.dof..(i + 1) * self.dof]
    }
}

/// Something that draws an ensemble of `n` chain steps.
pub trait Sampler {
    /// Draws the ensemble, all randomness from `rng`.
    fn sample(&mut self, n: usize, rng: &mut dyn RngCore) -> Ensemble;
}

/// Independence Metropolis over proposals drawn in batches from a [`ProposalSource`]:
/// batch after batch, each proposal is offered to the chain in order with log weight
/// `-S(x) - log q(x)` (exact sampling of `exp(-S)` for any `q` with full support).
pub struct IndependenceSampler<'a, P: ProposalSource + ?Sized> {
    source: &'a P,
    action: &'a (dyn Fn(&[f64]) -> f64 + Sync),
    batch: usize,
}

impl<'a, P: ProposalSource + ?Sized> IndependenceSampler<'a, P> {
    /// Proposals from `source` in batches of `batch`, `action` = `S` on one configuration.
    ///
    /// # Panics
    /// If `batch` is zero.
    #[track_caller]
    pub fn new(source: &'a P, action: &'a (dyn Fn(&[f64]) -> f64 + Sync), batch: usize) -> Self {
        assert!(batch > 0, "IndependenceSampler: batch must be positive");
        IndependenceSampler { source, action, batch }
    }
}

/// What a streaming run of an [`IndependenceSampler`] counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainCounts {
    /// Proposals drawn (= chain steps).
    pub len: usize,
    /// Proposals accepted (the first state is not a proposal).
    pub accepted: usize,
    /// Proposals offered after the first.
    pub proposed: usize,
}

impl<P: ProposalSource + ?Sized> IndependenceSampler<'_, P> {
    /// Draws `n` proposals like [`Sampler::sample`] (the same proposals and chain for the
    /// same `rng`) and hands each batch to `sink` after the chain has seen it, keeping
    /// nothing: memory stays at one batch whatever `n` (the sink measures, saves, spools).
    ///
    /// # Errors
    /// The first error `sink` returns; sampling stops there.
    pub fn sample_streaming(
        &mut self,
        n: usize,
        rng: &mut dyn RngCore,
        sink: &mut dyn FnMut(&ProposalBatch) -> Result<(), String>,
    ) -> Result<ChainCounts, String> {
        let dof = self.source.dof();
        let mut chain = IndependenceMetropolis::without_history();
        let mut done = 0;
        let mut states = Vec::with_capacity(self.batch.min(n));
        while done < n {
            let b = self.batch.min(n - done);
            let (x, logq) = self.source.propose(b, rng);
            assert_eq!((x.len(), logq.len()), (b * dof, b), "proposal source returned the wrong sizes");
            let action: Vec<f64> = x.chunks_exact(dof.max(1)).map(|c| (self.action)(c)).collect();
            states.clear();
            for (i, (s, q)) in action.iter().zip(&logq).enumerate() {
                chain.offer(done + i, -s - q, rng);
                states.push(chain.state());
            }
            sink(&ProposalBatch { first: done, dof, configs: &x, action: &action, logq: &logq, chain: &states })?;
            done += b;
        }
        Ok(ChainCounts { len: done, accepted: chain.accepted(), proposed: chain.proposed() })
    }
}

impl<P: ProposalSource + ?Sized> IndependenceSampler<'_, P> {
    /// Draws `n` proposals in batches, batch `b` (proposals `b * batch ..`) from an RNG seeded
    /// by [`batch_seed`]`(seed, b)` and the chain's accept/reject uniforms from an RNG seeded
    /// by `seed`, so that any process can draw any batch: on the ranks of `comm`, rank `r` of
    /// `p` draws the batches `b = r (mod p)` (proposals, `log q` and `S`), rank 0 gathers them
    /// a round of `p` batches at a time and offers them to the chain in batch order, then
    /// hands each to `sink`. The proposals, the chain and so the ensemble are the same for
    /// every number of ranks; memory on rank 0 is `p` batches.
    ///
    /// Rank 0 returns the counts; the other ranks return `None` and never call `sink`.
    ///
    /// # Errors
    /// The first error `sink` returns (on rank 0); sampling stops there, and the other ranks
    /// wait in the next gather (the caller ends the job).
    pub fn sample_over(
        &mut self,
        n: usize,
        seed: u64,
        comm: &dyn Comm,
        sink: &mut dyn FnMut(&ProposalBatch) -> Result<(), String>,
    ) -> Result<Option<ChainCounts>, String> {
        let dof = self.source.dof();
        let batches = n.div_ceil(self.batch);
        let (p, r) = (comm.size(), comm.rank());
        let mut chain_rng = StdRng::seed_from_u64(seed);
        let mut chain = IndependenceMetropolis::without_history();
        let mut done = 0;
        let mut states = Vec::with_capacity(self.batch.min(n));
        for round in 0..batches.div_ceil(p) {
            let b = round * p + r;
            let mut w = Writer::default();
            if b < batches {
                let len = self.batch.min(n - b * self.batch);
                let (x, logq) = self.source.propose(len, &mut StdRng::seed_from_u64(batch_seed(seed, b)));
                assert_eq!((x.len(), logq.len()), (len * dof, len), "proposal source returned the wrong sizes");
                let action: Vec<f64> = x.chunks_exact(dof.max(1)).map(|c| (self.action)(c)).collect();
                w = Writer::with_capacity(8 * (len * dof + 2 * len + 1));
                w.u64(len as u64);
                w.f64s(&x);
                w.f64s(&action);
                w.f64s(&logq);
            }
            let Some(all) = comm.gather(0, &w.into_bytes()) else { continue };
            // rank order is batch order within the round; ranks past the last batch sent nothing
            for bytes in all.iter().filter(|b| !b.is_empty()) {
                let mut rd = Reader::new(bytes);
                let len = rd.u64() as usize;
                let (x, action, logq) = (rd.f64s(len * dof), rd.f64s(len), rd.f64s(len));
                rd.finish();
                states.clear();
                for (i, (s, q)) in action.iter().zip(&logq).enumerate() {
                    chain.offer(done + i, -s - q, &mut chain_rng);
                    states.push(chain.state());
                }
                sink(&ProposalBatch { first: done, dof, configs: &x, action: &action, logq: &logq, chain: &states })?;
                done += len;
            }
        }
        Ok(comm.is_root().then(|| ChainCounts { len: done, accepted: chain.accepted(), proposed: chain.proposed() }))
    }
}

/// The seed of batch `b`'s proposals in [`IndependenceSampler::sample_over`]: splitmix64 of
/// the run's seed and the batch.
pub fn batch_seed(seed: u64, b: usize) -> u64 {
    let mut z = seed ^ (b as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl<P: ProposalSource + ?Sized> Sampler for IndependenceSampler<'_, P> {
    fn sample(&mut self, n: usize, rng: &mut dyn RngCore) -> Ensemble {
        let mut e = Ensemble::new(self.source.dof());
        let counts = self
            .sample_streaming(n, rng, &mut |b| {
                for i in 0..b.len() {
                    e.push(b.config(i), b.action[i], Some(b.logq[i]));
                }
                e.history.extend_from_slice(b.chain);
                Ok(())
            })
            .expect("a sink that never fails");
        e.accepted = counts.accepted;
        e.proposed = counts.proposed;
        e
    }
}
