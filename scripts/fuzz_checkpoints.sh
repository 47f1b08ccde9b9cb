#!/usr/bin/env bash
# Fuzzes the checkpoint path of the tools with N mutated checkpoints (default 1000000):
# bit flips, insertions, deletions, truncations and hostile metadata values, each read,
# validated, built into a model and sampled; any panic fails the run (tests/checkpoint_fuzz.rs).
#
# usage: scripts/fuzz_checkpoints.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
LATFLOW_FUZZ_CASES=${1:-1000000} cargo test --release --test checkpoint_fuzz -- --nocapture
