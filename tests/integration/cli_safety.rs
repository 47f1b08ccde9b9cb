//! The command line as a hostile user meets it: runs never overwrite earlier work, an
//! interrupted run resumes exactly, sizes and couplings are checked before anything is
//! allocated or written, and every such mistake is an error (exit 2, a message, no panic)
//! rather than a crash or exit 0 with nonsense. Each case failed before 2026-11-30.

use latflow::io::safetensors::SafeTensors;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn latflow_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_latflow")).current_dir(cwd).args(args).output().expect("cannot run latflow")
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("latflow-cli-safety-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[track_caller]
fn ok(cwd: &Path, args: &[&str]) -> String {
    let o = latflow_in(cwd, args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "latflow {args:?} failed:\n{err}");
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[track_caller]
fn user_error(cwd: &Path, args: &[&str], needle: &str) {
    let o = latflow_in(cwd, args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "latflow {args:?} should exit 2:\n{err}");
    assert!(!err.contains("panicked"), "latflow {args:?} panicked:\n{err}");
    assert!(err.contains(needle), "latflow {args:?}: expected {needle:?} in:\n{err}");
}

const SMALL: [&str; 14] =
    ["--L", "4", "--layers", "2", "--hidden", "4", "--n", "128", "--therm", "16", "--era", "10", "--quiet", "--seed"];

fn train(cwd: &Path, steps: &str, extra: &[&str]) -> Output {
    let mut a = vec!["train", "phi4", "--steps", steps];
    a.extend_from_slice(&SMALL);
    a.push("3");
    a.extend_from_slice(extra);
    latflow_in(cwd, &a)
}

fn tensors(path: &Path) -> Vec<(String, Vec<u8>)> {
    let st = SafeTensors::read(path).unwrap();
    st.tensors.iter().map(|(k, t)| (k.clone(), t.bytes.clone())).collect()
}

fn history_steps(dir: &Path) -> Vec<usize> {
    let text = std::fs::read_to_string(dir.join("history.csv")).unwrap();
    text.lines().skip(1).map(|l| l.split(',').next().unwrap().parse().unwrap()).collect()
}

#[test]
fn runs_never_overwrite_earlier_work() {
    let cwd = temp_dir("overwrite");
    // the default run directory is never replaced: a second run takes runs/phi4-2
    assert!(train(&cwd, "10", &[]).status.success());
    let first = tensors(&cwd.join("runs/phi4/model.safetensors"));
    assert!(train(&cwd, "5", &[]).status.success());
    assert_eq!(tensors(&cwd.join("runs/phi4/model.safetensors")), first, "runs/phi4 was overwritten");
    assert_eq!(history_steps(&cwd.join("runs/phi4-2")), (1..=5).collect::<Vec<_>>());
    // an explicit --out that holds a run needs --force
    let mut a = vec!["train", "phi4", "--steps", "5", "--out", "runs/phi4"];
    a.extend_from_slice(&SMALL[..13]);
    user_error(&cwd, &a, "already holds a run (model.safetensors)");
    assert_eq!(tensors(&cwd.join("runs/phi4/model.safetensors")), first);
    a.push("--force");
    ok(&cwd, &a);
    assert_ne!(tensors(&cwd.join("runs/phi4/model.safetensors")), first, "--force overwrites");

    // sample writes next to the checkpoint, never over the run's summary
    let summary = std::fs::read(cwd.join("runs/phi4-2/summary.csv")).unwrap();
    ok(&cwd, &["sample", "--checkpoint", "runs/phi4-2/model.safetensors", "--n", "64", "--therm", "8"]);
    assert_eq!(std::fs::read(cwd.join("runs/phi4-2/summary.csv")).unwrap(), summary);
    assert!(cwd.join("runs/phi4-2/sample-seed1/summary.csv").exists());
    ok(&cwd, &["sample", "--checkpoint", "runs/phi4-2/model.safetensors", "--n", "64", "--therm", "8"]);
    assert!(cwd.join("runs/phi4-2/sample-seed1-2/summary.csv").exists());

    // apply never writes over its inputs
    let model = cwd.join("runs/phi4-2/model.safetensors");
    let before = std::fs::read(&model).unwrap();
    let mut z = SafeTensors::default();
    z.insert_f32("z", &[2, 4, 4], &[0.5; 32]);
    z.write(&cwd.join("z.safetensors")).unwrap();
    let m = model.to_str().unwrap();
    user_error(&cwd, &["apply", "--checkpoint", m, "--input", "z.safetensors", "--output", m], "is the checkpoint");
    user_error(
        &cwd,
        &["apply", "--checkpoint", m, "--input", "z.safetensors", "--output", "./z.safetensors"],
        "is the input",
    );
    assert_eq!(std::fs::read(&model).unwrap(), before);
    // an existing output needs --force, and a non-file is never replaced
    std::fs::write(cwd.join("taken.safetensors"), b"keep").unwrap();
    let ap = ["apply", "--checkpoint", m, "--input", "z.safetensors", "--output"];
    user_error(&cwd, &[&ap[..], &["taken.safetensors"]].concat(), "exists; choose another name");
    assert_eq!(std::fs::read(cwd.join("taken.safetensors")).unwrap(), b"keep");
    std::fs::create_dir_all(cwd.join("a-dir")).unwrap();
    user_error(&cwd, &[&ap[..], &["a-dir", "--force"]].concat(), "not a regular file");
    // huge but finite inputs give non-finite outputs: an error, nothing written
    let mut z = SafeTensors::default();
    z.insert_f32("z", &[1, 4, 4], &[3.4e38; 16]);
    z.write(&cwd.join("huge.safetensors")).unwrap();
    user_error(
        &cwd,
        &["apply", "--checkpoint", m, "--input", "huge.safetensors", "--output", "x.safetensors"],
        "non-finite",
    );
    assert!(!cwd.join("x.safetensors").exists());

    // hmc writes into a run directory, numbered like train's
    ok(&cwd, &["hmc", "phi4", "--L", "4", "--n-traj", "20", "--chains", "1", "--quiet"]);
    ok(&cwd, &["hmc", "phi4", "--L", "4", "--n-traj", "20", "--chains", "1", "--quiet"]);
    assert!(cwd.join("runs/hmc_phi4/observables.csv").exists() && cwd.join("runs/hmc_phi4-2/observables.csv").exists());
    std::fs::remove_dir_all(&cwd).ok();
}

#[test]
fn an_interrupted_run_resumes_exactly_in_its_own_directory() {
    let cwd = temp_dir("resume");
    // uninterrupted: 30 steps (a constant learning rate, so that the 20-step run below has the
    // schedule of the first 20 steps of this one)
    assert!(train(&cwd, "30", &["--out", "full", "--lr-final", "none"]).status.success());
    // interrupted after step 20's checkpoint, with what a kill leaves behind: history rows
    // past the checkpoint, the next era's optimizer file written but not yet the model, and a
    // temp file
    assert!(train(&cwd, "20", &["--out", "part", "--lr-final", "none"]).status.success());
    let part = cwd.join("part");
    let meta = SafeTensors::read(&part.join("model.safetensors")).unwrap().metadata;
    assert_eq!(meta.get("optimizer").map(String::as_str), Some("optimizer-step20.safetensors"));
    let names: Vec<String> =
        std::fs::read_dir(&part).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    assert!(!names.iter().any(|n| n.starts_with("optimizer-step10")), "older optimizer files are removed: {names:?}");
    let mut hist = std::fs::read_to_string(part.join("history.csv")).unwrap();
    for k in 21..=25 {
        hist += &format!("{k},0,0,0,0,0,0\n");
    }
    std::fs::write(part.join("history.csv"), hist).unwrap();
    std::fs::copy(part.join("optimizer-step20.safetensors"), part.join("optimizer-step30.safetensors")).unwrap();
    std::fs::write(part.join(".model.safetensors.tmp99999"), b"partial").unwrap();
    // resume with --out elsewhere: the new directory holds the whole run's history
    let mut a = vec!["train", "phi4", "--resume", "part/model.safetensors", "--steps", "30", "--lr-final", "none"];
    a.extend_from_slice(&SMALL[6..13]);
    ok(&cwd, &[&a[..], &["--out", "moved"]].concat());
    assert_eq!(history_steps(&cwd.join("moved")), (1..=30).collect::<Vec<_>>(), "moved run's history");
    assert_eq!(history_steps(&part)[..20], (1..=20).collect::<Vec<_>>()[..], "the original run is left as it was");
    assert_eq!(tensors(&cwd.join("moved/model.safetensors")), tensors(&cwd.join("full/model.safetensors")));
    // resume without --out: continues in part/, not in ./runs/phi4
    ok(&cwd, &a);
    assert!(!cwd.join("runs").exists(), "--resume wrote outside the checkpoint's directory");
    assert_eq!(history_steps(&part), (1..=30).collect::<Vec<_>>(), "history rows after the checkpoint are dropped");
    assert!(!part.join(".model.safetensors.tmp99999").exists(), "temp files are cleaned");
    assert_eq!(
        tensors(&part.join("model.safetensors")),
        tensors(&cwd.join("full/model.safetensors")),
        "the resumed run must equal the uninterrupted one bit for bit"
    );
    std::fs::remove_dir_all(&cwd).ok();
}

#[test]
fn a_diverging_run_keeps_the_last_good_parameters() {
    let cwd = temp_dir("diverge");
    let huge = ["--lr", "1e12", "--lr-final", "none", "--steps", "300", "--era", "50", "--n", "128", "--therm", "16"];
    let stopped = |o: &Output| {
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(!err.contains("panicked") && err.contains("training stopped: non-finite"), "{err}");
        err
    };
    // the case: the demo's model with a huge constant learning rate from step 0. The
    // step whose loss first overflows depends on the kernels' rounding (step 2 with the FFT
    // kernels AMD Zen 5 takes at batch 64, so nothing good is left to keep; later on Zen 4);
    // either way the run stops with exit 2 and what it says it kept is what is on disk
    let err = stopped(&latflow_in(&cwd, &[&["train", "phi4"][..], &huge, &["--out", "fresh", "--quiet"]].concat()));
    let fresh = cwd.join("fresh/model.safetensors");
    if err.contains("last good checkpoint") {
        assert!(fresh.exists(), "{err}");
    } else {
        assert!(err.contains("no checkpoint was written") && !fresh.exists(), "{err}");
    }
    // a run that diverges after good steps, on every machine: 20 steps at the default rate,
    // then resumed at the huge one. Step 21's update comes from step 20's finite gradient, so
    // the first non-finite loss is at step 22 or later and the parameters kept are those of a
    // step >= 20, written as the run's checkpoint
    ok(
        &cwd,
        &["train", "phi4", "--steps", "20", "--era", "10", "--n", "128", "--therm", "16", "--out", "run", "--quiet"],
    );
    let err =
        stopped(&latflow_in(&cwd, &[&["train", "phi4", "--resume", "run/model.safetensors"][..], &huge].concat()));
    assert!(err.contains("last good checkpoint"), "{err}");
    let st = SafeTensors::read(&cwd.join("run/model.safetensors")).unwrap();
    let step: usize = st.metadata["step"].parse().unwrap();
    assert!(
        step >= 20 && err.contains(&format!("parameters of step {step} kept")),
        "checkpoint at step {step}:\n{err}"
    );
    assert!(history_steps(&cwd.join("run"))[..20] == (1..=20).collect::<Vec<_>>()[..], "the good steps' history stays");
    // the kept checkpoint loads (finite weights) and samples without NaN
    let out = ok(&cwd, &["sample", "--checkpoint", "run/model.safetensors", "--n", "128", "--therm", "16"]);
    assert!(!out.contains("NaN") && !out.contains("inf"), "{out}");
    // a checkpoint with a NaN weight is refused at load
    let mut st = SafeTensors::read(&cwd.join("run/model.safetensors")).unwrap();
    let t = st.tensors.get_mut("0.net.0.bias").unwrap();
    t.bytes[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    st.write(&cwd.join("nan.safetensors")).unwrap();
    user_error(&cwd, &["sample", "--checkpoint", "nan.safetensors"], "non-finite value");
    std::fs::remove_dir_all(&cwd).ok();
}

#[test]
fn bad_sizes_couplings_and_flags_are_errors_not_crashes() {
    let cwd = temp_dir("bad");
    let e = |args: &[&str], needle: &str| user_error(&cwd, args, needle);
    // one sample left after thermalization, a single HMC trajectory
    e(&["train", "phi4", "--n", "1", "--therm", "0"], "at least 2 chain steps");
    e(&["hmc", "phi4", "--n-traj", "1", "--chains", "1"], "at least 2 recorded trajectories");
    // sizes: refused before anything is allocated
    e(&["hmc", "phi4", "--n-traj", "9223372036854775807"], "GiB of measurements");
    e(&["hmc", "phi4", "--chains", "100000000"], "--chains 100000000 is above the limit");
    e(&["train", "phi4", "--L", "100000"], "too large");
    e(&["train", "phi4", "--L", "3000"], "too large");
    e(&["train", "phi4", "--L", "1024"], "above the flows' limit");
    e(&["train", "phi4", "--hidden", "8,100000000"], "at most");
    e(&["train", "phi4", "--layers", "100000000"], "above the limit");
    e(&["train", "phi4", "--L", "256", "--hidden", "512,512"], "GiB for activations");
    // red-team cases of 2026-11-30: products of limits, huge couplings and trajectories
    e(&["train", "u1", "--mix", "100000000"], "components");
    e(&["train", "phi4", "--hidden", "1024,1024", "--layers", "1024"], "parameters");
    e(&["hmc", "phi4", "--tau", "1e300"], "--tau must be in");
    e(&["hmc", "phi4", "--m2", "1e300"], "at most");
    e(&["hmc", "u1", "--L", "1"], "at least 2");
    e(&["train", "phi4", "--lam", "1e-320"], "must be 0 or at least");
    // couplings that make the action unbounded or meaningless
    e(&["train", "phi4", "--lam", "0", "--m2", "-4"], "--m2 must be positive when lam = 0");
    e(&["hmc", "phi4", "--lam", "-1"], "--lam must be >= 0");
    e(&["train", "phi4", "--m2", "nan"], "--m2 must be finite");
    e(&["train", "phi4", "--lr", "1e-3", "--lr-final", "1e-2"], "above the starting learning rate");
    // metadata: the same checks, naming the file
    let mut st = SafeTensors::default();
    st.metadata.extend(
        [
            ("theory", "phi4"),
            ("L", "100000"),
            ("m2", "-4"),
            ("lam", "-1"),
            ("layers", "16"),
            ("hidden", "8,8"),
            ("kernel", "3"),
            ("final_tanh", "true"),
            ("step", "1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    st.write(&cwd.join("meta.safetensors")).unwrap();
    e(&["sample", "--checkpoint", "meta.safetensors"], "too large");
    st.metadata.insert("L".into(), "8".into());
    st.write(&cwd.join("meta.safetensors")).unwrap();
    e(&["sample", "--checkpoint", "meta.safetensors"], "metadata entry \"lam\" = \"-1\": must be >= 0");
    // the command line: stray and repeated arguments, near misses, empty paths
    e(&["train", "phi4", "-L", "16"], "flags start with two dashes: --L?");
    e(&["train", "phi4", "u1"], "unexpected argument \"u1\"");
    e(&["train", "phi4", "--L", "8", "--L", "16"], "--L given twice");
    e(&["train", "phi4", "--step", "10"], "did you mean --steps?");
    e(&["train", "phi4", "--out", ""], "--out must not be empty");
    e(&["sample", "--checkpoint", "x", "foo"], "unexpected argument \"foo\"");
    assert_eq!(std::fs::read_dir(&cwd).unwrap().count(), 1, "failed commands must not write files");
    // --help on every command, --version
    for cmd in ["train", "sample", "apply", "audit", "hmc"] {
        let out = ok(&cwd, &[cmd, "--help"]);
        assert!(out.contains(&format!("latflow {cmd}")), "{cmd} --help:\n{out}");
    }
    assert!(ok(&cwd, &["--version"]).starts_with("latflow 0."));
    std::fs::remove_dir_all(&cwd).ok();
}

/// Chains that do not move give no deviations in sigma (the red-team pass found a stuck
/// HMC run quoting "-281.92 sigma"): stuck chains (acceptance 0), trajectories too short to
/// move (acceptance 1, tau_int undetermined).
#[test]
fn chains_that_do_not_move_quote_no_deviations() {
    let cwd = temp_dir("stuck");
    for (tau, steps) in [("3", "3"), ("0.001", "1")] {
        let out = ok(&cwd, &["hmc", "phi4", "--tau", tau, "--steps", steps, "--n-traj", "2000", "--no-csv", "--quiet"]);
        assert!(!out.contains("sigma)"), "{out}");
        assert!(out.contains("no deviation quoted: the chains barely move"), "{out}");
    }
    // a moving chain still quotes them
    let out = ok(&cwd, &["hmc", "phi4", "--n-traj", "2000", "--no-csv", "--quiet"]);
    assert!(out.contains("sigma)") && !out.contains("no deviation quoted"), "{out}");
    std::fs::remove_dir_all(&cwd).ok();
}
