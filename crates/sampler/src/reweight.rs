//! Reweighting (importance sampling) with flow samples: the self-normalized estimator
//! `<O>_p ~ sum_i w_i O_i / sum_i w_i`, `w_i = p(x_i)/q(x_i)` known up to `Z`
//! (arXiv:2101.08176 section III.C). Its error follows from the delta method,
//! `Var ~ sum_i w_i^2 (O_i - <O>)^2 / (sum_i w_i)^2`, valid when the ESS is not tiny.

use crate::stats::Estimate;

/// Reweighted estimate and the effective sample size behind it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reweighted {
    /// `<O>` and its delta-method error.
    pub estimate: Estimate,
    /// `ESS / N = (sum w)^2 / (N sum w^2)`.
    pub ess: f64,
}

/// Self-normalized reweighting of `obs` (one value per independent flow sample) with
/// log weights `lw = log p - log q`.
///
/// # Panics
/// If the slices differ in length or are empty.
#[track_caller]
pub fn reweight(obs: &[f64], lw: &[f64]) -> Reweighted {
    assert_eq!(obs.len(), lw.len(), "reweight: {} observables vs {} weights", obs.len(), lw.len());
    assert!(!obs.is_empty(), "reweight: no samples");
    let m = lw.iter().copied().filter(|x| x.is_finite()).fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = lw.iter().map(|&x| if x.is_finite() { (x - m).exp() } else { 0.0 }).collect();
    let sw: f64 = w.iter().sum();
    let sw2: f64 = w.iter().map(|x| x * x).sum();
    let mean = w.iter().zip(obs).map(|(w, o)| w * o).sum::<f64>() / sw;
    let var = w.iter().zip(obs).map(|(w, o)| w * w * (o - mean) * (o - mean)).sum::<f64>() / (sw * sw);
    Reweighted { estimate: Estimate { value: mean, error: var.sqrt() }, ess: sw * sw / (obs.len() as f64 * sw2) }
}

/// The Pareto shape `k-hat` of the upper tail of the importance weights `w = exp(lw)`
/// (Vehtari, Simpson, Gelman, Yao, Gabry, arXiv:1507.02646, section 3): a generalized Pareto
/// distribution is fitted to the `M = min(N/5, 3 sqrt(N))` largest weights' excess over the
/// next one by the method of Zhang and Stephens (Technometrics 51 (2009) 316), with the
/// weakly informative prior of the paper (shrinks towards 0.5 with weight 10). The variance
/// of the weights is finite for `k < 1/2`; for `1/2 < k < 0.7` estimates converge slowly and
/// their errors are unreliable; beyond 0.7 the reweighted estimate and any error quoted for it
/// (or for an independence-Metropolis chain over the same proposals) cannot be trusted.
///
/// Non-finite log weights (zero weight) are left out. `None` with fewer than 5 weights in the
/// tail, or when they are all equal.
pub fn pareto_k_hat(lw: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = lw.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let keep = tail_len(n) + 1;
    pareto_k_hat_of_top(n, &v[n.saturating_sub(keep)..])
}

/// Weights in the tail fit of [`pareto_k_hat`] for `n` finite weights:
/// `M = min(N/5, 3 sqrt(N))`.
pub fn tail_len(n: usize) -> usize {
    ((n as f64 / 5.0).min(3.0 * (n as f64).sqrt())).floor() as usize
}

/// [`pareto_k_hat`] from the `M + 1` largest of `n` finite log weights ([`tail_len`]),
/// ascending: an ensemble streamed past keeps only those ([`TopLogWeights`]).
pub fn pareto_k_hat_of_top(n: usize, top: &[f64]) -> Option<f64> {
    let m = tail_len(n);
    if m < 5 || n < m + 1 || top.len() != m + 1 {
        return None;
    }
    let v = top;
    let top = v[m];
    let u = (v[0] - top).exp();
    // excesses over the threshold, ascending, scaled so the largest weight is 1
    let x: Vec<f64> = v[1..].iter().map(|&l| (l - top).exp() - u).collect();
    if x[m - 1] <= 0.0 {
        return None;
    }
    let (prior_bs, prior_k) = (3.0, 10.0);
    let m_est = 30 + (m as f64).sqrt() as usize;
    let quartile = x[((m as f64 / 4.0 + 0.5) as usize).max(1) - 1];
    if quartile <= 0.0 {
        return None;
    }
    let b: Vec<f64> = (1..=m_est)
        .map(|j| (1.0 - (m_est as f64 / (j as f64 - 0.5)).sqrt()) / (prior_bs * quartile) + 1.0 / x[m - 1])
        .collect();
    let k_of = |bj: f64| x.iter().map(|&xi| (-bj * xi).ln_1p()).sum::<f64>() / m as f64;
    let ks: Vec<f64> = b.iter().map(|&bj| k_of(bj)).collect();
    let len: Vec<f64> = b.iter().zip(&ks).map(|(bj, k)| m as f64 * ((-bj / k).ln() - k - 1.0)).collect();
    // posterior weights of the b grid (profile likelihood), normalized stably
    let w: Vec<f64> = (0..m_est).map(|i| 1.0 / len.iter().map(|l| (l - len[i]).exp()).sum::<f64>()).collect();
    let total: f64 = w.iter().filter(|x| x.is_finite()).sum();
    if total <= 0.0 || !total.is_finite() {
        return None;
    }
    let b_post: f64 = b.iter().zip(&w).filter(|(_, w)| w.is_finite()).map(|(b, w)| b * w / total).sum();
    let k_post = k_of(b_post);
    let k = (m as f64 * k_post + prior_k * 0.5) / (m as f64 + prior_k);
    k.is_finite().then_some(k)
}

/// The largest finite log weights of a stream, as many as [`pareto_k_hat`] fits for the
/// stream's length (at most `3 sqrt(N) + 1`: constant memory in practice).
#[derive(Clone, Debug)]
pub struct TopLogWeights {
    cap: usize,
    finite: usize,
    heap: std::collections::BinaryHeap<std::cmp::Reverse<TotalF64>>,
}

/// `f64` ordered by `total_cmp`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct TotalF64(f64);
impl Eq for TotalF64 {}
impl PartialOrd for TotalF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TotalF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl TopLogWeights {
    /// For a stream of at most `n` log weights.
    pub fn new(n: usize) -> Self {
        TopLogWeights { cap: tail_len(n) + 1, finite: 0, heap: Default::default() }
    }

    /// Offers one log weight (non-finite ones are left out, as in [`pareto_k_hat`]).
    pub fn push(&mut self, lw: f64) {
        if !lw.is_finite() {
            return;
        }
        self.finite += 1;
        if self.heap.len() < self.cap {
            self.heap.push(std::cmp::Reverse(TotalF64(lw)));
        } else if self.heap.peek().is_some_and(|m| TotalF64(lw) > m.0) {
            self.heap.pop();
            self.heap.push(std::cmp::Reverse(TotalF64(lw)));
        }
    }

    /// [`pareto_k_hat`] of the log weights pushed.
    pub fn k_hat(&self) -> Option<f64> {
        let mut v: Vec<f64> = self.heap.iter().map(|r| r.0 .0).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        let keep = tail_len(self.finite) + 1;
        pareto_k_hat_of_top(self.finite, &v[v.len().saturating_sub(keep)..])
    }
}

/// The largest finite log weight (the scale of the weights) and the number of weights, in
/// one pass.
///
/// # Panics
/// If there are none.
pub(crate) fn largest_log_weight(replay: &mut crate::stats::Replay<'_>) -> Result<(f64, usize), String> {
    let (mut m, mut n) = (f64::NEG_INFINITY, 0usize);
    replay(&mut |lw| {
        if lw.is_finite() {
            m = m.max(lw);
        }
        n += 1;
    })?;
    assert!(n > 0, "reweight: no samples");
    Ok((m, n))
}

/// Reads pairs `(log weight, observable)` from the start, handing each to the visitor.
pub type PairReplay<'a> = dyn FnMut(&mut dyn FnMut(f64, f64)) -> Result<(), String> + 'a;

/// [`reweight`] over pairs `(log weight, observable)` read by `replay` (three passes,
/// constant memory): the same numbers bit for bit.
///
/// # Errors
/// The first error of `replay`.
///
/// # Panics
/// If there are no pairs.
pub fn reweight_replay(replay: &mut PairReplay<'_>) -> Result<Reweighted, String> {
    let (m, n) = largest_log_weight(&mut |f| replay(&mut |lw, _| f(lw)))?;
    let w = |lw: f64| if lw.is_finite() { (lw - m).exp() } else { 0.0 };
    let (mut sw, mut sw2, mut swo) = (-0.0f64, -0.0f64, -0.0f64);
    replay(&mut |lw, o| {
        let w = w(lw);
        sw += w;
        sw2 += w * w;
        swo += w * o;
    })?;
    let mean = swo / sw;
    let mut var = -0.0f64;
    replay(&mut |lw, o| {
        let w = w(lw);
        var += w * w * (o - mean) * (o - mean);
    })?;
    let var = var / (sw * sw);
    Ok(Reweighted { estimate: Estimate { value: mean, error: var.sqrt() }, ess: sw * sw / (n as f64 * sw2) })
}

/// Reads pairs `(log weight, row of observables)` from the start, handing each to the visitor.
pub type WeightedRowReplay<'a> = dyn FnMut(&mut dyn FnMut(f64, &[f64])) -> Result<(), String> + 'a;

/// A derived quantity `F(<A_1>, ..., <A_k>)` by self-normalized reweighting of rows of `k`
/// observables read by `replay` (pairs of log weight and row), with the delta-method error:
/// the reweighting error ([`reweight`]) of the projected series
/// `sum_alpha dF/dA_alpha (a_alpha,i - <A_alpha>)`, the gradient by central differences of
/// step `sqrt(Var_alpha / ESS) / 2`.
///
/// # Errors
/// The first error of `replay`.
///
/// # Panics
/// If `k` is zero or there are no rows.
pub fn reweight_derived_replay(
    k: usize,
    replay: &mut WeightedRowReplay<'_>,
    f: &dyn Fn(&[f64]) -> f64,
) -> Result<Reweighted, String> {
    assert!(k > 0, "reweight_derived_replay: no columns");
    let (m, n) = largest_log_weight(&mut |f| replay(&mut |lw, _| f(lw)))?;
    let w = |lw: f64| if lw.is_finite() { (lw - m).exp() } else { 0.0 };
    let (mut sw, mut sw2, mut swa) = (-0.0f64, -0.0f64, vec![-0.0f64; k]);
    replay(&mut |lw, row| {
        let w = w(lw);
        sw += w;
        sw2 += w * w;
        swa.iter_mut().zip(row).for_each(|(s, a)| *s += w * a);
    })?;
    let means: Vec<f64> = swa.iter().map(|s| s / sw).collect();
    let mut var = vec![-0.0f64; k];
    replay(&mut |lw, row| {
        let w = w(lw);
        var.iter_mut().zip(row.iter().zip(&means)).for_each(|(v, (a, m))| *v += w * (a - m) * (a - m));
    })?;
    let ess_n = sw * sw / sw2;
    let mut grad = vec![0.0; k];
    let mut at = means.clone();
    for a in 0..k {
        let h = (var[a] / sw / ess_n).sqrt() / 2.0;
        if h > 0.0 {
            at[a] = means[a] + h;
            let fp = f(&at);
            at[a] = means[a] - h;
            let fm = f(&at);
            at[a] = means[a];
            grad[a] = (fp - fm) / (2.0 * h);
        }
    }
    let mut v2 = -0.0f64;
    replay(&mut |lw, row| {
        let w = w(lw);
        let d: f64 = row.iter().zip(means.iter().zip(&grad)).map(|(a, (m, g))| g * (a - m)).sum();
        v2 += w * w * d * d;
    })?;
    let error = (v2 / (sw * sw)).sqrt();
    Ok(Reweighted { estimate: Estimate { value: f(&means), error }, ess: sw * sw / (n as f64 * sw2) })
}
