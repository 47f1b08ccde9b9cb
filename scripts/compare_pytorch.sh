#!/usr/bin/env bash
# Training-step time of latflow next to the PyTorch reference on the same machine, in
# one run, interleaved (PyTorch, latflow, PyTorch): the machines are shared and noisy.
#
# usage: scripts/compare_pytorch.sh [PYTHON]     (PYTHON: an interpreter with torch 2.11,
#        default /tmp/torchenv/bin/python; see ../shared/reference/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-/tmp/torchenv/bin/python}
ref=../shared/reference/torch_reference.py
date; lscpu | grep 'Model name' || true
echo "== PyTorch (1)"; "$py" "$ref" timing --device cpu --threads 2 --batches 64 1024
echo "== latflow";     TRAIN_STEP_SUMMARY_ONLY=1 cargo bench --bench train_step 2>/dev/null | sed -n '/median ms/,$p'
echo "== PyTorch (2)"; "$py" "$ref" timing --device cpu --threads 2 --batches 64 1024
