//! The generic commands on both built-in theories: reference values are those of the run's
//! couplings (the tutorial's published numbers only at its own couplings, exact values where
//! known, latflow's HMC run on demand otherwise), and `apply` works on U(1) checkpoints.

use latflow::io::safetensors::SafeTensors;
use latflow::physics::u1::exact_q2_2d;
use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `apply --reverse` after `apply` on U(1) links in f64 (the NCP inverse is solved to 1e-12
/// per plaquette; 2 layers).
const U1_ROUNDTRIP_TOL_F64: f64 = 1e-9;

fn latflow(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_latflow")).args(args).output().expect("cannot run latflow");
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "latflow {args:?} failed:\n{out}\n{err}");
    out.to_string()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("latflow-cli-theories-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn small(theory: &str, dir: &Path, extra: &[&str]) -> String {
    let d = dir.to_str().unwrap();
    let mut a = vec!["train", theory, "--layers", "2", "--hidden", "4", "--steps", "20", "--era", "20"];
    a.extend(["--n", "256", "--therm", "32", "--quiet", "--out", d]);
    a.extend_from_slice(extra);
    latflow(&a)
}

#[test]
fn phi4_references_follow_the_couplings() {
    let dir = temp_dir("phi4");
    // the tutorial's couplings (8x8, M2 = -4, lam = 8): its value and latflow's cached one
    let out = small("phi4", &dir.join("tutorial"), &[]);
    assert!(out.contains("chi_2 (HMC, tutorial)    0.75 +- 0.01"), "{out}");
    assert!(out.contains("chi_2 (HMC, latflow)     0.7444 +- 0.0005   (9.6M trajectories)"), "{out}");
    // other couplings: no tutorial value; latflow's HMC at these couplings, run now
    let out = small("phi4", &dir.join("lam1"), &["--L", "4", "--lam", "1"]);
    assert!(!out.contains("tutorial") && !out.contains("0.7444"), "{out}");
    assert!(out.contains("chi_2 (HMC, latflow)") && out.contains("trajectories run now"), "{out}");
    let summary = std::fs::read_to_string(dir.join("lam1/summary.csv")).unwrap();
    assert!(summary.lines().any(|l| l.starts_with("chi2_ref_HMC__latflow,")), "{summary}");
    // the free field: exact values, no HMC needed
    let out = small("phi4", &dir.join("free"), &["--L", "4", "--lam", "0", "--m2", "0.5"]);
    assert!(out.contains("chi_2 (exact, free field) 1.0000"), "{out}");
    assert!(!out.contains("run now"), "{out}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn u1_references_follow_beta_and_apply_round_trips() {
    let dir = temp_dir("u1");
    let out = small("u1", &dir, &["--L", "4", "--beta", "4"]);
    assert!(!out.contains("tutorial"), "{out}");
    let exact = format!("<Q^2> (exact, 2D)        {:.4}", exact_q2_2d(4.0, 16));
    assert!(out.contains(&exact), "expected {exact:?} in\n{out}");
    let ckpt = dir.join("model.safetensors");
    let meta = SafeTensors::read(&ckpt).unwrap().metadata;
    assert_eq!(meta.get("latflow_format").map(String::as_str), Some("2"));
    // U(1) checkpoints carry their mask buffers (PyTorch state_dict names)
    let st = SafeTensors::read(&ckpt).unwrap();
    assert!(st.tensors.contains_key("1.active_mask") && st.tensors.contains_key("1.plaq_coupling.frozen"));

    // apply on links (N, 2, 4, 4): forward then reverse gives z back (mod 2 pi)
    let (z_in, x_out, z_out) = (dir.join("z.safetensors"), dir.join("x.safetensors"), dir.join("zz.safetensors"));
    let z: Vec<f64> = (0..3 * 32).map(|i| (i * 53 % 97) as f64 / 97.0 * 2.0 * PI).collect();
    let mut st = SafeTensors::default();
    st.insert_f64("z", &[3, 2, 4, 4], &z);
    st.write(&z_in).unwrap();
    let (c, s) = (ckpt.to_str().unwrap(), |p: &Path| p.to_str().unwrap().to_string());
    latflow(&["apply", "--checkpoint", c, "--input", &s(&z_in), "--output", &s(&x_out)]);
    latflow(&["apply", "--checkpoint", c, "--input", &s(&x_out), "--output", &s(&z_out), "--reverse"]);
    let fwd = SafeTensors::read(&x_out).unwrap();
    let back = SafeTensors::read(&z_out).unwrap();
    let wrap = |d: f64| (d + PI).rem_euclid(2.0 * PI) - PI;
    let dz = back.get_f64("z").unwrap().iter().zip(&z).map(|(a, b)| wrap(a - b).abs()).fold(0.0, f64::max);
    assert!(dz < U1_ROUNDTRIP_TOL_F64, "U(1) apply round trip: max |dz| = {dz:e}");
    let (q1, q2) = (fwd.get_f64("logq").unwrap(), back.get_f64("logq").unwrap());
    let dq = q1.iter().zip(&q2).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(dq < U1_ROUNDTRIP_TOL_F64, "log q forward vs reverse: {dq:e}");
    std::fs::remove_dir_all(&dir).ok();
}
