//! The engine's modules form no cycle: reads `src/`, takes every `crate::...` path (and
//! `super::` inside `kernels/`) outside `#[cfg(test)] mod tests` (names re-exported at the
//! crate root, like `crate::Tensor`, resolve to their module; `kernels/` counts file by
//! file) and fails on a cycle, naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module name -> its source files: `foo.rs` is `foo`, `kernels/bar.rs` and
/// `kernels/bar/**` are `kernels::bar`.
fn modules(src: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut mods = BTreeMap::new();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        if p.is_dir() {
            for f in std::fs::read_dir(&p).unwrap() {
                let f = f.unwrap().path();
                let sub = f.file_stem().unwrap().to_string_lossy().to_string();
                if f.is_dir() {
                    let files = std::fs::read_dir(&f).unwrap().map(|x| x.unwrap().path()).collect();
                    mods.insert(format!("{name}::{sub}"), files);
                } else if sub != "mod" {
                    mods.insert(format!("{name}::{sub}"), vec![f]);
                }
            }
        } else if name != "lib" {
            mods.insert(name, vec![p]);
        }
    }
    mods
}

/// The code of a file without comments and without its test module.
fn code(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap();
    let s = s.split("#[cfg(test)]\nmod tests").next().unwrap().to_string();
    s.lines().map(|l| l.split("//").next().unwrap()).collect::<Vec<_>>().join("\n")
}

/// The identifiers of a `crate::` path: `a`, `a::b`, or the names of `{a, b::c}`.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for part in code.split("crate::").skip(1) {
        let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
        if let Some(rest) = part.strip_prefix('{') {
            let inner = rest.split('}').next().unwrap();
            for item in inner.split(',') {
                out.push(item.trim().split("::").map(ident).filter(|s| !s.is_empty()).collect());
            }
        } else {
            out.push(part.split("::").take(2).map(ident).filter(|s| !s.is_empty()).collect());
        }
    }
    out
}

#[test]
fn engine_modules_have_no_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = modules(&src);
    // `pub use module::{A, B};` at the root: A and B are module's
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let mut reexport = BTreeMap::new();
    for l in lib.lines().filter_map(|l| l.strip_prefix("pub use ")) {
        let (m, names) = l.split_once("::").unwrap();
        for n in names.trim_matches(|c| "{};".contains(c)).split(',') {
            reexport.insert(n.trim().to_string(), m.to_string());
        }
    }
    let mut edges: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (m, files) in &mods {
        let e = edges.entry(m).or_default();
        for f in files.iter().filter(|f| f.extension().is_some_and(|x| x == "rs")) {
            // `super::` of `kernels/x.rs` and `kernels/x/mod.rs` is `kernels`
            let parent = m.split("::").next().unwrap();
            let code = if m.contains("::") && (f.parent().unwrap().ends_with(parent) || f.ends_with("mod.rs")) {
                code(f).replace("super::", &format!("crate::{parent}::"))
            } else {
                code(f)
            };
            for p in crate_paths(&code) {
                let Some(first) = p.first() else { continue };
                let target = match (first.as_str(), p.get(1)) {
                    (top, Some(sub)) if mods.contains_key(&format!("{top}::{sub}")) => format!("{top}::{sub}"),
                    (top, _) => reexport.get(top).cloned().unwrap_or_else(|| top.to_string()),
                };
                if mods.contains_key(&target) && target != *m && !m.starts_with(&format!("{target}::")) {
                    e.insert(target);
                }
            }
        }
    }
    // depth-first search for a back edge
    fn visit<'a>(
        m: &'a str,
        edges: &'a BTreeMap<&str, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if let Some(i) = path.iter().position(|p| *p == m) {
            panic!("module cycle: {} -> {m}", path[i..].join(" -> "));
        }
        if done.contains(m) {
            return;
        }
        path.push(m);
        for t in &edges[m] {
            let t = t.as_str();
            visit(t, edges, path, done);
        }
        path.pop();
        done.insert(m);
    }
    assert!(edges.len() > 10 && edges["backward"].contains("var"), "the parser found no edges: {edges:?}");
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        visit(m, &edges, &mut Vec::new(), &mut done);
    }
}
