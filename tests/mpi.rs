//! `mpirun -np 2 latflow ...` against one process (feature `mpi`; CI runs these after
//! installing OpenMPI). Each test starts `mpirun` itself (`LATFLOW_MPIRUN` overrides the
//! program), with OpenMPI's environment switches for running as root and on more ranks
//! than cores. Without a working `mpirun` they fail: they never skip.
//!
//! The same code paths on threads as ranks run in every build: `latflow-comm`'s tests,
//! `crates/flow/tests/integration/reproducible.rs`, the sampler's `sample_over` and `run_chains_over`
//! tests, `crates/flow/tests/integration/flow_hmc.rs`'s `flow_hmc_over_ranks_is_one_process_bit_for_bit`.
#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_latflow");

/// A fresh directory under the target directory for one test.
fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mpi").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `latflow args` on `ranks` ranks under mpirun, or as a plain process when `ranks` is 0,
/// with `env` added.
fn latflow(ranks: usize, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = if ranks == 0 {
        Command::new(BIN)
    } else {
        let mut c = Command::new(std::env::var("LATFLOW_MPIRUN").unwrap_or_else(|_| "mpirun".into()));
        c.args(["-np", &ranks.to_string()]).arg(BIN);
        // OpenMPI: allow root (CI runs as root) and more ranks than cores
        c.env("OMPI_ALLOW_RUN_AS_ROOT", "1").env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
        c.env("OMPI_MCA_rmaps_base_oversubscribe", "1");
        c
    };
    cmd.args(args).envs(env.iter().copied());
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e} (is OpenMPI installed?)"));
    out
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Runs and checks the exit status.
fn ok(ranks: usize, args: &[&str]) -> String {
    let o = latflow(ranks, args, &[]);
    let t = text(&o);
    assert!(o.status.success(), "{ranks} ranks, latflow {}: {:?}\n{t}", args.join(" "), o.status);
    t
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The flags of a small phi^4 run: 4x4, batch 256 = 4 shards (2 per rank), small evaluation.
fn train_args<'a>(out: &'a str, steps: &'a str) -> Vec<&'a str> {
    let mut a = vec!["train", "phi4", "--L", "4", "--batch", "256", "--steps", steps, "--era", "5"];
    a.extend(["--n", "600", "--sample-batch", "128", "--therm", "100", "--quiet", "--out", out]);
    a
}

/// `history.csv` without the wall-clock column.
fn history(dir: &Path) -> Vec<String> {
    let t = String::from_utf8(read(&dir.join("history.csv"))).unwrap();
    t.lines().map(|l| l.rsplit_once(',').unwrap().0.to_string()).collect()
}

#[test]
fn two_ranks_train_the_weights_of_one_process_bit_for_bit() {
    let d = scratch("train");
    let (one, two) = (d.join("one"), d.join("two"));
    ok(0, &train_args(one.to_str().unwrap(), "20"));
    let t = ok(2, &train_args(two.to_str().unwrap(), "20"));
    assert!(t.contains("x MPI: 2 ranks"), "the run says it ran on 2 ranks:\n{t}");
    for f in ["model.safetensors", "optimizer-step20.safetensors", "summary.csv"] {
        assert!(read(&one.join(f)) == read(&two.join(f)), "{f} differs between 1 process and 2 ranks");
    }
    let h = history(&one);
    assert_eq!(h.len(), 21, "header and 20 steps");
    assert_eq!(h, history(&two), "loss, ESS, log p, log q, lr of every step");
    // 3 ranks (on 2 cores): 4 shards split 2, 1, 1
    let three = d.join("three");
    ok(3, &train_args(three.to_str().unwrap(), "20"));
    assert!(read(&one.join("model.safetensors")) == read(&three.join("model.safetensors")), "3 ranks");
    // the run trained: the parameters moved from their initial values
    let init = d.join("init");
    ok(0, &train_args(init.to_str().unwrap(), "1"));
    assert!(read(&init.join("model.safetensors")) != read(&one.join("model.safetensors")));
}

#[test]
fn a_run_resumes_on_another_number_of_ranks() {
    let d = scratch("resume");
    let (whole, cut, resumed) = (d.join("whole"), d.join("cut"), d.join("resumed"));
    ok(0, &train_args(whole.to_str().unwrap(), "20"));
    // one process stopped before step 13 leaves the checkpoint of step 10
    let o = latflow(0, &train_args(cut.to_str().unwrap(), "20"), &[("LATFLOW_FAULT_RANK_EXIT", "0:13")]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let model = cut.join("model.safetensors");
    let args = ["train", "phi4", "--resume", model.to_str().unwrap(), "--steps", "20", "--quiet"];
    let mut args = args.to_vec();
    args.extend(["--n", "600", "--sample-batch", "128", "--therm", "100", "--out", resumed.to_str().unwrap()]);
    ok(2, &args);
    assert!(
        read(&whole.join("model.safetensors")) == read(&resumed.join("model.safetensors")),
        "10 steps on one process + 10 on 2 ranks = 20 steps on one process"
    );
}

#[test]
fn two_ranks_sample_the_ensemble_of_one_process() {
    let d = scratch("sample");
    let flow = d.join("flow");
    ok(0, &train_args(flow.to_str().unwrap(), "10"));
    let ck = flow.join("model.safetensors");
    let sample = |ranks: usize, out: &Path| {
        let a = ["sample", "--checkpoint", ck.to_str().unwrap(), "--n", "1100", "--batch", "128", "--therm", "100"];
        let mut a = a.to_vec();
        a.extend(["--save", "--out", out.to_str().unwrap()]);
        ok(ranks, &a)
    };
    let (one, two) = (d.join("one"), d.join("two"));
    sample(0, &one);
    // 9 batches: rank 0 draws 5, rank 1 draws 4
    sample(2, &two);
    let chunks = |dir: &Path| {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("ensemble")).unwrap().map(|e| e.unwrap().path()).collect();
        v.sort();
        v
    };
    let c1 = chunks(&one);
    assert!(!c1.is_empty());
    assert_eq!(
        c1.iter().map(|p| p.file_name()).collect::<Vec<_>>(),
        chunks(&two).iter().map(|p| p.file_name()).collect::<Vec<_>>()
    );
    for p in &c1 {
        assert!(read(p) == read(&two.join("ensemble").join(p.file_name().unwrap())), "{} differs", p.display());
    }
    assert!(read(&one.join("summary.csv")) == read(&two.join("summary.csv")));
    assert!(read(&one.join("ensemble/manifest.csv")) == read(&two.join("ensemble/manifest.csv")));
    // measure reads the 2-rank ensemble
    let m = ok(0, &["measure", two.join("ensemble").to_str().unwrap()]);
    assert!(m.contains("1100"), "{m}");
}

/// The 2-rank run `two` (printed `t`) of 3 chains wrote what the one-process run `one` did:
/// `observables.csv`, each chain's stream (chains 0 and 1 on rank 0, chain 2 on rank 1, each
/// rank writing its own) and the manifest rank 0 wrote once every rank's chunks were complete.
fn same_chains(t: &str, one: &Path, two: &Path) {
    assert!(t.contains("x 2 ranks"), "{t}");
    assert!(read(&one.join("observables.csv")) == read(&two.join("observables.csv")));
    for s in 0..3 {
        let name = format!("chunk-s{s:04}-000000.safetensors");
        assert!(read(&one.join("ensemble").join(&name)) == read(&two.join("ensemble").join(&name)), "{name}");
    }
    assert!(read(&one.join("ensemble/manifest.csv")) == read(&two.join("ensemble/manifest.csv")));
}

#[test]
fn hmc_chains_on_two_ranks_write_the_ensemble_of_one_process() {
    let d = scratch("hmc");
    let run = |ranks: usize, out: &Path| {
        let a = ["hmc", "phi4", "--L", "4", "--chains", "3", "--n-traj", "300", "--n-therm", "20", "--quiet"];
        let mut a = a.to_vec();
        a.extend(["--save", "--out", out.to_str().unwrap()]);
        ok(ranks, &a)
    };
    let (one, two) = (d.join("one"), d.join("two"));
    run(0, &one);
    let t = run(2, &two);
    same_chains(&t, &one, &two);
    let m = ok(0, &["measure", two.join("ensemble").to_str().unwrap()]);
    assert!(m.contains("measured 900 saved configurations"), "{m}");
    assert!(m.contains("complete (manifest.csv lists its 3 chunks"), "{m}");
}

#[test]
fn fhmc_chains_on_two_ranks_write_the_ensemble_of_one_process() {
    let d = scratch("fhmc");
    let flow = d.join("flow");
    ok(0, &train_args(flow.to_str().unwrap(), "10"));
    let ck = flow.join("model.safetensors");
    let run = |ranks: usize, out: &Path| {
        let a = ["fhmc", "--checkpoint", ck.to_str().unwrap(), "--chains", "3", "--n-traj", "60", "--n-therm", "5"];
        let mut a = a.to_vec();
        a.extend(["--quiet", "--save", "--out", out.to_str().unwrap()]);
        ok(ranks, &a)
    };
    let (one, two) = (d.join("one"), d.join("two"));
    run(0, &one);
    let t = run(2, &two);
    same_chains(&t, &one, &two);
    let m = ok(0, &["measure", two.join("ensemble").to_str().unwrap()]);
    assert!(m.contains("measured 180 saved configurations"), "{m}");
}

#[test]
fn a_rank_that_dies_stops_the_job_with_the_last_checkpoint_intact() {
    let d = scratch("fault");
    let (one, two) = (d.join("one"), d.join("two"));
    // the checkpoint of step 10 as one process writes it (stopped the same way)
    let o = latflow(0, &train_args(one.to_str().unwrap(), "20"), &[("LATFLOW_FAULT_RANK_EXIT", "0:12")]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let o = latflow(2, &train_args(two.to_str().unwrap(), "20"), &[("LATFLOW_FAULT_RANK_EXIT", "1:12")]);
    let t = text(&o);
    assert!(!o.status.success(), "the job must fail:\n{t}");
    assert!(t.contains("rank 1 of 2: exiting before step 12 (LATFLOW_FAULT_RANK_EXIT"), "{t}");
    assert!(!two.join("summary.csv").exists(), "the run stopped before its evaluation");
    let model = two.join("model.safetensors");
    assert!(read(&model) == read(&one.join("model.safetensors")), "the checkpoint of step 10, intact");
    assert!(read(&two.join("optimizer-step10.safetensors")) == read(&one.join("optimizer-step10.safetensors")));
    // it loads and samples
    let s = d.join("s");
    let a = ["sample", "--checkpoint", model.to_str().unwrap(), "--n", "300", "--batch", "100", "--therm", "50"];
    let mut a = a.to_vec();
    a.extend(["--out", s.to_str().unwrap()]);
    ok(0, &a);
}

#[test]
fn commands_of_one_process_refuse_two_ranks() {
    let o = latflow(2, &["audit"], &[]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("latflow audit runs on one process, not on 2 ranks"), "{t}");
}
