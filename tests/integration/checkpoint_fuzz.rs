//! Fuzzing the checkpoint path the tools take (read the file, find its theory, validate its
//! metadata, build the model, load the weights, draw a few samples): mutated valid
//! checkpoints (bit flips, byte insertions and deletions, truncations, metadata edits) must
//! give a clean error or a valid model, never a panic, an abort or a hang.
//!
//! `cargo test --release --test checkpoint_fuzz` runs `LATFLOW_FUZZ_CASES` cases (default
//! 400, a few seconds); `scripts/fuzz_checkpoints.sh 1000000` runs a million.

use latflow::cli::checkpoints;
use latflow::flow::checkpoint;
use latflow::flow::phi4::Phi4FlowConfig;
use latflow::flow::u1::U1FlowConfig;
use latflow::io::safetensors::SafeTensors;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::Path;

/// A valid checkpoint of each theory (tiny flows), as bytes.
fn valid_files(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let phi4 = Phi4FlowConfig { l: 4, layers: 2, hidden: vec![4], kernel: 3, ..Default::default() };
    let flow = phi4.build::<f32>(&mut StdRng::seed_from_u64(1));
    let meta: BTreeMap<String, String> = [
        ("theory", "phi4"),
        ("L", "4"),
        ("m2", "-4"),
        ("lam", "8"),
        ("layers", "2"),
        ("hidden", "4"),
        ("kernel", "3"),
        ("final_tanh", "true"),
        ("step", "5"),
        ("seed", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    checkpoint::save(&dir.join("phi4.safetensors"), &flow, &meta).unwrap();
    out.push(std::fs::read(dir.join("phi4.safetensors")).unwrap());
    let u1 = U1FlowConfig { l: 4, layers: 2, n_mix: 2, hidden: vec![4], kernel: 3, ..U1FlowConfig::default() };
    let flow = u1.build::<f32>(&mut StdRng::seed_from_u64(2));
    let meta: BTreeMap<String, String> = [
        ("theory", "u1"),
        ("L", "4"),
        ("beta", "2"),
        ("layers", "2"),
        ("n_mix", "2"),
        ("hidden", "4"),
        ("kernel", "3"),
        ("step", "5"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    checkpoint::save(&dir.join("u1.safetensors"), &flow, &meta).unwrap();
    out.push(std::fs::read(dir.join("u1.safetensors")).unwrap());
    out
}

/// Values a hostile metadata edit may set.
const JUNK: [&str; 16] = [
    "",
    "-1",
    "0",
    "1e308",
    "nan",
    "inf",
    "100000",
    "8,100000000",
    "true",
    "x",
    "3000",
    "4,0",
    "1e8",
    "-4",
    "u1",
    "phi4",
];

/// One mutation of `bytes`.
fn mutate(bytes: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let mut b = bytes.to_vec();
    if b.is_empty() {
        return vec![rng.gen()];
    }
    match rng.gen_range(0..5) {
        0 => {
            for _ in 0..rng.gen_range(1..8) {
                let i = rng.gen_range(0..b.len());
                b[i] ^= 1 << rng.gen_range(0..8);
            }
        }
        1 => b.truncate(rng.gen_range(0..b.len())),
        2 => {
            let i = rng.gen_range(0..b.len());
            let n = rng.gen_range(1..16);
            b.splice(i..i, (0..n).map(|_| rng.gen::<u8>()));
        }
        3 => {
            let i = rng.gen_range(0..b.len());
            let j = (i + rng.gen_range(1..16)).min(b.len());
            b.drain(i..j);
        }
        _ => {
            // a metadata edit through the format: a valid file with one hostile value
            if let Ok(mut st) = SafeTensors::from_bytes(&b) {
                let keys: Vec<String> = st.metadata.keys().cloned().collect();
                let k = keys[rng.gen_range(0..keys.len())].clone();
                st.metadata.insert(k, JUNK[rng.gen_range(0..JUNK.len())].to_string());
                b = st.to_bytes();
            }
        }
    }
    b
}

#[test]
fn mutated_checkpoints_give_clean_errors_or_valid_models() {
    let cases: usize = std::env::var("LATFLOW_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    let dir = std::env::temp_dir().join(format!("latflow-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let valid = valid_files(&dir);
    let theories = latflow::theory::builtin();
    let mut rng = StdRng::seed_from_u64(0xf022);
    let path = dir.join("mutant.safetensors");
    let (mut loaded, mut refused) = (0, 0);
    for case in 0..cases {
        let base = &valid[case % valid.len()];
        let mut b = mutate(base, &mut rng);
        if rng.gen_bool(0.3) {
            b = mutate(&b, &mut rng);
        }
        std::fs::write(&path, &b).unwrap();
        let result = checkpoints::theory_of(&theories, &path)
            .and_then(|t| checkpoints::open(t, &path))
            .and_then(|ck| ck.flow_f32());
        match result {
            Ok(flow) => {
                // a valid model: it samples (finite or not, without panicking)
                let _ = flow.sample(2, &mut StdRng::seed_from_u64(case as u64));
                loaded += 1;
            }
            Err(e) => {
                assert!(!e.0.is_empty(), "case {case}: empty error message");
                refused += 1;
            }
        }
    }
    println!("{cases} mutated checkpoints: {loaded} loaded, {refused} refused with an error");
    assert!(refused > cases / 4 && loaded > 0, "the mutations should hit both outcomes: {loaded} / {refused}");
    std::fs::remove_dir_all(&dir).ok();
}
