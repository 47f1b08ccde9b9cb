#!/usr/bin/env bash
# Builds, on this (GPU-less) machine, everything a device run needs and puts it in .gpu/
# (git-ignored): the GPU test executables, the GPU benches, the latflow binary, all with
# the `cuda` feature, stripped; and the PyTorch reference script. Then run
# scripts/gpu_run.sh on the device machine with carry [".gpu"] (../shared/gpu/README.md).
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu
exes() { python3 -c '
import sys, json
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["target"]["name"], m["executable"])'; }
cargo test --release --features cuda --workspace --no-run --message-format=json 2>/dev/null | exes \
  | while read -r name exe; do case "$name" in cuda_ops|cuda_fused_ops|cuda_train) cp "$exe" ".gpu/test-$name";; esac; done
cargo bench --features cuda --no-run --message-format=json 2>/dev/null | exes \
  | while read -r name exe; do case "$name" in gpu_ops|train_step) cp "$exe" ".gpu/bench-$name";; esac; done
cargo build --release --features cuda --bin latflow
cp target/release/latflow .gpu/
cp ../shared/reference/torch_reference.py .gpu/ 2>/dev/null || echo "note: ../shared/reference/torch_reference.py not found"
strip .gpu/test-* .gpu/bench-* .gpu/latflow
ls -la .gpu; du -sh .gpu
