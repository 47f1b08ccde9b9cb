//! `latflow fhmc`: flow-HMC with a tiny U(1) checkpoint trained at 8x8, at its own size
//! and at 16x16; the report (acceptance, <exp(-dH)>, tunnelling rate, observables against
//! the exact <Q^2>), `observables.csv`, `--save` read back by `measure`, and user errors.

use crate::common;

use common::{ok, s, temp_dir, user_error};
use latflow::io::ensemble::Ensemble;
use std::path::Path;

/// How far <Q^2> and <exp(-dH)> may be from their exact values, in Gamma-method sigma.
const SIGMAS: f64 = 4.0;

/// The `(+x.xx sigma)` pull printed on the line starting with `label`.
fn pull(out: &str, label: &str) -> f64 {
    let line = out.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("{label} in\n{out}"));
    let p = line.rsplit_once('(').and_then(|(_, r)| r.strip_suffix(" sigma)")).unwrap_or_else(|| panic!("{line}"));
    p.trim().parse().unwrap()
}

/// `value +- error` on the line starting with `label`.
fn value_error(out: &str, label: &str) -> (f64, f64) {
    let line = out.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("{label} in\n{out}"));
    let rest = line.trim_start()[label.len()..].trim_start();
    let mut w = rest.split_whitespace();
    let v: f64 = w.next().unwrap().parse().unwrap();
    assert_eq!(w.next(), Some("+-"), "{line}");
    (v, w.next().unwrap().parse().unwrap())
}

/// A 5-step phi^4 checkpoint in `dir` (a checkpoint of another theory, for user errors).
fn tiny_phi4(dir: &Path) -> std::path::PathBuf {
    ok(&[
        "train",
        "phi4",
        "--layers",
        "2",
        "--hidden",
        "4",
        "--steps",
        "5",
        "--n",
        "64",
        "--therm",
        "8",
        "--quiet",
        "--out",
        s(dir),
    ]);
    dir.join("model.safetensors")
}

fn tiny_u1(dir: &Path) -> std::path::PathBuf {
    let mut a = vec!["train", "u1", "--layers", "2", "--hidden", "4", "--steps", "30", "--era", "30"];
    a.extend(["--n", "256", "--therm", "32", "--quiet", "--out", s(dir)]);
    ok(&a);
    dir.join("model.safetensors")
}

#[test]
fn fhmc_reports_saves_and_runs_at_another_size() {
    let dir = temp_dir("fhmc", "u1");
    let ck = tiny_u1(&dir.join("train"));
    let out = dir.join("run8");
    // 30 leapfrog steps: this flow's force is stiff (acceptance ~0.2 at 10 steps, where the
    // heavy tail of exp(-dH) makes its mean converge slowly)
    let flags = ["--n-traj", "300", "--n-therm", "30", "--chains", "8", "--steps", "30", "--quiet"];
    let mut a = vec!["fhmc", "--checkpoint", s(&ck), "--out", s(&out), "--save"];
    a.extend(flags);
    let printed = ok(&a);
    for needle in ["latflow fhmc u1: L=8 beta=2", "acceptance", "<exp(-dH)>", "tunnelling rate", "<Q^2> (exact, 2D)"] {
        assert!(printed.contains(needle), "{needle:?} in\n{printed}");
    }
    let (e, de) = value_error(&printed, "<exp(-dH)>");
    assert!((e - 1.0).abs() < SIGMAS * de, "<exp(-dH)> = {e} +- {de}");
    let p = pull(&printed, "<Q^2> (exact, 2D)");
    assert!(p.abs() < SIGMAS, "<Q^2> is {p} sigma from the exact value:\n{printed}");
    // the charge histories of flow-HMC, plain HMC and flow independence Metropolis, one figure
    assert!(printed.contains("tunnelling rate, figure      flow-HMC"), "{printed}");
    let svg = std::fs::read_to_string(out.join("topology.svg")).unwrap();
    for title in ["HMC (tau 1, 30 leapfrog steps)", "flow-HMC (tau 1, 30 leapfrog steps)", "independence Metropolis"] {
        assert!(svg.contains(title), "{title:?} missing from topology.svg");
    }
    let csv = std::fs::read_to_string(out.join("observables.csv")).unwrap();
    assert_eq!(csv.lines().next().unwrap(), "chain,traj,accepted,dH,q2,plaq,Q,S");
    assert_eq!(csv.lines().count(), 1 + 8 * 300);
    // the saved chains measure to the same numbers
    let e = Ensemble::open(&out.join("ensemble")).unwrap();
    assert_eq!(e.metadata["sampler"], "flow-hmc");
    assert_eq!(e.metadata["checkpoint"], s(&ck));
    let measured = ok(&["measure", s(&out.join("ensemble"))]);
    // measure's first line is fhmc's (it said "latflow hmc u1: ...")
    assert_eq!(measured.lines().next(), printed.lines().next(), "{measured}");
    let tail = |t: &str| t.lines().skip_while(|l| !l.contains("acceptance")).take(6).collect::<Vec<_>>().join("\n");
    assert_eq!(tail(&measured), tail(&printed));

    // at 16x16 with the flow trained at 8x8: the 16x16 exact value
    let mut a = vec!["fhmc", "--checkpoint", s(&ck), "--L", "16", "--no-csv", "--seed", "3"];
    a.extend(["--n-traj", "150", "--n-therm", "30", "--chains", "8", "--steps", "40", "--quiet"]);
    let printed = ok(&a);
    assert!(printed.contains("L=16 beta=2") && printed.contains("flow trained at L=8"), "{printed}");
    let p = pull(&printed, "<Q^2> (exact, 2D)");
    assert!(p.abs() < SIGMAS, "<Q^2> at 16x16 is {p} sigma from the exact value:\n{printed}");

    // user errors
    let o = dir.join("never");
    user_error(&["fhmc"], "--checkpoint FILE is required");
    user_error(&["fhmc", "--checkpoint", s(&ck), "--L", "6", "--out", s(&o)], "not a multiple of 4");
    user_error(&["fhmc", "--checkpoint", s(&ck), "--flip", "--out", s(&o)], "unknown flag --flip");
    user_error(&["fhmc", "--checkpoint", s(&ck), "--tau", "-1", "--out", s(&o)], "--tau must be in");
    user_error(&["fhmc", "--checkpoint", s(&dir.join("missing.safetensors"))], "missing.safetensors");
    assert!(!o.exists(), "a refused run writes nothing");
    std::fs::remove_dir_all(&dir).ok();
}

/// Trajectories whose dH is NaN are rejected, but `<exp(-dH)>` is then NaN: a run that
/// printed `<exp(-dH)> NaN +- NaN` (a flow whose force is not finite, or plain HMC blown
/// up) exited 0. It is an error after the report and the CSV are written.
#[test]
fn nan_exp_minus_dh_is_an_error_not_exit_0() {
    use latflow::io::safetensors::{SafeTensors, TensorData};
    let dir = temp_dir("fhmc", "nan-dh");
    let train = dir.join("train");
    let mut a = vec!["train", "phi4", "--L", "4", "--layers", "2", "--hidden", "4", "--steps", "10", "--prior"];
    a.extend(["normal", "--n", "512", "--therm", "32", "--quiet", "--out", s(&train)]);
    ok(&a);
    // every weight 3e30: the tanh-bounded flow maps finitely, its force is NaN
    let mut st = SafeTensors::read(&train.join("model.safetensors")).unwrap();
    for (k, t) in st.tensors.iter_mut().filter(|(k, _)| k.contains("weight")) {
        let n = t.numel();
        assert!(!k.contains("mask"));
        *t = TensorData::from_f32(&t.shape.clone(), &vec![3e30; n]);
    }
    let huge = dir.join("huge.safetensors");
    st.write(&huge).unwrap();
    let out = dir.join("fhmc");
    let flags = ["--n-traj", "10", "--n-therm", "1", "--chains", "2", "--quiet"];
    let mut a = vec!["fhmc", "--checkpoint", s(&huge), "--out", s(&out)];
    a.extend(flags);
    user_error(&a, "non-finite results for <exp(-dH)>");
    assert!(out.join("observables.csv").exists(), "the chains' records are kept");
    // plain HMC whose trajectories blow up to NaN
    let a = ["hmc", "phi4", "--L", "4", "--tau", "100", "--steps", "5", "--no-csv"];
    let mut a = a.to_vec();
    a.extend(flags);
    user_error(&a, "non-finite results for <exp(-dH)>");
    std::fs::remove_dir_all(&dir).ok();
}

/// A short run whose dH series is anticorrelated: the Gamma method's summed
/// autocorrelation comes out <= 0 and was printed as `<exp(-dH)> 0.987198 +- 0  tau_int
/// 0.00`, an error of zero from values that vary. Such an error is said to be undetermined.
#[test]
fn a_clipped_zero_error_is_not_printed_as_exact() {
    let out =
        ok(&["hmc", "phi4", "--L", "4", "--n-traj", "10", "--n-therm", "2", "--chains", "2", "--no-csv", "--quiet"]);
    let zero: Vec<&str> = out.lines().filter(|l| l.contains(" +- 0 ")).collect();
    assert!(!zero.is_empty(), "this run no longer gives a clipped error; pick another:\n{out}");
    for l in zero {
        assert!(l.contains("error undetermined") || l.contains("tau_int 0.50"), "{l}");
    }
}

/// A smooth flow (`--activation tanh`, stored in the checkpoint) targeting other couplings
/// than its training's (`fhmc --beta 3` with a flow trained at beta 2: a partial
/// trivializing map, still exact), with the force in f32 (default) or f64, from HMC
/// (default) or prior starts; user errors.
#[test]
fn fhmc_runs_smooth_flows_at_other_couplings_in_either_precision() {
    use latflow::io::safetensors::SafeTensors;
    let dir = temp_dir("fhmc", "couplings");
    let train = dir.join("train");
    let mut a = vec!["train", "u1", "--layers", "2", "--hidden", "4", "--steps", "30", "--era", "30"];
    a.extend(["--activation", "tanh", "--n", "256", "--therm", "32", "--quiet", "--out", s(&train)]);
    ok(&a);
    let ck = train.join("model.safetensors");
    let st = SafeTensors::read(&ck).unwrap();
    assert_eq!(st.metadata.get("activation").map(String::as_str), Some("tanh"));

    let flags = ["--n-traj", "300", "--n-therm", "30", "--chains", "8", "--steps", "20", "--quiet", "--no-csv"];
    for (precision, start) in [("f32", "hmc"), ("f64", "prior")] {
        let mut a = vec!["fhmc", "--checkpoint", s(&ck), "--beta", "3", "--precision", precision, "--start", start];
        a.extend(flags);
        let printed = ok(&a);
        assert!(printed.contains("latflow fhmc u1: L=8 beta=3"), "{printed}");
        assert!(printed.contains(&format!("force in {precision}, H in f64")), "{printed}");
        let said = if start == "hmc" { "200 plain HMC trajectories per chain" } else { "prior samples" };
        assert!(printed.lines().any(|l| l.trim_start().starts_with("start") && l.contains(said)), "{printed}");
        let (e, de) = value_error(&printed, "<exp(-dH)>");
        assert!((e - 1.0).abs() < SIGMAS * de, "{precision}: <exp(-dH)> = {e} +- {de}");
        let p = pull(&printed, "<Q^2> (exact, 2D)");
        assert!(p.abs() < SIGMAS, "{precision}: <Q^2> at beta 3 is {p} sigma from the exact value:\n{printed}");
    }

    let o = dir.join("never");
    user_error(
        &["fhmc", "--checkpoint", s(&ck), "--precision", "f16", "--out", s(&o)],
        "--precision must be f32 or f64",
    );
    user_error(&["fhmc", "--checkpoint", s(&ck), "--start", "cold", "--out", s(&o)], "--start must be hmc or prior");
    user_error(
        &["fhmc", "--checkpoint", s(&ck), "--m2", "1", "--out", s(&o)],
        "--m2 is not a coupling of the u1 theory",
    );
    user_error(&["fhmc", "--checkpoint", s(&ck), "--layers", "4", "--out", s(&o)], "unknown flag --layers");
    user_error(
        &["train", "u1", "--activation", "relu", "--out", s(&o)],
        "--activation must be leaky or tanh, got 'relu'",
    );
    user_error(
        &["train", "phi4", "--coupling", "z2sym", "--activation", "tanh", "--out", s(&o)],
        "activation tanh is built for the affine coupling",
    );
    assert!(!o.exists(), "a refused run writes nothing");
    std::fs::remove_dir_all(&dir).ok();
}

/// An ultralocal flow (kernel-1 nets) runs without the tape with the Wilson action's force
/// on the same f32 lanes, and `--identity` is plain HMC through the same machinery: both
/// exact (<exp(-dH)> = 1, the exact <Q^2> at beta 3 on 8x8); user errors of `--identity`.
#[test]
fn fhmc_ultralocal_and_identity_take_the_action_force_on_the_lanes() {
    let dir = temp_dir("fhmc", "lanes");
    let train = dir.join("train");
    let mut a = vec!["train", "u1", "--layers", "4", "--hidden", "1", "--kernel", "1", "--activation", "tanh"];
    a.extend(["--steps", "30", "--era", "30", "--n", "256", "--therm", "32", "--quiet", "--out", s(&train)]);
    ok(&a);
    let ck = train.join("model.safetensors");
    let flags =
        ["--beta", "3", "--n-traj", "400", "--n-therm", "30", "--chains", "16", "--steps", "10", "--quiet", "--no-csv"];
    for (extra, said) in [
        (None, "ultralocal flow: no tape, action force on the f32 lanes"),
        (Some("--identity"), "identity map (plain HMC), action force on the f32 lanes"),
    ] {
        let mut a = vec!["fhmc", "--checkpoint", s(&ck)];
        a.extend(extra);
        a.extend(flags);
        let printed = ok(&a);
        assert!(printed.contains(said), "{said}:\n{printed}");
        let (e, de) = value_error(&printed, "<exp(-dH)>");
        assert!((e - 1.0).abs() < SIGMAS * de, "{said}: <exp(-dH)> = {e} +- {de}");
        let p = pull(&printed, "<Q^2> (exact, 2D)");
        assert!(p.abs() < SIGMAS, "{said}: <Q^2> is {p} sigma from the exact value:\n{printed}");
    }
    let o = dir.join("never");
    user_error(
        &["fhmc", "--checkpoint", s(&ck), "--identity", "--tape", "--out", s(&o)],
        "--identity and --tape contradict each other",
    );
    let phi4 = tiny_phi4(&dir.join("phi4"));
    user_error(
        &["fhmc", "--checkpoint", s(&phi4), "--identity", "--out", s(&o)],
        "--identity needs a 2D U(1) checkpoint",
    );
    assert!(!o.exists(), "a refused run writes nothing");
    std::fs::remove_dir_all(&dir).ok();
}

/// `fhmc --plaquette-map` without a checkpoint: 2D U(1) at the flags' lattice and beta,
/// exact (<exp(-dH)> = 1, the exact <Q^2> at beta 3 on 8x8), the topology figure without an
/// independence Metropolis panel; its user errors.
#[test]
fn fhmc_plaquette_map_needs_no_checkpoint() {
    let dir = temp_dir("fhmc", "plaquette");
    let out = dir.join("run");
    let mut a = vec!["fhmc", "--plaquette-map", "2", "--map-beta", "2", "--L", "8", "--beta", "3", "--steps", "10"];
    a.extend(["--n-traj", "400", "--n-therm", "30", "--chains", "16", "--quiet", "--out", s(&out)]);
    let printed = ok(&a);
    assert!(printed.contains("latflow fhmc u1: L=8 beta=3 (flow-HMC with the plaquette map)"), "{printed}");
    assert!(printed.contains("plaquette map, 2 components fitted at beta 2, force on the f32 lanes"), "{printed}");
    let (e, de) = value_error(&printed, "<exp(-dH)>");
    assert!((e - 1.0).abs() < SIGMAS * de, "<exp(-dH)> = {e} +- {de}");
    let p = pull(&printed, "<Q^2> (exact, 2D)");
    assert!(p.abs() < SIGMAS, "<Q^2> is {p} sigma from the exact value:\n{printed}");
    assert!(!printed.contains("independence Metropolis"), "no flow to propose from:\n{printed}");
    assert!(out.join("topology.svg").exists());
    // a lattice of any size >= 2 (not only the link flows' multiples of 4); on 2x2 the chains
    // may never leave Q = 0, and an error of rounding size quotes no deviation
    for l in ["6", "2"] {
        let short =
            ["--L", l, "--beta", "3", "--n-traj", "100", "--n-therm", "5", "--chains", "8", "--quiet", "--no-csv"];
        let printed = ok(&[&["fhmc", "--plaquette-map", "2"][..], &short].concat());
        let line = printed.lines().find(|l| l.contains("<Q^2> (exact, 2D)")).expect("the exact <Q^2>");
        assert!(
            line.contains("no deviation quoted") || pull(&printed, "<Q^2> (exact, 2D)").abs() < SIGMAS,
            "L = {l}: {line}"
        );
    }
    // the fit's beta defaults to half the target's
    let short = ["--L", "4", "--beta", "3", "--n-traj", "5", "--n-therm", "1", "--chains", "8", "--quiet", "--no-csv"];
    let printed = ok(&[&["fhmc", "--plaquette-map", "1"][..], &short].concat());
    assert!(printed.contains("plaquette map, 1 component fitted at beta 1.5"), "{printed}");
    let o = dir.join("never");
    user_error(&["fhmc", "--plaquette-map", "0", "--out", s(&o)], "--plaquette-map takes 1 to 8 components, got 0");
    user_error(&["fhmc", "--plaquette-map", "2", "--map-beta", "nan", "--out", s(&o)], "--map-beta must be in [0, 20]");
    user_error(&["fhmc", "--plaquette-map", "2", "--identity", "--out", s(&o)], "it contradicts --identity and --tape");
    user_error(&["fhmc", "--out", s(&o)], "--checkpoint FILE is required (or --plaquette-map M, 2D U(1) only)");
    let phi4 = tiny_phi4(&dir.join("phi4"));
    user_error(
        &["fhmc", "--checkpoint", s(&phi4), "--plaquette-map", "2", "--out", s(&o)],
        "--plaquette-map is for 2D U(1)",
    );
    assert!(!o.exists(), "a refused run writes nothing");
    std::fs::remove_dir_all(&dir).ok();
}
