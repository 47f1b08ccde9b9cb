use latflow_physics::observables::*;
use latflow_physics::*;
use latflow_tensor::Tensor;

/// Against direct formulas on a random configuration: G(t) from the two-point function
/// summed over space, sum_t G(t) = V M^2, symmetry G(L-t) = G(t); the free propagator
/// sums to chi_2 = 1/(2 M2) and gives xi_2 = 1/sqrt(M2) and a constant effective mass.
#[test]
fn correlator_and_derived_quantities_match_direct_formulas() {
    let lat = Lattice::new(&[6, 4]);
    let phi: Vec<f64> = (0..24).map(|i| ((i * 7919) % 13) as f64 / 6.0 - 1.0).collect();
    let mut g = vec![0.0; 6];
    time_slice_correlator(&lat, &phi, &mut g);
    let mut two = vec![0.0; 24];
    two_point(&lat, &phi, &mut two);
    for t in 0..6 {
        // G(t) = sum over spatial displacements of the two-point function at time t
        let direct: f64 = (0..4).map(|y| two[t * 4 + y]).sum();
        assert!((g[t] - direct).abs() < 1e-12, "t = {t}: {} vs {direct}", g[t]);
        assert!((g[t] - g[(6 - t) % 6]).abs() < 1e-12);
    }
    let total: f64 = g.iter().sum();
    assert!((total - 24.0 * magnetization(&phi).powi(2)).abs() < 1e-12);
    let (l0, m2) = (16, 0.3);
    let free: Vec<f64> = (0..=l0 / 2).map(|t| free_correlator(l0, m2, t)).collect();
    let chi: f64 = (0..l0).map(|t| free[t.min(l0 - t)]).sum();
    assert!((chi - 1.0 / (2.0 * m2)).abs() < 1e-12, "{chi}");
    assert!((second_moment_xi(&free, l0) - 1.0 / m2.sqrt()).abs() < 1e-12);
    let m1 = effective_mass(free[0], free[1], free[2]);
    let m3 = effective_mass(free[2], free[3], free[4]);
    // one pole: cosh(m) = 1 + M2/2 for the lattice propagator
    assert!((m1 - (1.0 + m2 / 2.0).acosh()).abs() < 1e-9 && (m3 - m1).abs() < 1e-9, "{m1} {m3}");
    assert!((binder_cumulant(1.0, 3.0)).abs() < 1e-15 && (binder_cumulant(1.0, 1.0) - 2.0 / 3.0).abs() < 1e-15);
}

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

/// Against the definition: `|sum_x phi(x) e^{-i p_1 x_mu}|^2 / V` with each site's
/// coordinates from `Lattice::coords`, averaged over the axes, on a non-square lattice.
#[test]
fn lowest_momentum_propagator_is_the_fourier_mode() {
    let mut rng = StdRng::seed_from_u64(3);
    let lat = Lattice::new(&[4, 6]);
    let phi = Tensor::<f64>::randn(&[24], &mut rng);
    let mut want = 0.0;
    for mu in 0..2 {
        let p = 2.0 * std::f64::consts::PI / lat.shape()[mu] as f64;
        let (mut re, mut im) = (0.0, 0.0);
        for (n, f) in phi.data().iter().enumerate() {
            let x = lat.coords(n)[mu] as f64;
            re += f * (p * x).cos();
            im += f * (-p * x).sin();
        }
        want += (re * re + im * im) / 24.0 / 2.0;
    }
    let got = lowest_momentum_propagator(&lat, phi.data());
    assert!((got - want).abs() < 1e-12 * want, "{got} {want}");
    // blind to the global sign, and zero for a constant field
    let neg: Vec<f64> = phi.data().iter().map(|v| -v).collect();
    assert!((lowest_momentum_propagator(&lat, &neg) - got).abs() < 1e-12 * got);
    assert!(lowest_momentum_propagator(&lat, &[1.3; 24]) < 1e-20);
}

#[test]
fn connected_two_point_of_constant_field_vanishes() {
    let lat = Lattice::new(&[3, 3]);
    let gc = connected_two_point(&lat, &[0.7; 18]);
    assert!(gc.iter().all(|g| g.abs() < 1e-12));
}
