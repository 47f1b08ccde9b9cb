//! Independence Metropolis with flow proposals (arXiv:2101.08176 section III.C;
//! Albergo, Kanwar, Shanahan arXiv:1904.12072): proposals `x' ~ q` independent of the
//! current state are accepted with probability
//! `min(1, [p(x') q(x)] / [p(x) q(x')]) = min(1, exp(lw' - lw))`, `lw = log p - log q`.
//! The chain is exact (its stationary distribution is p) for any q with full support.

use rand::Rng;

/// A serial independence-Metropolis chain fed one proposal at a time (batches of flow
/// samples are fed in order).
#[derive(Clone, Debug, Default)]
pub struct IndependenceMetropolis {
    current_lw: Option<f64>,
    current_index: usize,
    proposed: usize,
    accepted: usize,
    history: Vec<usize>,
    forget: bool,
}

impl IndependenceMetropolis {
    /// An empty chain: its first proposal is taken as the starting state.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same, not recording the history (constant memory; read [`Self::state`] after
    /// each offer instead).
    pub fn without_history() -> Self {
        IndependenceMetropolis { forget: true, ..Self::default() }
    }

    /// The index of the proposal the chain sits on.
    pub fn state(&self) -> usize {
        self.current_index
    }

    /// Offers proposal number `index` with log weight `lw = log p - log q`; returns
    /// whether it was accepted. The first proposal starts the chain (not counted as a
    /// proposal). A non-finite `lw` (zero density under p, or q overflow) is rejected.
    pub fn offer<R: Rng + ?Sized>(&mut self, index: usize, lw: f64, rng: &mut R) -> bool {
        let accept = match self.current_lw {
            None => true,
            Some(cur) => {
                self.proposed += 1;
                let u: f64 = rng.gen();
                let ok = lw.is_finite() && (lw >= cur || u < (lw - cur).exp());
                self.accepted += ok as usize;
                ok
            }
        };
        if accept {
            self.current_lw = Some(lw);
            self.current_index = index;
        }
        if !self.forget {
            self.history.push(self.current_index);
        }
        accept
    }

    /// Offers a batch of consecutive proposals starting at index `first`.
    pub fn offer_batch<R: Rng + ?Sized>(&mut self, first: usize, lw: &[f64], rng: &mut R) {
        for (i, &w) in lw.iter().enumerate() {
            self.offer(first + i, w, rng);
        }
    }

    /// Fraction of proposals accepted (the first state is not a proposal).
    pub fn acceptance(&self) -> f64 {
        if self.proposed == 0 {
            0.0
        } else {
            self.accepted as f64 / self.proposed as f64
        }
    }

    /// Number of proposals accepted.
    pub fn accepted(&self) -> usize {
        self.accepted
    }

    /// Number of proposals offered after the first.
    pub fn proposed(&self) -> usize {
        self.proposed
    }

    /// For each Markov-chain step, the index of the proposal the chain sits on (empty
    /// for a chain made by [`Self::without_history`]).
    pub fn history(&self) -> &[usize] {
        &self.history
    }

    /// The chain's values of an observable measured on every proposal, after dropping
    /// the first `thermalize` steps.
    pub fn chain_of(&self, per_proposal: &[f64], thermalize: usize) -> Vec<f64> {
        self.history.iter().skip(thermalize).map(|&i| per_proposal[i]).collect()
    }
}
