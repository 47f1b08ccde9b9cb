//! Checkpoints written by earlier versions load and sample to the same ensemble.
//!
//! `tests/data/v1/*.safetensors` were written by latflow at commit 1f560fc (checkpoint
//! format 1, whose U(1) files carry no mask buffers) with
//! `latflow train phi4|u1 --L 4 --layers 2 --hidden 4 --steps 50 --era 50 --n 512 --therm 64`;
//! that version's `latflow sample --checkpoint F --n 512 --therm 64 --seed 3` printed the
//! values asserted below (acceptance, ESS, the Metropolis and reweighted estimates), which
//! the current version must reproduce digit for digit: the same flow, the same proposals,
//! the same chain. (The Metropolis errors are those of the Gamma method with the IMH tail
//! correction since 2026-11-30, `latflow_sampler::tails`: the values are the old ones, the
//! errors and tau_int the new method's.)

use std::path::{Path, PathBuf};
use std::process::Command;

fn sample(ckpt: &str, out: &Path) -> String {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/v1").join(ckpt);
    let o = Command::new(env!("CARGO_BIN_EXE_latflow"))
        .args(["sample", "--checkpoint", data.to_str().unwrap(), "--n", "512", "--therm", "64", "--seed", "3"])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .expect("cannot run latflow");
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{text}\n{}", String::from_utf8_lossy(&o.stderr));
    text
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("latflow-compat-{name}-{}", std::process::id()))
}

/// The line starting with `name`, after the name column.
fn value<'a>(text: &'a str, name: &str) -> &'a str {
    let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name:?} in\n{text}"));
    line[name.len()..].trim_start()
}

#[test]
fn format_1_phi4_checkpoint_samples_as_before() {
    let dir = temp("phi4");
    let t = sample("phi4_L4.safetensors", &dir);
    assert_eq!(value(&t, "Metropolis acceptance"), "0.045");
    assert_eq!(value(&t, "ESS / N"), "0.035");
    assert!(value(&t, "chi_2 (Metropolis)").starts_with("0.3232 +- 0.0512   (tau_int 14.78 +- 8.87, 448 steps"), "{t}");
    assert_eq!(value(&t, "chi_2 (reweighting)"), "0.3285 +- 0.0445");
    // the tutorial's reference is for 8x8; it must not be printed for this 4x4 model
    assert!(!t.contains("tutorial"), "{t}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn format_1_u1_checkpoint_without_mask_buffers_samples_as_before() {
    let dir = temp("u1");
    let t = sample("u1_L4.safetensors", &dir);
    assert_eq!(value(&t, "Metropolis acceptance"), "0.020");
    assert_eq!(value(&t, "ESS / N"), "0.010");
    assert!(value(&t, "<Q^2> (Metropolis)").starts_with("0.612 +- 0.501   (tau_int 191.99 +- 25.65"), "{t}");
    assert_eq!(value(&t, "<Q^2> (reweighting)"), "0.740 +- 0.148");
    assert_eq!(value(&t, "<Q^2> (exact, 2D)"), "0.2906");
    assert!(value(&t, "<plaquette> (Metropolis)").starts_with("0.5534 +- 0.0653"), "{t}");
    assert!(value(&t, "tunnelling rate").starts_with("flow 0.004, HMC 0.199 per step   (HMC <Q^2> = 0.281 +- 0.047"));
    assert!(!t.contains("tutorial"), "{t}");
    std::fs::remove_dir_all(dir).ok();
}
