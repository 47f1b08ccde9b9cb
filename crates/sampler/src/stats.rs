//! Statistics for Markov-chain output: binning, bootstrap, jackknife and the Gamma
//! method with automatic windowing (U. Wolff, "Monte Carlo errors with less errors",
//! Comput. Phys. Commun. 156 (2004) 143, hep-lat/0306017).
//!
//! Which one to use:
//! - [`gamma_method`] for the mean of one observable from one chain: error, `tau_int`
//!   and its error, no bin size to choose. [`gamma_method_replicas`] for several
//!   independent chains of the same observable, [`gamma_method_derived`] for a function
//!   of several means (a ratio, reweighting).
//! - [`bootstrap_mean`] / [`jackknife`] on binned data when a bin size is known to be
//!   much larger than `tau_int` (the tutorial's bootstrap uses bins of 4 and 16).
//!
//! ```
//! use latflow_sampler::stats::{ar1_series, gamma_method, S_TAU_DEFAULT};
//! use rand::{rngs::StdRng, SeedableRng};
//! // AR(1) with rho = 0.8: variance 1, tau_int = (1 + rho) / (2 (1 - rho)) = 4.5
//! let x = ar1_series(100_000, 0.8, &mut StdRng::seed_from_u64(1));
//! let g = gamma_method(&x, S_TAU_DEFAULT);
//! assert!((g.tau_int - 4.5).abs() < 4.0 * g.tau_int_error);
//! assert!(g.mean.abs() < 4.0 * g.error);
//! ```

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use std::fmt;

/// Wolff's default `S_tau = 1.5`: the window `W` is the first one where
/// `exp(-W / tau) - tau / sqrt(W N) < 0` with `tau = S_tau / ln((2 tau_int + 1) / (2 tau_int - 1))`.
pub const S_TAU_DEFAULT: f64 = 1.5;

/// A value with its one-sigma error.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Estimate {
    /// The central value.
    pub value: f64,
    /// Its standard error.
    pub error: f64,
}

impl fmt::Display for Estimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} +- {}", self.value, self.error)
    }
}

/// The Gamma-method estimate of a mean (Wolff 2004).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GammaEstimate {
    /// Sample mean `abar = (1/N) sum_i a_i`.
    pub mean: f64,
    /// Error of the mean, `sqrt(C_F(W) / N)` with `C_F(W) = Gamma(0) + 2 sum_{t=1}^W Gamma(t)`
    /// (after Wolff's bias correction of `Gamma`).
    pub error: f64,
    /// Error of the error, `error * sqrt((W + 1/2) / N)` (Wolff eq. 43).
    pub error_error: f64,
    /// Variance of one measurement, `Gamma(0)` (bias corrected).
    pub variance: f64,
    /// Integrated autocorrelation time `tau_int = C_F(W) / (2 Gamma(0))`; 0.5 for
    /// uncorrelated data, so `error^2 = 2 tau_int variance / N`.
    pub tau_int: f64,
    /// Error of `tau_int`, `2 tau_int sqrt((W + 1/2 - tau_int) / N)` (Wolff eq. 42).
    pub tau_int_error: f64,
    /// Summation window `W` that was chosen.
    pub window: usize,
    /// Whether the automatic window criterion was met before `W = N / 2`
    /// (if not, the chain is too short for its autocorrelation and `tau_int` is a lower bound).
    pub window_found: bool,
    /// Number of measurements `N` (over all replicas).
    pub n: usize,
}

impl GammaEstimate {
    /// The mean and its error as an [`Estimate`].
    pub fn estimate(&self) -> Estimate {
        Estimate { value: self.mean, error: self.error }
    }
}

impl fmt::Display for GammaEstimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} +- {} (tau_int {} +- {}, W {}{})",
            self.mean,
            self.error,
            self.tau_int,
            self.tau_int_error,
            self.window,
            if self.window_found { "" } else { ", window not found: chain too short" }
        )
    }
}

/// Plain mean `(1/N) sum_i x_i` (NaN for an empty slice).
pub fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// Unbiased sample variance `(1/(N-1)) sum_i (x_i - xbar)^2` (NaN for fewer than 2 values).
pub fn variance(x: &[f64]) -> f64 {
    let m = mean(x);
    x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (x.len() as f64 - 1.0)
}

/// Means of consecutive bins of `bin` values; a trailing partial bin is dropped.
///
/// # Panics
/// If `bin == 0`.
#[track_caller]
pub fn binned(x: &[f64], bin: usize) -> Vec<f64> {
    assert!(bin > 0, "binned: bin size must be positive");
    x.chunks_exact(bin).map(mean).collect()
}

/// Mean and naive error of the bin means: `sqrt(var(bins) / n_bins)`. Correct once
/// `bin >> tau_int`.
///
/// # Panics
/// If `bin == 0` or there are fewer than two bins.
#[track_caller]
pub fn binned_mean(x: &[f64], bin: usize) -> Estimate {
    let b = binned(x, bin);
    assert!(b.len() >= 2, "binned_mean: need at least 2 bins, got {} ({} values, bin {bin})", b.len(), x.len());
    Estimate { value: mean(&b), error: (variance(&b) / b.len() as f64).sqrt() }
}

/// Bootstrap of the mean on bins of `bin` values, as in the tutorial: `n_boot`
/// resamples (with replacement) of the bin means. Returns the mean of the binned data
/// and the standard deviation of the resampled means.
///
/// # Panics
/// If `bin == 0`, `n_boot < 2` or there is no complete bin.
#[track_caller]
pub fn bootstrap_mean<R: Rng + ?Sized>(x: &[f64], bin: usize, n_boot: usize, rng: &mut R) -> Estimate {
    let b = binned(x, bin);
    assert!(!b.is_empty() && n_boot >= 2, "bootstrap_mean: need bins ({}) and n_boot >= 2 ({n_boot})", b.len());
    let n = b.len();
    let boots: Vec<f64> = (0..n_boot).map(|_| (0..n).map(|_| b[rng.gen_range(0..n)]).sum::<f64>() / n as f64).collect();
    let m = mean(&boots);
    let var = boots.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n_boot as f64;
    Estimate { value: mean(&b), error: var.sqrt() }
}

/// Jackknife of a function of means: `columns` are equally long series (one per
/// primary observable), binned by `bin`; `f` maps the vector of column means to the
/// derived value. Returns `f(full means)` and the error
/// `sqrt((n-1)/n sum_k (f_k - fbar)^2)` over the `n` leave-one-bin-out estimates `f_k`.
///
/// ```
/// use latflow_sampler::stats::jackknife;
/// let (a, w) = (vec![1.0, 2.0, 3.0, 4.0], vec![1.0, 1.0, 2.0, 2.0]);
/// let r = jackknife(&[&a, &w], 1, |m| m[0] / m[1]); // <a> / <w>
/// assert!((r.value - 2.5 / 1.5).abs() < 1e-12);
/// ```
///
/// # Panics
/// If `columns` is empty, their lengths differ, `bin == 0` or there are fewer than two bins.
#[track_caller]
pub fn jackknife(columns: &[&[f64]], bin: usize, f: impl Fn(&[f64]) -> f64) -> Estimate {
    assert!(!columns.is_empty(), "jackknife: no columns");
    let len = columns[0].len();
    assert!(columns.iter().all(|c| c.len() == len), "jackknife: columns of different lengths");
    let bins: Vec<Vec<f64>> = columns.iter().map(|c| binned(c, bin)).collect();
    let n = bins[0].len();
    assert!(n >= 2, "jackknife: need at least 2 bins, got {n}");
    let sums: Vec<f64> = bins.iter().map(|b| b.iter().sum()).collect();
    let full: Vec<f64> = sums.iter().map(|s| s / n as f64).collect();
    let mut buf = vec![0.0; columns.len()];
    let fk: Vec<f64> = (0..n)
        .map(|k| {
            for (a, (s, b)) in buf.iter_mut().zip(sums.iter().zip(&bins)) {
                *a = (s - b[k]) / (n - 1) as f64;
            }
            f(&buf)
        })
        .collect();
    let fbar = mean(&fk);
    let var = fk.iter().map(|v| (v - fbar) * (v - fbar)).sum::<f64>() * (n - 1) as f64 / n as f64;
    Estimate { value: f(&full), error: var.sqrt() }
}

/// Normalized autocorrelation function `rho(t) = Gamma(t) / Gamma(0)` for `t = 0..=t_max`,
/// with `Gamma(t) = 1/(N-t) sum_{i=1}^{N-t} (a_i - abar)(a_{i+t} - abar)`.
pub fn autocorrelation(x: &[f64], t_max: usize) -> Vec<f64> {
    let m = mean(x);
    let d: Vec<f64> = x.iter().map(|v| v - m).collect();
    let gamma = gamma_block(&[&d], 0, t_max.min(x.len().saturating_sub(1)) + 1);
    gamma.iter().map(|g| g / gamma[0]).collect()
}

/// The Gamma method for the mean of one series with automatic windowing (Wolff 2004,
/// section 3.3): `Gamma(t)` is summed up to the first `W` with
/// `g(W) = exp(-W / tau(W)) - tau(W) / sqrt(W N) < 0`, where
/// `tau(W) = S_tau / ln((2 tau_int(W) + 1) / (2 tau_int(W) - 1))`, then `Gamma` gets the
/// bias correction `Gamma(t) += C_F(W) / N`. Pass [`S_TAU_DEFAULT`] unless the
/// autocorrelation has a known slow mode (then larger `s_tau`).
///
/// A constant series gives error 0 and `tau_int = 0.5`; a series with a NaN gives NaN
/// mean, error and `tau_int`.
///
/// # Panics
/// If the series has fewer than 2 values or `s_tau` is not positive.
#[track_caller]
pub fn gamma_method(series: &[f64], s_tau: f64) -> GammaEstimate {
    gamma_method_replicas(&[series], s_tau)
}

/// The Gamma method over `R` independent replicas (chains) of one observable (Wolff
/// 2004, eq. 31): `abar` is the mean over all `N = sum_r N_r` values and
/// `Gamma(t) = 1/(N - R t) sum_r sum_{i=1}^{N_r - t} (a^r_i - abar)(a^r_{i+t} - abar)`.
///
/// # Panics
/// If there are fewer than 2 values in all or `s_tau` is not positive.
#[track_caller]
pub fn gamma_method_replicas(replicas: &[&[f64]], s_tau: f64) -> GammaEstimate {
    let n: usize = replicas.iter().map(|r| r.len()).sum();
    assert!(n >= 2, "gamma_method: need at least 2 values, got {n}");
    assert!(s_tau > 0.0, "gamma_method: s_tau must be positive, got {s_tau}");
    // exactly constant (a chain stuck on one state): no variance, whatever the rounding of
    // the mean makes up (it gave errors of 1e-17 and pulls of 1e12)
    let first = replicas.iter().flat_map(|r| r.iter()).next().copied().unwrap_or(0.0);
    if replicas.iter().flat_map(|r| r.iter()).all(|&v| v == first) {
        return GammaEstimate { mean: first, tau_int: 0.5, window_found: true, n, ..Default::default() };
    }
    let m = replicas.iter().flat_map(|r| r.iter()).sum::<f64>() / n as f64;
    let devs: Vec<Vec<f64>> = replicas.iter().map(|r| r.iter().map(|v| v - m).collect()).collect();
    let refs: Vec<&[f64]> = devs.iter().map(|d| d.as_slice()).collect();
    let mut est = gamma_on_deviations(&refs, s_tau);
    est.mean = m;
    est
}

/// The Gamma method for a derived quantity `F(A_1, ..., A_k)` of the means of several
/// observables measured on the same configurations (Wolff 2004, section 3.1): the
/// series are projected on `sum_alpha dF/dA_alpha (a_alpha,i - abar_alpha)` with the
/// gradient from central differences of step `sqrt(Gamma_alpha(0) / N) / 2`, and that
/// series is analysed as in [`gamma_method`]. `mean` is `F(abar)` (no bias correction).
///
/// # Panics
/// If `columns` is empty, the lengths differ, there are fewer than 2 values or `s_tau <= 0`.
#[track_caller]
pub fn gamma_method_derived(columns: &[&[f64]], f: impl Fn(&[f64]) -> f64, s_tau: f64) -> GammaEstimate {
    assert!(!columns.is_empty(), "gamma_method_derived: no columns");
    let n = columns[0].len();
    assert!(columns.iter().all(|c| c.len() == n), "gamma_method_derived: columns of different lengths");
    assert!(n >= 2, "gamma_method_derived: need at least 2 values, got {n}");
    let means: Vec<f64> = columns.iter().map(|c| mean(c)).collect();
    let mut grad = vec![0.0; columns.len()];
    let mut a = means.clone();
    for (k, c) in columns.iter().enumerate() {
        let var = c.iter().map(|v| (v - means[k]).powi(2)).sum::<f64>() / n as f64;
        let h = (var / n as f64).sqrt() / 2.0;
        if h > 0.0 {
            a[k] = means[k] + h;
            let fp = f(&a);
            a[k] = means[k] - h;
            let fm = f(&a);
            a[k] = means[k];
            grad[k] = (fp - fm) / (2.0 * h);
        }
    }
    let devs: Vec<f64> =
        (0..n).map(|i| columns.iter().zip(means.iter().zip(&grad)).map(|(c, (m, g))| g * (c[i] - m)).sum()).collect();
    let mut est = gamma_on_deviations(&[&devs], s_tau);
    est.mean = f(&means);
    est
}

/// The gradient of `f` at `means` by central differences of step
/// `sqrt(variance_alpha / N) / 2` (zero where the variance is), as in
/// [`gamma_method_derived`].
fn derived_gradient(f: &dyn Fn(&[f64]) -> f64, means: &[f64], variances: &[f64], n: usize) -> Vec<f64> {
    let mut grad = vec![0.0; means.len()];
    let mut a = means.to_vec();
    for k in 0..means.len() {
        let h = (variances[k] / n as f64).sqrt() / 2.0;
        if h > 0.0 {
            a[k] = means[k] + h;
            let fp = f(&a);
            a[k] = means[k] - h;
            let fm = f(&a);
            a[k] = means[k];
            grad[k] = (fp - fm) / (2.0 * h);
        }
    }
    grad
}

/// [`gamma_method_derived`] over independent replicas (chains): `replicas[r][alpha]` is
/// column `alpha` of chain `r`. The means are over all values, the projected series per
/// chain are analysed as in [`gamma_method_replicas`].
///
/// # Panics
/// If there are no columns, the columns of a chain differ in length, or fewer than 2 values.
#[track_caller]
pub fn gamma_method_derived_replicas(replicas: &[Vec<&[f64]>], f: &dyn Fn(&[f64]) -> f64, s_tau: f64) -> GammaEstimate {
    let k = replicas.first().map_or(0, Vec::len);
    assert!(k > 0, "gamma_method_derived_replicas: no columns");
    assert!(replicas.iter().all(|r| r.len() == k && r.iter().all(|c| c.len() == r[0].len())), "ragged columns");
    let n: usize = replicas.iter().map(|r| r[0].len()).sum();
    assert!(n >= 2, "gamma_method_derived_replicas: need at least 2 values, got {n}");
    let means: Vec<f64> = (0..k).map(|a| replicas.iter().flat_map(|r| r[a].iter()).sum::<f64>() / n as f64).collect();
    let vars: Vec<f64> = (0..k)
        .map(|a| replicas.iter().flat_map(|r| r[a].iter()).map(|v| (v - means[a]).powi(2)).sum::<f64>() / n as f64)
        .collect();
    let grad = derived_gradient(f, &means, &vars, n);
    let devs: Vec<Vec<f64>> = replicas
        .iter()
        .map(|r| (0..r[0].len()).map(|i| (0..k).map(|a| grad[a] * (r[a][i] - means[a])).sum()).collect())
        .collect();
    let refs: Vec<&[f64]> = devs.iter().map(Vec::as_slice).collect();
    let mut est = gamma_on_deviations(&refs, s_tau);
    est.mean = f(&means);
    est
}

/// Reads rows of several columns from the start, handing each row to the visitor.
pub type RowReplay<'a> = dyn FnMut(&mut dyn FnMut(&[f64])) -> Result<(), String> + 'a;

/// [`gamma_method_derived`] for rows of `k` columns read by `replay` (constant memory): the
/// means and variances in two passes, then the projected series
/// `sum_alpha dF/dA_alpha (a_alpha,i - abar_alpha)` through [`gamma_method_replay`].
///
/// # Errors
/// The first error of `replay`.
///
/// # Panics
/// If `k` is zero or there are fewer than 2 rows.
pub fn gamma_method_derived_replay(
    k: usize,
    replay: &mut RowReplay<'_>,
    f: &dyn Fn(&[f64]) -> f64,
    s_tau: f64,
) -> Result<GammaEstimate, String> {
    derived_replay(k, replay, f, &mut |r| gamma_method_replay(r, s_tau))
}

/// [`gamma_method_derived_replay`] with the projected series analysed by
/// [`gamma_method_tail_replay`] (a chain with a known slow mode `tau_exp`).
///
/// # Errors
/// The first error of `replay`.
///
/// # Panics
/// As [`gamma_method_derived_replay`] and [`gamma_method_tail`].
pub fn gamma_method_derived_tail_replay(
    k: usize,
    replay: &mut RowReplay<'_>,
    f: &dyn Fn(&[f64]) -> f64,
    tau_exp: f64,
    n_sigma: f64,
) -> Result<GammaEstimate, String> {
    derived_replay(k, replay, f, &mut |r| gamma_method_tail_replay(r, tau_exp, n_sigma))
}

/// Means, variances and gradient of `f` from rows read by `replay`, then `analyse` on the
/// projected series.
fn derived_replay(
    k: usize,
    replay: &mut RowReplay<'_>,
    f: &dyn Fn(&[f64]) -> f64,
    analyse: &mut dyn FnMut(&mut Replay<'_>) -> Result<GammaEstimate, String>,
) -> Result<GammaEstimate, String> {
    assert!(k > 0, "gamma_method_derived_replay: no columns");
    let (mut sums, mut n) = (vec![-0.0f64; k], 0usize);
    replay(&mut |row| {
        sums.iter_mut().zip(row).for_each(|(s, v)| *s += v);
        n += 1;
    })?;
    assert!(n >= 2, "gamma_method_derived_replay: need at least 2 values, got {n}");
    let means: Vec<f64> = sums.iter().map(|s| s / n as f64).collect();
    let mut vars = vec![-0.0f64; k];
    replay(&mut |row| vars.iter_mut().zip(row.iter().zip(&means)).for_each(|(s, (v, m))| *s += (v - m).powi(2)))?;
    vars.iter_mut().for_each(|v| *v /= n as f64);
    let grad = derived_gradient(f, &means, &vars, n);
    let mut projected = |g: &mut dyn FnMut(f64)| {
        replay(&mut |row| g(row.iter().zip(means.iter().zip(&grad)).map(|(v, (m, d))| d * (v - m)).sum()))
    };
    let mut est = analyse(&mut projected)?;
    est.mean = f(&means);
    Ok(est)
}

/// Autocovariances `Gamma(t)` of deviations from the mean, computed as the windowing asks
/// for them (in ascending `t`).
trait Autocov {
    /// Values in all replicas.
    fn n(&self) -> usize;
    /// Non-empty replicas.
    fn replicas(&self) -> usize;
    /// The largest window: half the longest replica.
    fn w_max(&self) -> usize;
    /// `Gamma(t)`.
    fn gamma(&mut self, t: usize) -> Result<f64, String>;
}

/// Replicas of deviations held in memory, with `Gamma(t)` computed for a block of lags at a
/// time ([`gamma_block`]): blocks of 8 lags, doubling up to [`MEMORY_LAGS`], so a window of `W`
/// lags costs at most about twice its own products.
struct InMemory<'a> {
    devs: &'a [&'a [f64]],
    cache: Vec<f64>,
}

/// The largest block of lags [`InMemory`] computes in one pass over the series (2 KiB of sums).
const MEMORY_LAGS: usize = 256;

impl<'a> InMemory<'a> {
    fn new(devs: &'a [&'a [f64]]) -> Self {
        InMemory { devs, cache: Vec::new() }
    }
}

impl Autocov for InMemory<'_> {
    fn n(&self) -> usize {
        self.devs.iter().map(|d| d.len()).sum()
    }
    fn replicas(&self) -> usize {
        self.devs.iter().filter(|d| !d.is_empty()).count().max(1)
    }
    fn w_max(&self) -> usize {
        self.devs.iter().map(|d| d.len()).max().unwrap_or(0) / 2
    }
    fn gamma(&mut self, t: usize) -> Result<f64, String> {
        while self.cache.len() <= t {
            let t0 = self.cache.len();
            let lags = t0.next_power_of_two().clamp(8, MEMORY_LAGS);
            let block = gamma_block(self.devs, t0, lags);
            self.cache.extend(block);
        }
        Ok(self.cache[t])
    }
}

/// `Gamma(t)` for the lags `t = t0..t0 + lags`, summed over replicas of deviations `d` and
/// normalized by the number of pairs: `sum_d sum_{i < N_d - t} d_i d_{i+t} / sum_d (N_d - t)`
/// (NaN at a lag no replica reaches). Each lag's products are added in ascending `i`, but the
/// loop over the lags is the inner one, over contiguous partners `d[i + t0..]`, so it
/// vectorizes; one sequential sum per lag (what this replaced) ran at ~75 M products/s, which
/// made a long, slowly mixing chain (80000 values, `tau_int` ~ 9000) take seconds per
/// observable.
fn gamma_block(devs: &[&[f64]], t0: usize, lags: usize) -> Vec<f64> {
    let (mut total, mut pairs) = (vec![0.0f64; lags], vec![0usize; lags]);
    let mut sums = vec![-0.0f64; lags];
    for d in devs {
        let n = d.len();
        sums.fill(-0.0); // the start of `f64`'s `Sum`, which the sums replaced
        for (i, &di) in d[..n.saturating_sub(t0)].iter().enumerate() {
            let partners = &d[i + t0..];
            let m = partners.len().min(lags);
            for (s, &p) in sums[..m].iter_mut().zip(&partners[..m]) {
                *s += di * p;
            }
        }
        for l in 0..lags {
            if n > t0 + l {
                total[l] += sums[l];
                pairs[l] += n - (t0 + l);
            }
        }
    }
    total.iter().zip(&pairs).map(|(s, &p)| s / p as f64).collect()
}

/// Lags of `Gamma(t)` computed per pass over a replayed series: [`gamma_method_replay`] reads
/// its series once for the mean and once per block of `REPLAY_LAGS` lags up to the window `W`,
/// `1 + ceil((W + 1) / REPLAY_LAGS)` passes in all.
pub const REPLAY_LAGS: usize = 128;

/// A series that is read again from the start for every [`REPLAY_LAGS`] lags: the same
/// sums in the same order as [`gamma_block`], so the same bits, in constant memory.
struct Replayed<'a> {
    replay: &'a mut Replay<'a>,
    n: usize,
    mean: f64,
    cache: Vec<f64>,
}

/// Reads a series from the start, handing each value to the visitor.
pub type Replay<'a> = dyn FnMut(&mut dyn FnMut(f64)) -> Result<(), String> + 'a;

impl Autocov for Replayed<'_> {
    fn n(&self) -> usize {
        self.n
    }
    fn replicas(&self) -> usize {
        1
    }
    fn w_max(&self) -> usize {
        self.n / 2
    }
    fn gamma(&mut self, t: usize) -> Result<f64, String> {
        while self.cache.len() <= t {
            let t0 = self.cache.len();
            let hi = (t0 + REPLAY_LAGS).min(self.n.max(1));
            let lags = hi.saturating_sub(t0);
            let mut sums = vec![-0.0f64; lags];
            // the last `hi` (>= 1) deviations, newest first and written twice (at `q` and
            // `q + hi`), so the one `lag < hi` steps back is `hist[q + lag]` without a wrap:
            // each value adds to the lags' sums in one contiguous (vectorized) loop, where a
            // ring indexed `% hi` per lag cost an integer division per product (6 minutes for
            // 2e5 values with tau_int ~ 3000)
            let mut hist = vec![0.0f64; 2 * hi];
            let (mean, mut j, mut q) = (self.mean, 0usize, 0usize);
            (self.replay)(&mut |x| {
                let d = x - mean;
                q = if q == 0 { hi - 1 } else { q - 1 };
                hist[q] = d;
                hist[q + hi] = d;
                // lags t0.. that have a partner j - lag >= 0
                let valid = (j + 1).min(hi).saturating_sub(t0);
                for (s, past) in sums[..valid].iter_mut().zip(&hist[q + t0..q + t0 + valid]) {
                    *s += past * d;
                }
                j += 1;
            })?;
            if j != self.n {
                return Err(format!("the series was {j} values long when read again, {} before", self.n));
            }
            for (k, s) in sums.into_iter().enumerate() {
                let mut g = 0.0;
                g += s;
                self.cache.push(g / (self.n - (t0 + k)) as f64);
            }
            if hi == t0 {
                // no pairs at this lag
                self.cache.push(0.0);
            }
        }
        Ok(self.cache[t])
    }
}

/// [`gamma_method`] for a series read by `replay` (a few passes, constant memory: ensembles
/// whose series do not fit in memory). The same numbers as [`gamma_method`] on the same values,
/// bit for bit.
///
/// # Errors
/// The first error of `replay`, or a series whose length changes between passes.
///
/// # Panics
/// If the series has fewer than 2 values or `s_tau` is not positive.
pub fn gamma_method_replay(replay: &mut Replay<'_>, s_tau: f64) -> Result<GammaEstimate, String> {
    let (n, mean) = match first_pass(replay, "gamma_method")? {
        Ok(nm) => nm,
        Err(constant) => return Ok(constant),
    };
    assert!(s_tau > 0.0, "gamma_method: s_tau must be positive, got {s_tau}");
    let mut ac = Replayed { replay, n, mean, cache: Vec::new() };
    let mut est = gamma_windowed(&mut ac, s_tau)?;
    est.mean = mean;
    Ok(est)
}

/// The first pass over a replayed series: its length and mean (summed in order, as
/// [`mean`] does), or the estimate of an exactly constant series (error 0, as the in-memory
/// versions give it).
///
/// # Panics
/// If the series has fewer than 2 values (`what` names the caller).
#[allow(clippy::type_complexity)]
fn first_pass(replay: &mut Replay<'_>, what: &str) -> Result<Result<(usize, f64), GammaEstimate>, String> {
    let (mut sum, mut n, mut first, mut constant) = (-0.0f64, 0usize, f64::NAN, true);
    replay(&mut |x| {
        if n == 0 {
            first = x;
        }
        constant &= x == first;
        sum += x;
        n += 1;
    })?;
    assert!(n >= 2, "{what}: need at least 2 values, got {n}");
    if constant {
        return Ok(Err(GammaEstimate { mean: first, tau_int: 0.5, window_found: true, n, ..Default::default() }));
    }
    Ok(Ok((n, sum / n as f64)))
}

/// The estimate when `Gamma(0)` leaves nothing to window: NaN (a NaN in the series) or no
/// variance; `None` otherwise.
fn degenerate(g0: f64, n: usize, mean: f64) -> Option<GammaEstimate> {
    if g0.is_nan() {
        let nan = f64::NAN;
        return Some(GammaEstimate {
            mean,
            error: nan,
            error_error: nan,
            variance: nan,
            tau_int: nan,
            tau_int_error: nan,
            n,
            ..Default::default()
        });
    }
    (g0 <= 0.0).then(|| GammaEstimate { mean, tau_int: 0.5, window_found: true, n, ..Default::default() })
}

/// Windowing, bias correction and errors on deviations from the mean.
fn gamma_on_deviations(devs: &[&[f64]], s_tau: f64) -> GammaEstimate {
    gamma_windowed(&mut InMemory::new(devs), s_tau).expect("in-memory series cannot fail")
}

/// Wolff's automatic window on the autocovariances of `ac`.
fn gamma_windowed(ac: &mut dyn Autocov, s_tau: f64) -> Result<GammaEstimate, String> {
    let n = ac.n();
    let r = ac.replicas();
    let g0 = ac.gamma(0)?;
    if let Some(est) = degenerate(g0, n, 0.0) {
        return Ok(est);
    }
    let w_max = ac.w_max();
    let mut gammas = vec![g0];
    let mut window = w_max;
    let mut window_found = false;
    let mut c_f = g0;
    for w in 1..=w_max {
        let g = ac.gamma(w)?;
        gammas.push(g);
        c_f += 2.0 * g;
        let tau_w = c_f / (2.0 * g0);
        let tau =
            if tau_w <= 0.5 { f64::MIN_POSITIVE } else { s_tau / ((2.0 * tau_w + 1.0) / (2.0 * tau_w - 1.0)).ln() };
        let gw = (-(w as f64) / tau).exp() - tau / ((w * n) as f64).sqrt();
        // An anticorrelated series (tau_int(W) <= 1/2, e.g. the period-2 oscillation of an
        // observable under HMC with a trajectory near half its period) meets the criterion at
        // once; stopping there would cut the alternating sum of Gamma after a negative term
        // (C_F can even come out negative, error 0). Such a window grows by pairs
        // Gamma(W-1) + Gamma(W) while a pair is significantly negative (beyond 2 g0 / sqrt N).
        let anti = tau_w <= 0.5;
        let pair_done = w % 2 == 0 && gammas[w - 1] + gammas[w] >= -2.0 * g0 / (n as f64).sqrt();
        if gw < 0.0 && (!anti || pair_done || w == w_max) {
            window = w;
            window_found = true;
            break;
        }
    }
    // Bias correction (Wolff eq. 49 for R replicas: C_F R / N).
    let corr = c_f * r as f64 / n as f64;
    let gammas: Vec<f64> = gammas[..=window].iter().map(|g| g + corr).collect();
    let c_f = gammas[0] + 2.0 * gammas[1..].iter().sum::<f64>();
    let c_f = c_f.max(0.0);
    let tau_int = c_f / (2.0 * gammas[0]);
    let error = (c_f / n as f64).sqrt();
    let wf = window as f64;
    Ok(GammaEstimate {
        mean: 0.0,
        error,
        error_error: error * ((wf + 0.5) / n as f64).sqrt(),
        variance: gammas[0],
        tau_int,
        tau_int_error: 2.0 * tau_int * ((wf + 0.5 - tau_int).max(0.0) / n as f64).sqrt(),
        window,
        window_found,
        n,
    })
}

/// Lüscher's cut-off `Lambda` of the sum in the error of `rho(t)` (hep-lat/0409106,
/// eq. (E.11)), used by [`gamma_method_tail`].
pub const DRHO_LAMBDA: usize = 100;

/// Standard deviations `N_sigma` below which [`gamma_method_tail`] takes `rho(W)` as compatible
/// with zero and attaches the tail there: 1, the default of pyerrors (Joswig, Kuberski,
/// Kuhlmann, Neuendorf, arXiv:2209.14371), the reference implementation of the method.
pub const N_SIGMA_DEFAULT: f64 = 1.0;

/// The Gamma method with the tail correction of Schaefer, Sommer and Virotta ("Critical
/// slowing down and error analysis in lattice QCD simulations", Nucl. Phys. B 845 (2011) 93,
/// arXiv:1009.5228, section 4) for a chain whose slowest mode has the exponential
/// autocorrelation time `tau_exp`.
///
/// Wolff's automatic window assumes that `rho(t)` decays like one exponential of the size of
/// `tau_int`; a slow mode with a small amplitude (long rejection streaks of independence
/// Metropolis at rare high-weight states, topological freezing) is cut off and the error comes
/// out small. Here `rho(t) = Gamma(t) / Gamma(0)` is summed up to the first lag `W` where it is
/// compatible with zero, `rho(W) < n_sigma * delta_rho(W)` with
/// `delta_rho(t)^2 = (1/N) sum_{k=1}^{t+Lambda} [rho(k+t) + rho(|k-t|) - 2 rho(k) rho(t)]^2`
/// (Lüscher hep-lat/0409106 eq. (E.11), `Lambda` = [`DRHO_LAMBDA`]), and the rest of the sum is
/// bounded by the slowest mode decaying from there:
///
/// `tau_int^u = 1/2 + sum_{t=1}^{W} rho(t) + tau_exp |rho(W + 1)|`
///
/// (the tail attached as in pyerrors, arXiv:2209.14371; `rho` up to `W` after Wolff's bias
/// correction `Gamma(t) += C_F(W) / N`). The error is `sqrt(2 tau_int^u Gamma(0) / N)`;
/// `tau_int_error` is Wolff's eq. (42) at `W` combined with `tau_exp delta_rho(W + 1)`, and
/// `error_error = error * tau_int_error / (2 tau_int^u)`. `tau_exp = 0` gives the plain sum up
/// to `W`. With `tau_exp` at least the true exponential autocorrelation time the result is an
/// upper bound of the error (up to the noise of `rho(W + 1)`), which is what SSV propose to
/// quote. `window_found` is false when `rho` never became compatible with zero before
/// `W = (N/2 - Lambda) / 2` (then the chain is too short for its autocorrelation).
///
/// For an independence-Metropolis chain over flow proposals, `tau_exp` follows from the weights:
/// [`crate::tails::imh_tau_exp`] (or use [`crate::tails::imh_gamma`]).
///
/// A constant series (a chain stuck on one state) gives error 0 and `tau_int = 0.5`: it
/// carries no information on its error, which the caller must report as such; a series with
/// a NaN gives NaN.
///
/// # Panics
/// If the series has fewer than 2 values, `tau_exp` is negative or not finite, or `n_sigma`
/// is not positive.
#[track_caller]
pub fn gamma_method_tail(series: &[f64], tau_exp: f64, n_sigma: f64) -> GammaEstimate {
    let n = series.len();
    assert!(n >= 2, "gamma_method_tail: need at least 2 values, got {n}");
    check_tail_args(tau_exp, n_sigma);
    // a chain stuck on one state: exactly constant (the rounding of the mean must not
    // make up a variance of 1e-34)
    if series.iter().all(|&v| v == series[0]) {
        return GammaEstimate { mean: series[0], tau_int: 0.5, window_found: true, n, ..Default::default() };
    }
    let m = mean(series);
    let d: Vec<f64> = series.iter().map(|v| v - m).collect();
    tail_windowed(&mut InMemory::new(&[&d]), m, tau_exp, n_sigma).expect("in-memory series cannot fail")
}

/// [`gamma_method_tail`] for a series read by `replay` (a few passes, constant memory): the
/// same numbers bit for bit.
///
/// # Errors
/// The first error of `replay`, or a series whose length changes between passes.
///
/// # Panics
/// As [`gamma_method_tail`].
pub fn gamma_method_tail_replay(replay: &mut Replay<'_>, tau_exp: f64, n_sigma: f64) -> Result<GammaEstimate, String> {
    check_tail_args(tau_exp, n_sigma);
    let (n, m) = match first_pass(replay, "gamma_method_tail")? {
        Ok(nm) => nm,
        Err(constant) => return Ok(constant),
    };
    tail_windowed(&mut Replayed { replay, n, mean: m, cache: Vec::new() }, m, tau_exp, n_sigma)
}

#[track_caller]
fn check_tail_args(tau_exp: f64, n_sigma: f64) {
    assert!(tau_exp.is_finite() && tau_exp >= 0.0, "gamma_method_tail: tau_exp must be finite and >= 0, got {tau_exp}");
    assert!(n_sigma > 0.0, "gamma_method_tail: n_sigma must be positive, got {n_sigma}");
}

/// The window and tail of [`gamma_method_tail`] on the autocovariances of `ac` (mean `m`).
fn tail_windowed(ac: &mut dyn Autocov, m: f64, tau_exp: f64, n_sigma: f64) -> Result<GammaEstimate, String> {
    let n = ac.n();
    let g0 = ac.gamma(0)?;
    if let Some(est) = degenerate(g0, n, m) {
        return Ok(est);
    }
    // Gamma(t) for t = 0, 1, ... computed as needed (0 where there are no pairs)
    let mut gammas = vec![g0];
    let mut gamma_upto = |t: usize, gammas: &mut Vec<f64>| -> Result<(), String> {
        while gammas.len() <= t {
            let s = gammas.len();
            gammas.push(if s < n { ac.gamma(s)? } else { 0.0 });
        }
        Ok(())
    };
    let nf = n as f64;
    let drho = |t: usize, gammas: &[f64]| -> f64 {
        let rho = |k: usize| gammas[k] / g0;
        let s: f64 = (1..=t + DRHO_LAMBDA)
            .map(|k| {
                let v = rho(k + t) + rho(k.abs_diff(t)) - 2.0 * rho(k) * rho(t);
                v * v
            })
            .sum();
        (s / nf).sqrt()
    };
    let cap = ((n / 2).saturating_sub(DRHO_LAMBDA) / 2).max(1);
    let mut window = cap;
    let mut window_found = false;
    for t in 1..=cap {
        gamma_upto(2 * t + DRHO_LAMBDA + 1, &mut gammas)?;
        if gammas[t] / g0 < n_sigma * drho(t, &gammas) {
            window = t;
            window_found = true;
            break;
        }
    }
    gamma_upto(2 * (window + 1) + DRHO_LAMBDA, &mut gammas)?;
    let rho_next = gammas[window + 1] / g0;
    let drho_next = drho(window + 1, &gammas);
    // Wolff's bias correction (eq. 49), as in gamma_method
    let c_f = g0 + 2.0 * gammas[1..=window].iter().sum::<f64>();
    let corr = c_f / nf;
    let corrected: Vec<f64> = gammas[..=window].iter().map(|g| g + corr).collect();
    let c_f = (corrected[0] + 2.0 * corrected[1..].iter().sum::<f64>()).max(0.0);
    let tau_w = c_f / (2.0 * corrected[0]);
    let tau_int = tau_w + tau_exp * rho_next.abs();
    let wf = window as f64;
    let tau_w_error = 2.0 * tau_w * ((wf + 0.5 - tau_w).max(0.0) / nf).sqrt();
    let tau_int_error = (tau_w_error * tau_w_error + (tau_exp * drho_next).powi(2)).sqrt();
    let error = (2.0 * tau_int * corrected[0] / nf).sqrt();
    Ok(GammaEstimate {
        mean: m,
        error,
        error_error: if tau_int > 0.0 { error * tau_int_error / (2.0 * tau_int) } else { 0.0 },
        variance: corrected[0],
        tau_int,
        tau_int_error,
        window,
        window_found,
        n,
    })
}

/// An AR(1) series `x_{i+1} = rho x_i + sqrt(1 - rho^2) eta_i` with standard normal
/// `eta` and `x_0` drawn from the stationary law: mean 0, variance 1,
/// `Gamma(t) = rho^|t|`, `tau_int = (1 + rho) / (2 (1 - rho))`. The synthetic test
/// series of the statistics code.
///
/// # Panics
/// If `|rho| >= 1`.
#[track_caller]
pub fn ar1_series<R: Rng + ?Sized>(n: usize, rho: f64, rng: &mut R) -> Vec<f64> {
    assert!(rho.abs() < 1.0, "ar1_series: |rho| must be < 1, got {rho}");
    let s = (1.0 - rho * rho).sqrt();
    let mut x: f64 = StandardNormal.sample(rng);
    (0..n)
        .map(|_| {
            let out = x;
            let eta: f64 = StandardNormal.sample(rng);
            x = rho * x + s * eta;
            out
        })
        .collect()
}

/// Topological tunnelling rate: the fraction of consecutive configurations whose
/// charge `round(Q)` differs, `(1/(N-1)) #{i : round(Q_{i+1}) != round(Q_i)}`.
/// Near zero means the chain is frozen in one sector.
pub fn tunnelling_rate(q: &[f64]) -> f64 {
    if q.len() < 2 {
        return 0.0;
    }
    let changes = q.windows(2).filter(|w| w[0].round() != w[1].round()).count();
    changes as f64 / (q.len() - 1) as f64
}
