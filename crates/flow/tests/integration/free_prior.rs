//! Audits of the free-field prior `r = N(0, (1/2)(-Laplacian + m_p^2)^{-1})` (f64): its
//! density against a dense Gaussian whose precision is the Hessian of the physics crate's
//! phi^4 action at `lam = 0` (so the normalization convention is checked against
//! `latflow_physics::Phi4`, not against itself), the Fourier basis, the sampling map (round
//! trip, finite-difference log-det, exact covariance), seeded sample statistics, the tape
//! form, and the free theory sampled by the prior alone (ESS = 1).

use latflow_flow::model::Flow;
use latflow_flow::prior::{real_fourier_basis, FreePrior, NormalPrior, Prior};
use latflow_flow::train::ess;
use latflow_physics::{Action, Lattice, Phi4};
use latflow_sampler::ensemble::{IndependenceSampler, Sampler};
use latflow_tensor::{Tensor, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::common;
use common::log_abs_det;

/// Two f64 evaluations of the same O(10-100) quantity by different algorithms (Fourier
/// eigenvalues vs Cholesky, real-space sums vs matrix products): O(V^2) roundings of 1e-16.
const DENSE_TOL: f64 = 1e-10;
/// `whiten(color(eta)) - eta`: two orthogonal transforms of O(1) values.
const ROUNDTRIP_TOL: f64 = 1e-12;
/// log|det| of the central-difference Jacobian of the (linear) coloring map: exact up to
/// rounding ~1e-16 / h per entry over a 16x16 determinant.
const FD_LOGDET_TOL: f64 = 1e-8;
/// Central-difference step.
const FD_STEP: f64 = 1e-4;
/// Sigma allowed for the seeded statistical test.
const N_SIGMA: f64 = 4.0;

/// The precision `P = Sigma^{-1}` as the Hessian of the tutorial's action at `lam = 0`:
/// the force of `latflow_physics::Phi4` is `dS/dz = P z` (linear), so column `j` is the force
/// at the unit vector `e_j`.
fn precision(shape: &[usize], m2: f64) -> Vec<Vec<f64>> {
    let phys = Phi4::new(Lattice::new(shape), m2, 0.0);
    let v = phys.dof();
    let mut p = vec![vec![0.0; v]; v];
    let mut f = vec![0.0; v];
    for j in 0..v {
        let mut e = vec![0.0; v];
        e[j] = 1.0;
        phys.force(&e, &mut f);
        for i in 0..v {
            p[i][j] = f[i];
        }
    }
    p
}

/// Lower Cholesky factor of a symmetric positive definite matrix.
fn cholesky(a: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = a.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let d = a[i][i] - s;
                assert!(d > 0.0, "not positive definite");
                l[i][i] = d.sqrt();
            } else {
                l[i][j] = (a[i][j] - s) / l[j][j];
            }
        }
    }
    l
}

/// `log N(z; 0, P^{-1}) = -z^T P z / 2 + log det P / 2 - V log(2 pi) / 2`, by Cholesky.
fn dense_log_density(p: &[Vec<f64>], z: &[f64]) -> f64 {
    let l = cholesky(p);
    let log_det: f64 = 2.0 * (0..p.len()).map(|i| l[i][i].ln()).sum::<f64>();
    let quad: f64 = (0..p.len()).map(|i| z[i] * (0..p.len()).map(|j| p[i][j] * z[j]).sum::<f64>()).sum();
    -0.5 * quad + 0.5 * log_det - 0.5 * p.len() as f64 * (2.0 * std::f64::consts::PI).ln()
}

#[test]
fn log_density_equals_a_dense_gaussian_with_the_actions_hessian_as_precision() {
    for (shape, m2) in [(vec![4, 4], 0.5), (vec![4, 4], 3.0), (vec![3, 5], 0.7), (vec![2, 2], 1.0), (vec![6], 0.2)] {
        let prior = FreePrior::new(&shape, m2);
        let p = precision(&shape, m2);
        let v: usize = shape.iter().product();
        let z: Tensor<f64> = Tensor::randn(&[3, v], &mut StdRng::seed_from_u64(1));
        let mut zs = vec![3];
        zs.extend(&shape);
        let z = z.reshape(&zs);
        let got = Prior::<f64>::log_prob(&prior, &z);
        let phys = Phi4::new(Lattice::new(&shape), m2, 0.0);
        for (b, zb) in z.data().chunks(v).enumerate() {
            let want = dense_log_density(&p, zb);
            println!("{shape:?} m2 {m2}: log r {:.12} vs dense {want:.12}", got.data()[b]);
            assert!((got.data()[b] - want).abs() < DENSE_TOL * want.abs().max(1.0), "{shape:?} sample {b}");
            // the convention: log r = -S(M2 = m_p^2, lam = 0) + log r(0)
            let c = got.data()[b] + phys.action(zb);
            assert!((c - prior.log_normalization()).abs() < DENSE_TOL * c.abs().max(1.0), "{shape:?}: {c}");
        }
    }
}

#[test]
fn real_fourier_basis_is_orthonormal_and_diagonalizes_the_laplacian() {
    for l in 1..=8 {
        let (b, lambda) = real_fourier_basis(l);
        for k in 0..l {
            for q in 0..l {
                let dot: f64 = (0..l).map(|x| b[k * l + x] * b[q * l + x]).sum();
                assert!((dot - if k == q { 1.0 } else { 0.0 }).abs() < ROUNDTRIP_TOL, "L {l}: <{k}|{q}> = {dot}");
            }
            // -Laplacian e_k = lambda_k e_k on the periodic chain (L = 1, 2: the neighbours coincide)
            for x in 0..l {
                let e = |y: usize| b[k * l + y];
                let lap = 2.0 * e(x) - e((x + 1) % l) - e((x + l - 1) % l);
                assert!((lap - lambda[k] * e(x)).abs() < ROUNDTRIP_TOL, "L {l} mode {k} site {x}");
            }
        }
    }
}

#[test]
fn coloring_round_trips_with_the_finite_difference_log_det_and_the_exact_covariance() {
    let (shape, m2) = ([4, 4], 0.5);
    let prior = FreePrior::new(&shape, m2);
    let v = 16;
    let eta: Tensor<f64> = Tensor::randn(&[v], &mut StdRng::seed_from_u64(3));
    let (mut z, mut back) = (vec![0.0; v], vec![0.0; v]);
    prior.color(eta.data(), &mut z);
    prior.whiten(&z, &mut back);
    let d = back.iter().zip(eta.data()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(d < ROUNDTRIP_TOL, "whiten(color(eta)) - eta = {d:e}");
    // the columns of the (linear) coloring map M, by central differences
    let mut jac = vec![vec![0.0; v]; v];
    let mut m = vec![vec![0.0; v]; v];
    for j in 0..v {
        let (mut ep, mut em) = (eta.data().to_vec(), eta.data().to_vec());
        ep[j] += FD_STEP;
        em[j] -= FD_STEP;
        let (mut zp, mut zm) = (vec![0.0; v], vec![0.0; v]);
        prior.color(&ep, &mut zp);
        prior.color(&em, &mut zm);
        let mut unit = vec![0.0; v];
        unit[j] = 1.0;
        let mut col = vec![0.0; v];
        prior.color(&unit, &mut col);
        for i in 0..v {
            jac[i][j] = (zp[i] - zm[i]) / (2.0 * FD_STEP);
            m[i][j] = col[i];
        }
    }
    // log r(z) = log N(eta; 0, 1) - log|det M|
    let log_det = log_abs_det(jac);
    let log_n: f64 =
        eta.data().iter().map(|e| -0.5 * e * e).sum::<f64>() - 0.5 * v as f64 * (2.0 * std::f64::consts::PI).ln();
    let zt = Tensor::from_vec(&[1, 4, 4], z.clone());
    let log_r = Prior::<f64>::log_prob(&prior, &zt).data()[0];
    println!("log r {log_r:.12}, log N(eta) - log|det M| (FD) {:.12}", log_n - log_det);
    assert!((log_r - (log_n - log_det)).abs() < FD_LOGDET_TOL, "{log_r} vs {}", log_n - log_det);
    // M M^T = Sigma exactly: P M M^T = I
    let p = precision(&shape, m2);
    for i in 0..v {
        for j in 0..v {
            let pmm: f64 = (0..v).map(|k| p[i][k] * (0..v).map(|q| m[k][q] * m[j][q]).sum::<f64>()).sum();
            assert!((pmm - if i == j { 1.0 } else { 0.0 }).abs() < DENSE_TOL, "(P M M^T)[{i}][{j}] = {pmm}");
        }
    }
}

#[test]
fn samples_have_the_free_fields_action_distribution() {
    // S_0(z) = z^T P z / 2 with z ~ N(0, P^{-1}) is chi^2_V / 2: mean V/2, variance V/2;
    // and the magnetization M = sum z / V is N(0, 1 / (2 m2 V)) (chi_2 = 1 / (2 m2)).
    let (shape, m2, n) = ([8, 8], 0.3, 20000);
    let prior = FreePrior::new(&shape, m2);
    let z: Tensor<f64> = prior.sample(n, &mut StdRng::seed_from_u64(5));
    let v = 64.0;
    let s: Vec<f64> = z.data().chunks(64).map(|c| prior.free_action(c)).collect();
    let mean_s = s.iter().sum::<f64>() / n as f64;
    let err_s = (v / 2.0 / n as f64).sqrt();
    let chi2: f64 = z.data().chunks(64).map(|c| c.iter().sum::<f64>().powi(2) / v).sum::<f64>() / n as f64;
    // chi_2 = V <M^2> is (1/(2 m2)) chi^2_1 on average: relative error sqrt(2/n)
    let (chi2_exact, err_chi2) = (1.0 / (2.0 * m2), (2.0 / n as f64).sqrt() / (2.0 * m2));
    println!(
        "<S_0> {mean_s:.3} +- {err_s:.3} (exact {}), chi_2 {chi2:.4} +- {err_chi2:.4} (exact {chi2_exact:.4})",
        v / 2.0
    );
    assert!((mean_s - v / 2.0).abs() < N_SIGMA * err_s, "<S_0> = {mean_s}");
    assert!((chi2 - chi2_exact).abs() < N_SIGMA * err_chi2, "chi_2 = {chi2}");
}

#[test]
fn tape_forms_match_the_tensor_forms_and_differentiate_to_minus_p_z() {
    let (shape, m2) = ([4, 4], 0.5);
    let free = FreePrior::new(&shape, m2);
    let normal = NormalPrior::new(&shape);
    let z: Tensor<f64> = Tensor::randn(&[3, 4, 4], &mut StdRng::seed_from_u64(8));
    let p = precision(&shape, m2);
    for (name, prior) in [("free", &free as &dyn Prior<f64>), ("normal", &normal)] {
        let zv = Var::param(z.clone());
        let lv = prior.log_prob_var(&zv).expect("both priors have a tape form");
        let lt = prior.log_prob(&z);
        for (a, b) in lv.value().data().iter().zip(lt.data()) {
            assert!((a - b).abs() < DENSE_TOL * b.abs().max(1.0), "{name}: tape {a} vs tensor {b}");
        }
        let g = lv.sum().backward().get_or_zeros(&zv);
        for (b, (gz, zb)) in g.data().chunks(16).zip(z.data().chunks(16)).enumerate() {
            for i in 0..16 {
                let want = if name == "free" { -(0..16).map(|j| p[i][j] * zb[j]).sum::<f64>() } else { -zb[i] };
                assert!((gz[i] - want).abs() < DENSE_TOL, "{name} sample {b} site {i}: {} vs {want}", gz[i]);
            }
        }
    }
}

#[test]
fn the_free_theory_sampled_by_the_prior_alone_has_ess_one() {
    // a flow without layers is its prior: at M2 = m_p^2, lam = 0, log p - log q is constant
    let (shape, m2) = ([8, 8], 0.7);
    let flow: Flow<f64> = Flow::new(Box::new(FreePrior::new(&shape, m2)), Vec::new());
    let phys = Phi4::new(Lattice::new(&shape), m2, 0.0);
    let action = |x: &[f64]| phys.action(x);
    let e = IndependenceSampler::new(&flow, &action, 256).sample(2048, &mut StdRng::seed_from_u64(9));
    let lq = e.logq.as_ref().unwrap();
    let lw: Vec<f64> = e.action.iter().zip(lq).map(|(s, q)| -s - q).collect();
    let (lo, hi) = lw.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &w| (a.min(w), b.max(w)));
    println!("log p - log q in [{lo:.12}, {hi:.12}], ESS {}, acceptance {}", ess(&lw), e.acceptance());
    assert!(hi - lo < DENSE_TOL * lo.abs().max(1.0), "log w spread {}", hi - lo);
    assert!((ess(&lw) - 1.0).abs() < 1e-12);
    assert_eq!(e.acceptance(), 1.0);
}

#[test]
fn bad_masses_are_errors() {
    for m2 in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let e = FreePrior::try_new(&[4, 4], m2).unwrap_err();
        assert!(e.contains("positive mass"), "{e}");
    }
    assert!(FreePrior::try_new(&[4, 0], 1.0).is_err());
}
