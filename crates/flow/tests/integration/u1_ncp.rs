//! The NCP mixture: monotone on [0, 2 pi), its numerical inverse meets its tolerance,
//! its log-derivative is right, and the tape's plaquette coupling computes the same
//! values as the scalar functions (the tutorial's numerics, atan branch then mod 2 pi).

use latflow_flow::u1::ncp::{mixture, mixture_inverse, mixture_log_jacobian, NCP_INVERSE_MAX_ITERS};
use latflow_flow::u1::NcpPlaqCoupling;
use latflow_tensor::{Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::f64::consts::PI;

/// `|g(g^{-1}(z)) - z|` (wrapped) after [`mixture_inverse`]: the f64 rounding floor of
/// evaluating `g`, a few ulps of 2 pi.
const INVERSE_RESIDUAL_TOL: f64 = 1e-13;
/// `|g^{-1}(g(x)) - x|` (wrapped): the residual divided by `g' >= e^{-max |s|}` (e^-4 here).
const INVERSE_X_TOL: f64 = 1e-11;
/// Central-difference check of `log g'` (step 1e-5, truncation ~1e-10 relative).
const LOG_JACOBIAN_FD_TOL: f64 = 1e-7;
/// The tape (tan / atan / mod in f64) against the scalar functions.
const TAPE_TOL: f64 = 1e-12;

fn wrap(x: f64) -> f64 {
    (x + PI).rem_euclid(2.0 * PI) - PI
}

fn random_scales(rng: &mut StdRng) -> Vec<f64> {
    let n = rng.gen_range(1..=4);
    (0..n).map(|_| rng.gen_range(-4.0..4.0)).collect()
}

#[test]
fn mixture_is_strictly_increasing_on_the_circle() {
    let mut rng = StdRng::seed_from_u64(1);
    let m = 20_000;
    for _ in 0..50 {
        let s = random_scales(&mut rng);
        assert_eq!(mixture(0.0, &s), 0.0);
        assert!((mixture(PI, &s) - PI).abs() < 1e-12, "g(pi) = {}", mixture(PI, &s));
        let mut prev = mixture(0.0, &s);
        for k in 1..m {
            let x = 2.0 * PI * k as f64 / m as f64;
            let g = mixture(x, &s);
            assert!(g > prev, "s = {s:?}: g({x}) = {g} <= {prev}");
            assert!((0.0..2.0 * PI).contains(&g));
            prev = g;
        }
    }
}

#[test]
fn log_jacobian_is_the_log_derivative() {
    let mut rng = StdRng::seed_from_u64(2);
    let h = 1e-5;
    for _ in 0..200 {
        let s = random_scales(&mut rng);
        let x: f64 = rng.gen_range(0.01..2.0 * PI - 0.01);
        let fd = wrap(mixture(x + h, &s) - mixture(x - h, &s)) / (2.0 * h);
        let lj = mixture_log_jacobian(x, &s);
        assert!((fd.ln() - lj).abs() < LOG_JACOBIAN_FD_TOL, "s = {s:?}, x = {x}: fd {} vs {lj}", fd.ln());
    }
}

#[test]
fn inverse_meets_its_tolerance_in_few_iterations() {
    let mut rng = StdRng::seed_from_u64(3);
    let (mut max_res, mut max_dx, mut max_it, mut total_it) = (0.0f64, 0.0f64, 0, 0u64);
    let n = 20_000;
    for k in 0..n {
        let s = random_scales(&mut rng);
        // include the fixed points and the neighbourhood of x = pi, where tan(x/2) has its pole
        let x: f64 = match k % 10 {
            0 => 0.0,
            1 => PI,
            2 => PI + rng.gen_range(-1e-9..1e-9),
            3 => 2.0 * PI - rng.gen_range(1e-12..1e-6),
            _ => rng.gen_range(0.0..2.0 * PI),
        };
        let z = mixture(x, &s);
        let r = mixture_inverse(z, &s);
        assert!((0.0..2.0 * PI).contains(&r.x), "root {} out of range", r.x);
        max_res = max_res.max(wrap(mixture(r.x, &s) - z).abs());
        max_dx = max_dx.max(wrap(r.x - x).abs());
        max_it = max_it.max(r.iterations);
        total_it += r.iterations as u64;
    }
    let mean_it = total_it as f64 / n as f64;
    println!("inverse: max residual {max_res:.2e}, max |dx| {max_dx:.2e}, iterations mean {mean_it:.2} max {max_it}");
    assert!(max_res < INVERSE_RESIDUAL_TOL, "residual {max_res:e}");
    assert!(max_dx < INVERSE_X_TOL, "|dx| {max_dx:e}");
    assert!(max_it < NCP_INVERSE_MAX_ITERS);
    assert!(mean_it < 8.0, "mean iterations {mean_it}");
}

#[test]
fn single_component_inverse_is_the_negated_scale() {
    // h_s^{-1} = h_{-s}
    let mut rng = StdRng::seed_from_u64(4);
    for _ in 0..100 {
        let s: f64 = rng.gen_range(-3.0..3.0);
        let z: f64 = rng.gen_range(0.0..2.0 * PI);
        let r = mixture_inverse(z, &[s]);
        assert!(wrap(r.x - mixture(z, &[-s])).abs() < INVERSE_X_TOL);
    }
}

#[test]
fn tape_forward_matches_scalar_mixture_including_the_pole_at_pi() {
    let (l, n_mix) = (8, 3);
    let mut rng = StdRng::seed_from_u64(5);
    let c = NcpPlaqCoupling::<f64>::new(l, l, 1, 2, n_mix, &[8, 8], 3, &mut rng);
    let params: Vec<Var<f64>> = c.net.params().into_iter().map(|t| Var::constant(t.clone())).collect();
    // raw plaquettes range over (-4 pi, 4 pi); put some exactly on the pole x = pi (mod 2 pi)
    let mut x = Tensor::<f64>::uniform(&[2, l, l], -4.0 * PI, 4.0 * PI, &mut rng);
    for (k, v) in x.data_mut().iter_mut().enumerate().step_by(7) {
        *v = [PI, -PI, 3.0 * PI][k % 3];
    }
    let xv = Var::constant(x.clone());
    let (y, logj) = c.forward(&xv, &params);
    assert!(y.value().all_finite() && logj.value().all_finite());
    // s and t from the net, recomputed here as the tutorial does
    let (frozen, active, _) = c.masks();
    let xf = xv.mul_const(&std::rc::Rc::new(frozen.clone()));
    let out = c.net.forward(&Var::stack(&[xf.cos(), xf.sin()], 1), &params);
    let (o, hw) = (out.value().data(), l * l);
    for b in 0..2 {
        let mut lj = 0.0;
        for j in 0..hw {
            let k = b * hw + j;
            let xv = x.data()[k];
            let yv = y.value().data()[k];
            if active.data()[j] == 1.0 {
                let s: Vec<f64> = (0..n_mix).map(|i| o[(b * (n_mix + 1) + i) * hw + j]).collect();
                let t = o[(b * (n_mix + 1) + n_mix) * hw + j];
                let want = (mixture(xv, &s) + t).rem_euclid(2.0 * PI);
                assert!((yv - want).abs() < TAPE_TOL, "active ({b},{j}): {yv} vs {want}");
                assert!((0.0..2.0 * PI).contains(&yv));
                lj += mixture_log_jacobian(xv, &s);
            } else {
                assert_eq!(yv, xv, "frozen and passive plaquettes pass unchanged");
            }
        }
        let got = logj.value().data()[b];
        assert!((got - lj).abs() < TAPE_TOL * lj.abs().max(1.0), "logJ {got} vs {lj}");
    }
}

/// Active outputs of `forward` for plaquettes `x` (N, L, L): the values at the active sites.
fn active_outputs(c: &NcpPlaqCoupling<f64>, x: &Tensor<f64>) -> Vec<f64> {
    let params: Vec<Var<f64>> = c.net.params().into_iter().map(|t| Var::constant(t.clone())).collect();
    let (y, _) = c.forward(&Var::constant(x.clone()), &params);
    let active = c.masks().1.data().to_vec();
    let hw = active.len();
    y.value().data().iter().enumerate().filter(|(k, _)| active[k % hw] == 1.0).map(|(_, &v)| v).collect()
}

/// With kernel 1 a coupling's net sees, at an active site, only that site's frozen-masked
/// input, which is the same everywhere: every active plaquette goes through one NCP mixture
/// whatever its neighbours (the ultralocal flows of `scripts/freezing.sh`). A kernel-3 net
/// sees the frozen neighbours, and the same change moves its outputs.
#[test]
fn kernel_one_couplings_are_ultralocal() {
    let l = 8;
    for (kernel, ultralocal) in [(1, true), (3, false)] {
        let mut rng = StdRng::seed_from_u64(6);
        let c = NcpPlaqCoupling::<f64>::new(l, l, 0, 1, 2, &[1], kernel, &mut rng);
        let x = Tensor::<f64>::uniform(&[2, l, l], 0.0, 2.0 * PI, &mut rng);
        // the same active plaquettes, every other plaquette redrawn
        let active = c.masks().1.data().to_vec();
        let mut x2 = x.clone();
        for (k, v) in x2.data_mut().iter_mut().enumerate() {
            if active[k % (l * l)] == 0.0 {
                *v = rng.gen_range(0.0..2.0 * PI);
            }
        }
        let (a, b) = (active_outputs(&c, &x), active_outputs(&c, &x2));
        let moved = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
        if ultralocal {
            assert_eq!(a, b, "kernel 1: the active outputs depend on other plaquettes");
            // one map for every site: equal inputs at different active sites, equal outputs
            let mut x3 = x.clone();
            for (k, v) in x3.data_mut().iter_mut().enumerate() {
                if active[k % (l * l)] == 1.0 {
                    *v = 1.234;
                }
            }
            let out = active_outputs(&c, &x3);
            assert!(out.iter().all(|&v| v == out[0]), "kernel 1: different maps at different sites: {out:?}");
        } else {
            assert!(moved > 1e-6, "kernel {kernel}: the outputs should see the frozen neighbours (moved {moved})");
        }
    }
}
