//! Ensembles on disk: `sample --save` and `hmc --save` write chunked safetensors files that
//! `latflow measure` turns back into the numbers the sampling run printed, that numpy reads
//! (the README's snippet, run when Python with numpy is available), and that are checked
//! on the way in (a tampered, foreign, missing or truncated chunk is an error).
//!
//! The checkpoints are the small format-1 fixtures of `tests/data/v1` (L = 4).

use latflow::io::digest::sha256_file;
use latflow::io::ensemble::{chunk_name, Ensemble, MANIFEST_FILE};
use latflow::io::safetensors::{Dtype, SafeTensors};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;
use common::{ok, s, user_error};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/v1").join(name)
}

fn temp_dir(name: &str) -> PathBuf {
    common::temp_dir("ensembles", name)
}

/// The lines of a summary that carry numbers, without timings, files and the measure banner.
fn numbers(text: &str) -> Vec<String> {
    let skip = ["time", "wrote ", "ensemble:", "measured ", "trajectories in", "saved configurations", "observables:"];
    // "0.3 s" and "0.1 s)" (the HMC reference's time closes its parentheses)
    let untimed =
        |l: &str| l.split(", ").filter(|p| !p.trim_end_matches(')').ends_with(" s")).collect::<Vec<_>>().join(", ");
    text.lines().filter(|l| !skip.iter().any(|k| l.contains(k))).map(untimed).collect()
}

/// `sample --save` then `measure`: the same printed numbers (phi^4 and U(1)); the chunks
/// hold the layout and metadata the README documents.
#[test]
fn flow_ensembles_measure_to_the_numbers_sample_printed() {
    for (theory, ckpt) in [("phi4", "phi4_L4.safetensors"), ("u1", "u1_L4.safetensors")] {
        let dir = temp_dir(&format!("flow-{theory}"));
        let ck = fixture(ckpt);
        let args = ["--n", "3000", "--batch", "512", "--therm", "64", "--seed", "5"];
        let mut cmd = vec!["sample", "--checkpoint", s(&ck), "--out", s(&dir), "--save"];
        cmd.extend(args);
        let sampled = ok(&cmd);
        let ens = dir.join("ensemble");
        let measured = ok(&["measure", s(&ens)]);
        assert_eq!(numbers(&measured), numbers(&sampled), "{theory}");
        assert!(numbers(&sampled).len() >= 8, "{sampled}");

        let e = Ensemble::open(&ens).unwrap();
        let m = &e.metadata;
        assert_eq!(m["theory"], theory);
        assert_eq!(m["sampler"], "flow-independence-metropolis");
        assert_eq!((m["n"].as_str(), m["therm"].as_str(), m["seed"].as_str()), ("3000", "64", "5"));
        assert_eq!(m["checkpoint_sha256"], sha256_file(&ck).unwrap());
        assert_eq!(m["latflow_version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(e.layout.dtype, Dtype::F32);
        assert_eq!(e.layout.shape, if theory == "phi4" { vec![4, 4] } else { vec![2, 4, 4] });
        let (mut n, mut prev) = (0, 0);
        e.for_each_chunk(|c| {
            for (k, &state) in c.ints["chain"].iter().enumerate() {
                // each step sits on its own proposal (accepted) or where the last one sat
                let i = (c.first + k) as i64;
                assert!(state == i || state == prev, "chain step {i} on {state}");
                prev = state;
            }
            n += c.count;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 3000);
        // --obs picks observables; --therm overrides the run's
        let (key, shown, hidden) = if theory == "phi4" {
            ("absM", "<|M|> (Metropolis)", "chi_2")
        } else {
            ("plaq", "<plaquette> (Metropolis)", "<Q^2>")
        };
        let one = ok(&["measure", s(&ens), "--obs", key]);
        assert!(one.contains(shown) && !one.contains(hidden), "{one}");
        let longer = ok(&["measure", s(&ens), "--therm", "1000"]);
        assert!(longer.contains("2000 steps after 1000 thermalization"), "{longer}");
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// `hmc --save` then `measure`: the same printed numbers; one stream per chain, in f64,
/// thermalization not saved; `--therm` drops more.
#[test]
fn hmc_ensembles_measure_to_the_numbers_hmc_printed() {
    for theory in ["phi4", "u1"] {
        let dir = temp_dir(&format!("hmc-{theory}"));
        let cmd = ["hmc", theory, "--L", "4", "--chains", "3", "--n-traj", "400", "--n-therm", "50", "--quiet"];
        // U(1) with charge-conjugation flips (the metadata carries them to measure)
        let flip: &[&str] = if theory == "u1" { &["--flip"] } else { &[] };
        let printed = ok(&[&cmd[..], &["--out", s(&dir), "--save"], flip].concat());
        assert_eq!(printed.contains("global flips"), theory == "u1", "{printed}");
        let ens = dir.join("ensemble");
        let measured = ok(&["measure", s(&ens)]);
        assert_eq!(numbers(&measured), numbers(&printed), "{theory}");
        let e = Ensemble::open(&ens).unwrap();
        assert_eq!((e.streams.len(), e.layout.dtype), (3, Dtype::F64));
        assert_eq!(e.metadata["sampler"], "hmc");
        let later = ok(&["measure", s(&ens), "--therm", "100"]);
        assert!(later.contains("3 chains x 300 trajectories (+150 thermalization)"), "{later}");
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// Rewrites chunk `index` of stream 0 after `edit`.
fn edit_chunk(ens: &Path, index: usize, edit: impl FnOnce(&mut SafeTensors)) {
    let path = ens.join(chunk_name(0, index));
    let mut st = SafeTensors::read(&path).unwrap();
    edit(&mut st);
    st.write(&path).unwrap();
}

/// What a user can do wrong with `measure` and `--save`: clear errors, non-zero exits.
#[test]
fn bad_ensembles_and_flags_are_clear_errors() {
    let dir = temp_dir("bad");
    let ck = fixture("phi4_L4.safetensors");
    // 70000 configurations of 4x4 in f32: two chunks
    ok(&["sample", "--checkpoint", s(&ck), "--n", "70000", "--out", s(&dir), "--save"]);
    let ens = dir.join("ensemble");
    assert!(ens.join(chunk_name(0, 1)).exists(), "expected two chunks");
    let full = ok(&["measure", s(&ens)]);

    user_error(&["measure"], "which ensemble");
    user_error(&["measure", s(&ens), s(&ens)], "one ensemble directory");
    user_error(&["measure", s(&dir.join("nope"))], "cannot read ensemble directory");
    user_error(&["measure", s(&dir)], "no ensemble chunks");
    user_error(
        &["measure", s(&ens), "--obs", "chi3"],
        "not an observable of this theory (chi2, M, absM, Mpos, G0, G1, G2, chi2c, U4, xi2, meff1)",
    );
    user_error(&["measure", s(&ens), "--therm", "69999"], "must leave at least 2 chain steps");
    user_error(&["measure", s(&ens), "--bogus"], "--bogus");
    // the run directory now holds a run
    user_error(&["sample", "--checkpoint", s(&ck), "--out", s(&dir), "--save"], "already holds a run");
    user_error(&["hmc", "phi4", "--no-csv", "--save"], "contradicts --no-csv");

    // the finished run wrote its manifest last
    assert!(full.contains("complete (manifest.csv lists its 2 chunks"), "{full}");
    let manifest = std::fs::read(ens.join(MANIFEST_FILE)).unwrap();
    // a chunk of the finished run gone: the manifest says the ensemble is incomplete
    let second = std::fs::read(ens.join(chunk_name(0, 1))).unwrap();
    std::fs::remove_file(ens.join(chunk_name(0, 1))).unwrap();
    user_error(&["measure", s(&ens)], "chunk-s0000-000001.safetensors is listed in manifest.csv but missing");
    // a kill after the first chunk (before the manifest): the complete chunks measure, with
    // a warning
    std::fs::remove_file(ens.join(MANIFEST_FILE)).unwrap();
    let partial = ok(&["measure", s(&ens)]);
    assert!(partial.contains("has no manifest.csv: the run that wrote it did not finish"), "{partial}");
    assert!(partial.contains("warning: the ensemble holds 65536 of the run's 70000 proposals"), "{partial}");
    std::fs::write(ens.join(chunk_name(0, 1)), &second).unwrap();
    std::fs::write(ens.join(MANIFEST_FILE), &manifest).unwrap();
    assert_eq!(numbers(&ok(&["measure", s(&ens)])), numbers(&full));
    // one value changed after the run, the file's size kept: the manifest's SHA-256
    let mut changed = second.clone();
    let k = changed.len() - 3;
    changed[k] ^= 0x10;
    std::fs::write(ens.join(chunk_name(0, 1)), &changed).unwrap();
    user_error(&["measure", s(&ens)], "SHA-256 differs from manifest.csv's: damaged or replaced");
    std::fs::write(ens.join(chunk_name(0, 1)), &second).unwrap();
    // the checks below are those of the chunks themselves (a run without its manifest)
    std::fs::remove_file(ens.join(MANIFEST_FILE)).unwrap();

    // a gap in the numbering
    std::fs::rename(ens.join(chunk_name(0, 1)), ens.join(chunk_name(0, 2))).unwrap();
    user_error(&["measure", s(&ens)], "chunk 1 of stream 0 is missing");
    std::fs::rename(ens.join(chunk_name(0, 2)), ens.join(chunk_name(0, 1))).unwrap();

    // a truncated chunk
    std::fs::write(ens.join(chunk_name(0, 1)), &second[..second.len() / 2]).unwrap();
    user_error(&["measure", s(&ens)], "chunk-s0000-000001.safetensors");
    std::fs::write(ens.join(chunk_name(0, 1)), &second).unwrap();

    // an edited configuration: its stored action no longer matches
    edit_chunk(&ens, 1, |st| {
        let mut x = st.get_f32("x").unwrap();
        x[5] += 0.5;
        let shape = st.tensor("x").unwrap().shape.clone();
        st.insert_f32("x", &shape, &x);
    });
    user_error(&["measure", s(&ens)], "has stored action");
    std::fs::write(ens.join(chunk_name(0, 1)), &second).unwrap();

    // edited couplings in one chunk's metadata
    edit_chunk(&ens, 1, |st| {
        st.metadata.insert("m2".into(), "-3".into());
    });
    user_error(&["measure", s(&ens)], "\"m2\" = \"-3\" differs from the first chunk");
    std::fs::write(ens.join(chunk_name(0, 1)), &second).unwrap();

    // a corrupt chain column
    edit_chunk(&ens, 1, |st| {
        let mut c = st.tensor("chain").unwrap().to_i64().unwrap();
        c[3] = 7;
        st.insert("chain".into(), latflow::io::safetensors::TensorData::from_i64(&[c.len()], &c));
    });
    user_error(&["measure", s(&ens)], "the chain column is corrupt");
    std::fs::write(ens.join(chunk_name(0, 1)), &second).unwrap();

    // --force replaces the run, and no chunk of the old ensemble survives, nor its manifest
    std::fs::write(ens.join(MANIFEST_FILE), &manifest).unwrap();
    ok(&["sample", "--checkpoint", s(&ck), "--n", "1000", "--out", s(&dir), "--save", "--force"]);
    assert!(!ens.join(chunk_name(0, 1)).exists(), "a stale chunk of the old ensemble survived --force");
    assert!(ens.join(MANIFEST_FILE).exists(), "the new run's manifest");
    assert!(ok(&["measure", s(&ens)]).contains("1000 proposals"));
    std::fs::remove_dir_all(&dir).ok();
}

/// The README's Python snippet (the ```python block after `<!-- ensemble-snippet -->`)
/// reads a saved ensemble with numpy alone and finds what latflow wrote; with the
/// `safetensors` package installed, its loader agrees. Skipped, saying so, without Python
/// and numpy (`LATFLOW_PYTHON` names the interpreter; CI sets it to a venv with both).
#[test]
fn readme_python_snippet_reads_ensembles() {
    let python = std::env::var("LATFLOW_PYTHON").unwrap_or_else(|_| "python3".into());
    let has = |module: &str| {
        Command::new(&python).args(["-c", &format!("import {module}")]).output().is_ok_and(|o| o.status.success())
    };
    if !has("numpy") {
        eprintln!("SKIPPED readme_python_snippet_reads_ensembles: no numpy for {python} (set LATFLOW_PYTHON)");
        return;
    }
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let after = &readme[readme.find("<!-- ensemble-snippet -->").expect("README: no ensemble-snippet marker")..];
    let start = after.find("```python\n").unwrap() + "```python\n".len();
    let snippet = &after[start..start + after[start..].find("```").unwrap()];

    let dir = temp_dir("python");
    let ck = fixture("phi4_L4.safetensors");
    let sampled = ok(&["sample", "--checkpoint", s(&ck), "--n", "2048", "--therm", "512", "--seed", "1"]
        .iter()
        .copied()
        .chain(["--out", s(&dir), "--save"])
        .collect::<Vec<_>>());
    let snippet = snippet.replace("runs/phi4/sample-seed1/ensemble", s(&dir.join("ensemble")));
    let mut script = snippet.clone();
    script += "\nprint(x.shape, x.dtype, chain.shape, chain.dtype)\nprint(repr(float(chi2_metropolis)))\n";
    if has("safetensors") {
        script += "from safetensors.numpy import load_file\n";
        script += &format!(
            "st = [load_file(f) for f in sorted(glob.glob({:?}))]\n",
            format!("{}/chunk-*.safetensors", s(&dir.join("ensemble")))
        );
        script += "assert (np.concatenate([c['x'] for c in st]) == x).all()\nprint('safetensors agrees')\n";
    } else {
        eprintln!("note: the safetensors package is not installed for {python}; numpy alone checked");
    }
    let out = Command::new(&python).args(["-c", &script]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{script}\n{}", String::from_utf8_lossy(&out.stderr));
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("(2048, 4, 4) float32 (2048,) int64"));
    // the snippet's chi_2 along the chain is the printed Metropolis value
    let py: f64 = lines.next().unwrap().parse().unwrap();
    let line = sampled.lines().find(|l| l.starts_with("chi_2 (Metropolis)")).unwrap();
    let printed: f64 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!((py - printed).abs() < 0.5e-4, "python {py} vs printed {printed}");
    if has("safetensors") {
        assert_eq!(lines.next(), Some("safetensors agrees"));
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A sampling run killed while it writes leaves only complete chunks, which `measure`
/// reads (saying how much of the planned ensemble it found).
#[test]
fn a_killed_sampling_run_leaves_complete_chunks() {
    let dir = temp_dir("kill");
    let ck = fixture("phi4_L4.safetensors");
    let mut child = Command::new(env!("CARGO_BIN_EXE_latflow"))
        .args(["sample", "--checkpoint", s(&ck), "--n", "4000000", "--out", s(&dir), "--save"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ens = dir.join("ensemble");
    let t0 = std::time::Instant::now();
    // killed once its first chunk is complete (and the run far from done): `measure` of one
    // chunk, not of three (each chunk is 65536 values of a slowly mixing chain: measuring three
    // took ~1 minute of the test run)
    while !ens.join(chunk_name(0, 0)).exists() && t0.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run finished before it was killed: use a larger --n");
    assert!(!ens.join(MANIFEST_FILE).exists(), "a killed run wrote its manifest");
    let out = ok(&["measure", s(&ens)]);
    assert!(out.contains("has no manifest.csv"), "{out}");
    let complete = Ensemble::open(&ens).unwrap().n_chunks() * 65536;
    assert!(out.contains(&format!("warning: the ensemble holds {complete} of the run's 4000000")), "{out}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `train --resume` continues in the run's own directory: with `--save` it would replace the
/// ensemble the run saved before, so it needs `--force` (the chunks are untouched without).
#[test]
fn resume_with_save_does_not_silently_replace_the_runs_ensemble() {
    let dir = temp_dir("resume-save");
    let run = dir.join("run");
    let base = ["train", "phi4", "--L", "4", "--layers", "2", "--hidden", "4", "--n", "256", "--therm", "32"];
    ok(&[&base[..], &["--steps", "10", "--era", "10", "--quiet", "--save", "--out", s(&run)]].concat());
    let first = std::fs::read(run.join("ensemble").join(chunk_name(0, 0))).unwrap();
    let model = run.join("model.safetensors");
    let resume = ["train", "phi4", "--resume", s(&model), "--steps", "20", "--quiet", "--n", "256", "--therm", "32"];
    user_error(&[&resume[..], &["--save"]].concat(), "--save would replace it");
    assert_eq!(std::fs::read(run.join("ensemble").join(chunk_name(0, 0))).unwrap(), first, "chunks untouched");
    ok(&[&resume[..], &["--save", "--force"]].concat());
    assert_ne!(std::fs::read(run.join("ensemble").join(chunk_name(0, 0))).unwrap(), first, "replaced on --force");
    std::fs::remove_dir_all(&dir).ok();
}
