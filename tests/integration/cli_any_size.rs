//! Flows on other lattice sizes through the command line: `sample --L`, `apply --L` and
//! `train --init FILE --L` on tiny checkpoints trained at 8x8 (U(1) and phi^4), the metadata
//! recording both sizes, and the user errors (a size that is not a multiple of the masks'
//! period, a checkpoint whose mask buffers are not those of its own size).

use crate::common;

use common::{ok, s, temp_dir, user_error};
use latflow::io::ensemble::Ensemble;
use latflow::io::safetensors::SafeTensors;
use latflow::physics::u1::{exact_q2_2d, wrap_angle};
use std::f64::consts::PI;
use std::path::{Path, PathBuf};

/// `apply --reverse` after `apply` at 16x16 in f64 (2 layers of NCP inverses, each solved
/// to ~1e-12 per plaquette).
const ROUNDTRIP_TOL_F64: f64 = 1e-9;

fn tiny(theory: &str, dir: &Path) -> PathBuf {
    let mut a = vec!["train", theory, "--layers", "2", "--hidden", "4", "--steps", "20", "--era", "20"];
    a.extend(["--n", "256", "--therm", "32", "--quiet", "--out", s(dir)]);
    ok(&a);
    dir.join("model.safetensors")
}

#[test]
fn u1_checkpoint_trained_at_8_samples_and_applies_at_16() {
    let dir = temp_dir("any-size", "u1");
    let ck = tiny("u1", &dir.join("train"));
    let out = dir.join("s16");
    let printed =
        ok(&["sample", "--checkpoint", s(&ck), "--L", "16", "--n", "512", "--therm", "32", "--out", s(&out), "--save"]);
    // the references are those of the 16x16 lattice
    let exact = format!("<Q^2> (exact, 2D)        {:.4}", exact_q2_2d(2.0, 256));
    assert!(printed.contains(&exact) && printed.contains("L=16"), "expected {exact:?} in\n{printed}");
    let e = Ensemble::open(&out.join("ensemble")).unwrap();
    assert_eq!(e.layout.shape, vec![2, 16, 16]);
    assert_eq!((e.metadata["L"].as_str(), e.metadata["L_trained"].as_str()), ("16", "8"));
    // measure rebuilds the 16x16 setup from the metadata
    let measured = ok(&["measure", s(&out.join("ensemble"))]);
    assert!(measured.contains(&exact), "{measured}");

    // apply at 16x16, forward then reverse (f64)
    let (z_in, x_out, z_out) = (dir.join("z.safetensors"), dir.join("x.safetensors"), dir.join("zz.safetensors"));
    let z: Vec<f64> = (0..2 * 2 * 256).map(|i| (i * 53 % 97) as f64 / 97.0 * 2.0 * PI).collect();
    let mut st = SafeTensors::default();
    st.insert_f64("z", &[2, 2, 16, 16], &z);
    st.write(&z_in).unwrap();
    ok(&["apply", "--checkpoint", s(&ck), "--L", "16", "--input", s(&z_in), "--output", s(&x_out)]);
    ok(&["apply", "--checkpoint", s(&ck), "--L", "16", "--input", s(&x_out), "--output", s(&z_out), "--reverse"]);
    let (fwd, back) = (SafeTensors::read(&x_out).unwrap(), SafeTensors::read(&z_out).unwrap());
    assert_eq!((fwd.metadata["L"].as_str(), fwd.metadata["L_trained"].as_str()), ("16", "8"));
    let x = fwd.tensor("x").unwrap().to_f64();
    assert!(x.iter().zip(&z).any(|(a, b)| wrap_angle(a - b).abs() > 1e-3), "the flow moved nothing");
    let zz = back.tensor("z").unwrap().to_f64();
    let d = zz.iter().zip(&z).map(|(a, b)| wrap_angle(a - b).abs()).fold(0.0, f64::max);
    assert!(d < ROUNDTRIP_TOL_F64, "reverse(forward(z)) - z = {d:e}");
    let (q1, q2) = (fwd.tensor("logq").unwrap().to_f64(), back.tensor("logq").unwrap().to_f64());
    let dq = q1.iter().zip(&q2).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(dq < ROUNDTRIP_TOL_F64, "log q forward vs reverse: {dq:e}");
    // without --L the 16x16 input does not fit the 8x8 flow, and the error says so
    let bad = dir.join("bad.safetensors");
    user_error(&["apply", "--checkpoint", s(&ck), "--input", s(&z_in), "--output", s(&bad)], "--L runs the flow");

    // sizes that are not multiples of the stripes' period 4, or not sizes at all
    let o = dir.join("never");
    user_error(&["sample", "--checkpoint", s(&ck), "--L", "10", "--out", s(&o)], "--L 10 is not a multiple of 4");
    user_error(&["sample", "--checkpoint", s(&ck), "--L", "6", "--out", s(&o)], "use L = 4 or 8");
    // below the period only the period itself (it said "use L = 4 or 4")
    user_error(&["sample", "--checkpoint", s(&ck), "--L", "2", "--out", s(&o)], "use L = 4)");
    user_error(&["sample", "--checkpoint", s(&ck), "--L", "0", "--out", s(&o)], "--L must be positive");
    user_error(&["sample", "--checkpoint", s(&ck), "--L", "x", "--out", s(&o)], "--L: cannot parse");
    assert!(!o.exists(), "a refused run writes nothing");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn phi4_checkpoint_fine_tunes_at_another_size_and_mask_buffers_are_checked() {
    let dir = temp_dir("any-size", "phi4");
    let ck = tiny("phi4", &dir.join("train"));
    user_error(&["sample", "--checkpoint", s(&ck), "--L", "7", "--out", s(&dir.join("o"))], "not a multiple of 2");
    // fine-tuning at 12x12 from the 8x8 flow: a new run whose checkpoint says both sizes
    let ft = dir.join("ft12");
    let mut a = vec!["train", "phi4", "--init", s(&ck), "--L", "12", "--steps", "10", "--era", "10"];
    a.extend(["--n", "256", "--therm", "32", "--quiet", "--out", s(&ft)]);
    let printed = ok(&a);
    assert!(printed.contains("L=12"), "{printed}");
    let meta = SafeTensors::read(&ft.join("model.safetensors")).unwrap().metadata;
    assert_eq!(meta["L"], "12");
    assert_eq!((meta["init_L"].as_str(), meta["init_step"].as_str()), ("8", "20"));
    assert_eq!(meta["step"], "10");
    // the fine-tuned checkpoint is an ordinary 12x12 one (its masks are 12x12)
    ok(&[
        "sample",
        "--checkpoint",
        s(&ft.join("model.safetensors")),
        "--n",
        "256",
        "--therm",
        "32",
        "--out",
        s(&dir.join("s12")),
    ]);
    // --init keeps the architecture, and is not --resume
    let o = s(&dir.join("o")).to_string();
    user_error(&["train", "phi4", "--init", s(&ck), "--hidden", "8", "--out", &o], "--init keeps it");
    user_error(&["train", "phi4", "--init", s(&ck), "--resume", s(&ck), "--out", &o], "give one of them");
    user_error(&["train", "phi4", "--resume", s(&ck), "--L", "16", "--steps", "40"], "--init instead of --resume");

    // a mask buffer that is not the 8x8 checkerboard is refused even when running at 16
    let mut st = SafeTensors::read(&ck).unwrap();
    let mask = st.tensor("0.mask").unwrap();
    let mut m = mask.to_f64();
    m[0] = 1.0 - m[0];
    st.insert_f32("0.mask", &[8, 8], &m.iter().map(|&v| v as f32).collect::<Vec<_>>());
    let bad = dir.join("bad.safetensors");
    st.write(&bad).unwrap();
    user_error(&["sample", "--checkpoint", s(&bad), "--L", "16", "--out", &o], "buffer \"0.mask\" differs");
    std::fs::remove_dir_all(&dir).ok();
}

/// `train --init D/model.safetensors --out D --force` replaced the model it started from
/// (and its optimizer file), and the new checkpoint's `init` named itself. The run
/// directory holding the --init checkpoint is refused even with --force.
#[test]
fn init_never_overwrites_the_checkpoint_it_starts_from() {
    let dir = temp_dir("any-size", "init-own-dir");
    let src = dir.join("train");
    let mut a = vec!["train", "phi4", "--L", "4", "--layers", "2", "--hidden", "4", "--steps", "10", "--prior"];
    a.extend(["normal", "--n", "256", "--therm", "32", "--quiet", "--out", s(&src)]);
    ok(&a);
    let ck = src.join("model.safetensors");
    let before = std::fs::read(&ck).unwrap();
    let files = |d: &Path| {
        let mut v: Vec<String> =
            std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
        v.sort();
        v
    };
    let listed = files(&src);
    let flags = ["--steps", "5", "--n", "256", "--therm", "32", "--quiet", "--force"];
    // the directory itself, spelt another way too
    let other_spelling = format!("{}/.", s(&src));
    for out in [s(&src), other_spelling.as_str()] {
        let mut a = vec!["train", "phi4", "--init", s(&ck), "--out", out];
        a.extend(flags);
        user_error(&a, "--init checkpoint");
    }
    assert_eq!(std::fs::read(&ck).unwrap(), before, "the source model was overwritten");
    assert_eq!(files(&src), listed, "the source run directory changed");
    std::fs::remove_dir_all(&dir).ok();
}

/// `sample --L 256` of a 4x4 phi^4 flow sat ~10 minutes in the on-demand HMC references (4 x
/// 20500 trajectories at 256x256, and as many again for the histogram) whose fixed step does
/// not move there. Above 64x64 they are not run, and the summary says so.
#[test]
fn large_lattices_skip_the_on_demand_hmc_references() {
    let dir = temp_dir("any-size", "big-reference");
    let src = dir.join("train");
    let mut a = vec!["train", "phi4", "--L", "4", "--layers", "2", "--hidden", "4", "--steps", "10", "--prior"];
    a.extend(["normal", "--n", "256", "--therm", "32", "--quiet", "--out", s(&src)]);
    ok(&a);
    let ck = src.join("model.safetensors");
    let out = dir.join("s128");
    let t0 = std::time::Instant::now();
    let printed = ok(&[
        "sample",
        "--checkpoint",
        s(&ck),
        "--L",
        "128",
        "--n",
        "64",
        "--therm",
        "0",
        "--batch",
        "64",
        "--out",
        s(&out),
    ]);
    assert!(printed.contains("HMC references           not run at L=128"), "{printed}");
    assert!(!printed.contains("(HMC, latflow)"), "{printed}");
    assert!(t0.elapsed().as_secs() < 60, "took {:?}", t0.elapsed());
    // at 8x8 they still run
    let printed =
        ok(&["sample", "--checkpoint", s(&ck), "--L", "8", "--n", "64", "--therm", "0", "--out", s(&dir.join("s8"))]);
    assert!(printed.contains("(HMC, latflow)") && !printed.contains("not run at"), "{printed}");
    std::fs::remove_dir_all(&dir).ok();
}
