#!/usr/bin/env bash
# A U(1) flow for beta = 6 on 8x8, by annealing in beta: the demo's U(1) training at beta = 2
# (`latflow train u1`), then 4000 steps at each of beta = 3, 4, 5, 6, each started from the
# previous model (`train u1 --init PREV --beta B --lr 1e-3 --lr-final 1e-4`; training at
# beta = 6 from scratch diverges at the default learning rate and reaches acceptance ~0.01 at
# 1e-3). Prints each stage's training time, Metropolis acceptance and ESS.
#
# usage: scripts/u1_beta6_flow.sh [OUT_DIR]     (default runs/u1-anneal; the beta = 6 model is
#        OUT_DIR/b6/model.safetensors). About 5 minutes on the 2-core dev box.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/u1-anneal}
cargo build --release --quiet
bin=target/release/latflow
mkdir -p "$out"
"$bin" train u1 --out "$out/b2" --force --quiet > "$out/b2.log"
prev=$out/b2/model.safetensors
for b in 3 4 5 6; do
  "$bin" train u1 --init "$prev" --beta "$b" --steps 4000 --lr 1e-3 --lr-final 1e-4 --out "$out/b$b" --force --quiet \
    > "$out/b$b.log"
  prev=$out/b$b/model.safetensors
done
for b in 2 3 4 5 6; do
  echo "beta $b: $(grep -E '^(training time|Metropolis acceptance|ESS / N)' "$out/b$b.log" | tr -s ' ' | tr '\n' ';' | sed 's/;$//')"
done
