//! Helpers the command-line tests share: run the binary, fresh temporary directories,
//! success and user-error assertions.

#![allow(dead_code)] // each test binary uses a part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the `latflow` binary.
pub fn latflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_latflow")).args(args).output().expect("cannot run the latflow binary")
}

/// A fresh directory of its own per test binary (`suite`), test (`name`) and process.
pub fn temp_dir(suite: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("latflow-{suite}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `latflow args`, which must succeed without a panic; its stdout.
#[track_caller]
pub fn ok(args: &[&str]) -> String {
    let out = latflow(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("panicked"), "latflow {args:?} failed:\n{err}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Runs `latflow args`, which must fail with `error: ...` naming `needle`, not a panic.
#[track_caller]
pub fn user_error(args: &[&str], needle: &str) {
    let out = latflow(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "latflow {args:?} should fail");
    assert!(!err.contains("panicked"), "latflow {args:?} panicked:\n{err}");
    assert!(err.contains("error:") && err.contains(needle), "latflow {args:?}: expected {needle:?} in:\n{err}");
}
