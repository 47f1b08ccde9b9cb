//! The phi^4 theory's setup: the pilot run and the free-field prior's mass.
use latflow_physics::{Lattice, Phi4};
use latflow_theory::phi4::{pilot, Phi4Theory};
use latflow_theory::{Params, Setup, Theory};

fn setup(flags: &[(&str, &str)]) -> Box<dyn Setup> {
    let given = flags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Phi4Theory.setup(&Params::from_flags(&Phi4Theory.params(), &given)).unwrap()
}

/// The pilot's rule recovers the mass of the free field: `1/(2 G(p_1)) - p_1^2 = M2`.
/// G(p_1) of one configuration is exponential per axis (relative sd 1/sqrt(2) for the
/// mean of two axes); 10000 trajectories with tau_int <= 2 give 1% on G(p_1), 0.016 on
/// the mass at M2 = 1: the test allows 5 sigma.
#[test]
fn pilot_recovers_the_free_mass() {
    for m2 in [0.5, 1.0] {
        let action = Phi4::new(Lattice::hypercubic(8, 2), m2, 0.0);
        let p = pilot(&action);
        let p1 = 4.0 * (std::f64::consts::PI / 8.0).sin().powi(2);
        let got = 1.0 / (2.0 * p.g_p1) - p1;
        assert!((got - m2).abs() < 5.0 * 0.01 * (m2 + p1), "M2 {m2}: pilot gives {got}");
    }
}

/// `--prior free` (the default): no flow before the mass is chosen; the choice is
/// deterministic, stored as `free:M2` with three significant digits; exact for the free
/// theory; near 1/(2 chi_2) at the tutorial's couplings, where the propagator is nearly
/// free (latflow's HMC: chi_2 = 0.7444, 1/(2 chi_2) = 0.672); in the broken phase the
/// mass of the fluctuations about a vacuum (tree level V''/2 = -2 M2 = 8), not chi_2's
/// 0.004 (a prior as wide as both vacua, which trains to acceptance 0.08).
#[test]
fn free_prior_mass_is_chosen_from_the_couplings() {
    let mut s = setup(&[]);
    assert_eq!(s.params()["prior"], "free");
    let e = s.flow_f32(&mut rand::rngs::mock::StepRng::new(0, 1)).unwrap_err();
    assert!(e.contains("prior = free names no mass"), "{e}");
    let said = s.choose_auto().unwrap().unwrap();
    let stored = s.params()["prior"].clone();
    let mp: f64 = stored.strip_prefix("free:").unwrap().parse().unwrap();
    assert!(said.contains(&format!("M2 = {mp}")), "{said}");
    assert_eq!(format!("{mp:.2e}").parse::<f64>().unwrap(), mp, "three significant digits");
    assert!((mp - 0.672).abs() < 0.05 * 0.672, "tutorial couplings: {mp}");
    assert!(s.flow_f32(&mut rand::rngs::mock::StepRng::new(0, 1)).is_ok());
    assert_eq!(s.choose_auto().unwrap(), None, "chosen once");
    let mut again = setup(&[]);
    again.choose_auto().unwrap();
    assert_eq!(again.params()["prior"], stored, "the pilot is seeded: same couplings, same mass");

    let mut free = setup(&[("m2", "0.37"), ("lam", "0")]);
    free.choose_auto().unwrap();
    assert_eq!(free.params()["prior"], "free:0.37");

    let mut broken = setup(&[("lam", "1")]);
    broken.choose_auto().unwrap();
    let mb: f64 = broken.params()["prior"].strip_prefix("free:").unwrap().parse().unwrap();
    assert!((4.0..12.0).contains(&mb), "broken phase: {mb}");

    // given masses and the normal prior are kept as they are
    for p in ["free:0.5", "normal"] {
        let mut s = setup(&[("prior", p)]);
        assert_eq!(s.choose_auto().unwrap(), None);
        assert_eq!(s.params()["prior"], p);
    }
}
