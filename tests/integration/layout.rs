//! The workspace's test layout: a crate whose library says `test = false` in its Cargo.toml
//! (its tests live in its `tests/`, so that `cargo test` compiles the crate once, not a second
//! time with `cfg(test)`) must have no test under `src/`: cargo would never compile or run it.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, recursively.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// Whether the manifest's `[lib]` table sets `test = false`.
fn lib_untested(manifest: &str) -> bool {
    let mut in_lib = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_lib = line == "[lib]";
        } else if in_lib && line.replace(' ', "") == "test=false" {
            return true;
        }
    }
    false
}

#[test]
fn crates_without_unit_tests_have_none_in_src() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut untested = Vec::new();
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        if lib_untested(&manifest) {
            untested.push(dir);
        }
    }
    untested.sort();
    let names: Vec<_> = untested.iter().map(|d| d.file_name().unwrap().to_string_lossy().into_owned()).collect();
    // the crates moved so far (a crate taken off this list by mistake fails here)
    for name in ["cuda-kernels", "flow", "physics", "sampler", "theory"] {
        assert!(
            names.iter().any(|n| n == name),
            "crates/{name}/Cargo.toml no longer says [lib] test = false: {names:?}"
        );
    }
    let mut offenders = Vec::new();
    for dir in &untested {
        let mut files = Vec::new();
        sources(&dir.join("src"), &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            if text.contains("#[test]") || text.contains("#[cfg(test)]") || text.contains("cfg(all(test") {
                offenders.push(f.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "tests under src/ of crates whose Cargo.toml says [lib] test = false never run; move them to the \
         crate's tests/: {offenders:?}"
    );
}

#[test]
fn the_manifest_reader_sees_lib_test_false() {
    assert!(lib_untested("[package]\nname = \"x\"\n\n[lib]\ntest = false\n"));
    assert!(!lib_untested("[package]\ntest = false\n[lib]\ndoctest = false\n"));
    assert!(!lib_untested("[lib]\n[features]\ntest = false\n"));
}
