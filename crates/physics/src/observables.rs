//! Observables of single configurations (flat `f64` slices) and helpers to evaluate
//! them over a batch tensor. Ensemble averages and their errors come from
//! `latflow_sampler::stats`.
//!
//! phi^4 (arXiv:2101.08176, section III):
//! - magnetization per site `M = (1/V) sum_x phi(x)`,
//! - two-point function of one configuration `G(x) = (1/V) sum_y phi(y) phi(y + x)`,
//!   connected over an ensemble `G_c(x) = <G(x)> - <M>^2`,
//! - two-point susceptibility `chi_2 = sum_x <G(x)> = <(sum_y phi(y))^2 / V>`, as the
//!   tutorial's code computes it (no disconnected part subtracted).
//!
//! - the zero-momentum (time-slice) correlator of one configuration along the first axis,
//!   `G(t) = (1/V) sum_{t0} Phi(t0) Phi(t0 + t)` with `Phi(t) = sum_{y} phi(t, y)` the
//!   time-slice sum (`sum_t G(t) = V M^2`, so `sum_t <G(t)> = chi_2`), its free-field value
//!   ([`free_correlator`]), and what the ensemble averages give: the effective mass
//!   ([`effective_mass`]), the second-moment correlation length ([`second_moment_xi`]), the
//!   Binder cumulant ([`binder_cumulant`]).
//!
//! U(1): average plaquette and topological charge are methods of [`crate::U1`].

use crate::Lattice;
use latflow_tensor::{Float, Tensor};

/// Magnetization per site `M = (1/V) sum_x phi(x)`.
pub fn magnetization(phi: &[f64]) -> f64 {
    phi.iter().sum::<f64>() / phi.len() as f64
}

/// The two-point susceptibility of one configuration,
/// `sum_x (1/V) sum_y phi(y) phi(y + x) = (sum_y phi(y))^2 / V`; its ensemble mean is the
/// tutorial's `chi_2` (0.75 on 8x8 at M2 = -4, lam = 8).
///
/// ```
/// use latflow_physics::observables::two_point_susceptibility;
/// assert_eq!(two_point_susceptibility(&[1.0, 1.0, -1.0, 1.0]), 1.0);
/// ```
pub fn two_point_susceptibility(phi: &[f64]) -> f64 {
    let s: f64 = phi.iter().sum();
    s * s / phi.len() as f64
}

/// The two-point function of one configuration, `G(x) = (1/V) sum_y phi(y) phi(y + x)`,
/// written into `out[x]` with displacements `x` numbered as lattice sites (`O(V^2)`).
///
/// # Panics
/// If `phi` or `out` do not have the lattice's volume.
#[track_caller]
pub fn two_point(lat: &Lattice, phi: &[f64], out: &mut [f64]) {
    let v = lat.volume();
    assert!(phi.len() == v && out.len() == v, "two_point: lengths {} and {} on volume {v}", phi.len(), out.len());
    let coords: Vec<Vec<usize>> = (0..v).map(|x| lat.coords(x)).collect();
    for (x, o) in out.iter_mut().enumerate() {
        *o = (0..v).map(|y| phi[y] * phi[lat.translate(y, &coords[x])]).sum::<f64>() / v as f64;
    }
}

/// The time-slice correlator of one configuration, `out[t] = G(t)` for
/// `t = 0..out.len()` (at most `L_0 / 2 + 1` are independent: `G(L_0 - t) = G(t)`), with time
/// the first axis of a row-major configuration of `lat`.
///
/// # Panics
/// If `phi` does not have the lattice's volume or `out` is longer than `L_0`.
#[track_caller]
pub fn time_slice_correlator(lat: &Lattice, phi: &[f64], out: &mut [f64]) {
    let v = lat.volume();
    let lt = lat.shape()[0];
    assert!(phi.len() == v && out.len() <= lt, "time_slice_correlator: {} values, {} lags", phi.len(), out.len());
    let slices: Vec<f64> = phi.chunks_exact(v / lt).map(|s| s.iter().sum()).collect();
    for (t, o) in out.iter_mut().enumerate() {
        *o = (0..lt).map(|t0| slices[t0] * slices[(t0 + t) % lt]).sum::<f64>() / v as f64;
    }
}

/// The propagator at the smallest non-zero momentum, `G~(p_1) = <|phi~(p_1)|^2> / V` with
/// `phi~(p) = sum_x phi(x) e^{-i p x}` and `p_1 = 2 pi / L_mu` along axis `mu`, for one
/// configuration and averaged over the axes. For the free field (action normalization,
/// covariance `(1/2)(-Laplacian + M2)^{-1}`) its mean is `1 / (2 (4 sin^2(p_1 / 2) + M2))`;
/// unlike `chi_2` (p = 0) it does not see the global sign of phi, so in a broken phase it
/// measures the fluctuations about a vacuum.
///
/// # Panics
/// If `phi` does not have the lattice's volume.
#[track_caller]
pub fn lowest_momentum_propagator(lat: &Lattice, phi: &[f64]) -> f64 {
    let v = lat.volume();
    assert_eq!(phi.len(), v, "lowest_momentum_propagator: {} values on {v} sites", phi.len());
    let mut sum = 0.0;
    for (&l, &stride) in lat.shape().iter().zip(lat.strides()) {
        let p = 2.0 * std::f64::consts::PI / l as f64;
        let (mut re, mut im) = (0.0, 0.0);
        for (n, &f) in phi.iter().enumerate() {
            let x = ((n / stride) % l) as f64;
            re += f * (p * x).cos();
            im -= f * (p * x).sin();
        }
        sum += (re * re + im * im) / v as f64;
    }
    sum / lat.nd() as f64
}

/// The exact time-slice correlator of the free field (`lam = 0`, `M2 > 0`) with `L_0` time
/// slices, in the action's normalization (covariance `(1/2)(-Laplacian + M2)^{-1}`): only
/// zero spatial momentum survives the spatial sum,
/// `G(t) = (1/L_0) sum_{k=0}^{L_0 - 1} cos(p_k t) / (2 (4 sin^2(p_k / 2) + M2))`,
/// `p_k = 2 pi k / L_0`, for any spatial size and dimension.
pub fn free_correlator(l0: usize, m2: f64, t: usize) -> f64 {
    (0..l0)
        .map(|k| {
            let p = 2.0 * std::f64::consts::PI * k as f64 / l0 as f64;
            (p * t as f64).cos() / (2.0 * (4.0 * (p / 2.0).sin().powi(2) + m2))
        })
        .sum::<f64>()
        / l0 as f64
}

/// The effective mass `m(t) = arccosh[(G(t-1) + G(t+1)) / (2 G(t))]` from three consecutive
/// values of a periodic correlator (exact for `G(t) ~ cosh(m (t - L_0/2))`); NaN where the
/// ratio is below 1.
pub fn effective_mass(g_prev: f64, g: f64, g_next: f64) -> f64 {
    ((g_prev + g_next) / (2.0 * g)).acosh()
}

/// The second-moment correlation length from the time-slice correlator `g[t]`,
/// `t = 0..=L_0/2` (`L_0` even): with `G~(p) = sum_t cos(p t) G(t)` over a period and
/// `p_1 = 2 pi / L_0`, `xi_2^2 = (G~(0) / G~(p_1) - 1) / (4 sin^2(p_1 / 2))` (the free field
/// gives exactly `1 / M2`).
pub fn second_moment_xi(g: &[f64], l0: usize) -> f64 {
    let p1 = 2.0 * std::f64::consts::PI / l0 as f64;
    let ft = |p: f64| (0..l0).map(|t| (p * t as f64).cos() * g[t.min(l0 - t)]).sum::<f64>();
    ((ft(0.0) / ft(p1) - 1.0) / (4.0 * (p1 / 2.0).sin().powi(2))).sqrt()
}

/// The Binder cumulant `U_4 = 1 - <M^4> / (3 <M^2>^2)` from the two moments: 0 for a
/// Gaussian M (the symmetric phase at large volume), 2/3 for `M = +-m` (the broken phase).
pub fn binder_cumulant(m2: f64, m4: f64) -> f64 {
    1.0 - m4 / (3.0 * m2 * m2)
}

/// Connected two-point function over an ensemble, `G_c(x) = <G(x)> - <M>^2`, from
/// `configs` holding `N` configurations back to back (`N V` values). Returns `V` values
/// indexed like lattice sites.
///
/// # Panics
/// If `configs` is empty or not a multiple of the volume.
#[track_caller]
pub fn connected_two_point(lat: &Lattice, configs: &[f64]) -> Vec<f64> {
    let v = lat.volume();
    assert!(
        !configs.is_empty() && configs.len().is_multiple_of(v),
        "connected_two_point: {} values, volume {v}",
        configs.len()
    );
    let n = (configs.len() / v) as f64;
    let mut g = vec![0.0; v];
    let mut buf = vec![0.0; v];
    let mut m = 0.0;
    for c in configs.chunks_exact(v) {
        two_point(lat, c, &mut buf);
        for (a, b) in g.iter_mut().zip(&buf) {
            *a += b / n;
        }
        m += magnetization(c) / n;
    }
    g.iter().map(|x| x - m * m).collect()
}

/// Applies `f` to every configuration of a batch tensor (first axis = batch), after
/// converting it to `f64`: e.g. `per_config(&phi, two_point_susceptibility)` or
/// `per_config(&links, |x| u1.topological_charge(x))`.
///
/// ```
/// use latflow_physics::observables::{per_config, two_point_susceptibility};
/// use latflow_tensor::Tensor;
/// let t = Tensor::from_vec(&[2, 2], vec![1.0f32, 1.0, 1.0, -1.0]);
/// assert_eq!(per_config(&t, two_point_susceptibility), vec![2.0, 0.0]);
/// ```
///
/// # Panics
/// If the tensor has rank 0.
#[track_caller]
pub fn per_config<T: Float>(t: &Tensor<T>, mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    assert!(!t.shape().is_empty(), "per_config: need a batch axis, got a scalar");
    let n = t.shape()[0];
    if n == 0 {
        return Vec::new();
    }
    let per = t.len() / n;
    let mut buf = vec![0.0; per];
    t.data()
        .chunks_exact(per)
        .map(|c| {
            for (b, x) in buf.iter_mut().zip(c) {
                *b = x.to_f64();
            }
            f(&buf)
        })
        .collect()
}
