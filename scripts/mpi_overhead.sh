#!/usr/bin/env bash
# Milliseconds per training step of the phi^4 defaults on this machine's two cores:
# one process with 2 rayon threads against 2 MPI ranks with 1 thread each (the same shards,
# the same bits; the difference is the per-step gather of the shards' gradients and the
# processes' separate caches). Runs alternate (1 rank, 2 ranks, 1 rank, 2 ranks) since the
# machines are shared; each figure is the mean over the steps after the first few of a run,
# from the run's history.csv (seconds since training started).
#
# usage: scripts/mpi_overhead.sh     (after `cargo build --release --features mpi`; needs mpirun)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/latflow
date -u; lscpu | grep 'Model name' || true; uptime
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# ms per step between step $2 and the last step of history $1
ms_per_step() {
    awk -F, -v k="$2" 'NR > 1 { if ($1 == k) t0 = $7; last = $1; t = $7 } END { printf "%.2f", 1000 * (t - t0) / (last - k) }' "$1"
}
mpi=(mpirun --allow-run-as-root -np 2 -x RAYON_NUM_THREADS=1)
printf "%-7s %-6s %-22s %-22s\n" batch steps "1 rank x 2 threads" "2 ranks x 1 thread"
for spec in 64:400:20 1024:60:5 16384:8:2; do
    IFS=: read -r batch steps skip <<<"$spec"
    flags=(train phi4 --batch "$batch" --steps "$steps" --era "$steps" --n 1024 --sample-batch 256 --therm 100 --quiet)
    one=() two=()
    for rep in 1 2; do
        RAYON_NUM_THREADS=2 "$bin" "${flags[@]}" --out "$tmp/one-$batch-$rep" >/dev/null 2>&1
        one+=("$(ms_per_step "$tmp/one-$batch-$rep/history.csv" "$skip")")
        "${mpi[@]}" "$bin" "${flags[@]}" --out "$tmp/two-$batch-$rep" >/dev/null 2>&1
        two+=("$(ms_per_step "$tmp/two-$batch-$rep/history.csv" "$skip")")
        cmp -s "$tmp/one-$batch-$rep/model.safetensors" "$tmp/two-$batch-$rep/model.safetensors" \
            || { echo "batch $batch: 1 rank and 2 ranks trained different weights" >&2; exit 1; }
    done
    printf "%-7s %-6s %-22s %-22s\n" "$batch" "$steps" "${one[0]} / ${one[1]} ms" "${two[0]} / ${two[1]} ms"
done
uptime
