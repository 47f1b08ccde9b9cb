#!/usr/bin/env bash
# Runs on the device machine (see scripts/gpu_build.sh): GPU tests, op benches, training
# step benches, PyTorch on the same GPU, and the phi^4 demo trained on the GPU. Logs go
# to $OUT (or /tmp/gpu-out). Usage: scripts/gpu_run.sh [tests] [ops] [steps] [torch] [demo] [u1demo]
set -uo pipefail
out=${OUT:-/tmp/gpu-out}; mkdir -p "$out"
what=${*:-tests ops steps torch demo}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,utilization.gpu --format=csv | tee "$out/nvidia-smi.txt"
for w in $what; do
  case $w in
    tests)
      for t in .gpu/test-cuda_ops .gpu/test-cuda_fused_ops .gpu/test-cuda_train; do
        echo "== $t"; timeout 300 "$t" --test-threads 1 2>&1 | tee -a "$out/tests.log" | grep -E "^test |test result|panicked|error" ; done ;;
    ops)
      echo "== gpu_ops"; GPU_OPS_SUMMARY_ONLY=1 timeout 300 .gpu/bench-gpu_ops --bench 2>&1 | tee "$out/gpu_ops.log" | tail -30 ;;
    steps)
      echo "== train_step (cuda)"; TRAIN_STEP_DEVICE=cuda TRAIN_STEP_SUMMARY_ONLY=1 timeout 300 .gpu/bench-train_step --bench 2>&1 | tee "$out/train_step.log" | tail -12 ;;
    torch)
      echo "== torch_reference timing (cuda)"; (cd .gpu && PYTHONUNBUFFERED=1 timeout 300 python3 torch_reference.py timing --device cuda --batches 64 1024 16384) 2>&1 | tee "$out/torch.log" | tail -8 ;;
    demo)
      echo "== latflow train phi4 --device cuda (demo defaults)"; timeout 300 .gpu/latflow train phi4 --device cuda --out "$out/phi4" --quiet 2>&1 | tee "$out/demo.log" | tail -25 ;;
    u1demo)
      echo "== latflow train u1 --device cuda (defaults)"; timeout 300 .gpu/latflow train u1 --device cuda --out "$out/u1" --quiet 2>&1 | tee "$out/u1.log" | tail -25 ;;
  esac
done
