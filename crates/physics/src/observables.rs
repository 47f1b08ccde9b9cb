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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn two_point_sums_to_susceptibility() {
        let mut rng = StdRng::seed_from_u64(1);
        let lat = Lattice::new(&[4, 6]);
        let phi = Tensor::<f64>::randn(&[24], &mut rng);
        let mut g = vec![0.0; 24];
        two_point(&lat, phi.data(), &mut g);
        let chi: f64 = g.iter().sum();
        assert!((chi - two_point_susceptibility(phi.data())).abs() < 1e-12);
        // G(0) is the mean square; G is symmetric under x -> -x
        assert!((g[0] - phi.data().iter().map(|p| p * p).sum::<f64>() / 24.0).abs() < 1e-12);
        let x = lat.index(&[1, 2]);
        let mx = lat.index(&[3, 4]);
        assert!((g[x] - g[mx]).abs() < 1e-12);
    }

    #[test]
    fn connected_two_point_of_constant_field_vanishes() {
        let lat = Lattice::new(&[3, 3]);
        let gc = connected_two_point(&lat, &[0.7; 18]);
        assert!(gc.iter().all(|g| g.abs() < 1e-12));
    }
}
