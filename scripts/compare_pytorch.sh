#!/usr/bin/env bash
# Training-step time of latflow next to the PyTorch reference on the same machine, in
# one run, interleaved (PyTorch, latflow, PyTorch): the machines are shared and noisy.
# latflow prints two figures per case: the median of 20-50 steps and the mean of 50 steps
# after 5 warm-up steps, which is how torch_reference.py times PyTorch (the same statistic);
# the closing table gives the speed-up against each PyTorch run for both.
#
# usage: scripts/compare_pytorch.sh [PYTHON]     (PYTHON: an interpreter with torch 2.11,
#        default /tmp/torchenv/bin/python; see ../shared/reference/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-/tmp/torchenv/bin/python}
ref=../shared/reference/torch_reference.py
log=$(mktemp)
trap 'rm -f "$log"' EXIT
date; lscpu | grep 'Model name' || true
grep -m1 -E '^cpu family' /proc/cpuinfo || true
grep -m1 -E '^model\s' /proc/cpuinfo || true
git rev-parse --short HEAD 2>/dev/null || true
echo "== PyTorch (1)"; "$py" "$ref" timing --device cpu --threads 2 --batches 64 1024 | tee -a "$log" | sed 's/^/torch1 /'
echo "== latflow";     TRAIN_STEP_SUMMARY_ONLY=1 cargo bench --bench train_step 2>/dev/null | sed -n '/median ms/,$p' | tee -a "$log"
echo "== PyTorch (2)"; "$py" "$ref" timing --device cpu --threads 2 --batches 64 1024 | tee -a "$log" | sed 's/^/torch2 /'
date
# speed-ups: PyTorch's mean ms per step (each run) / latflow's median and mean
"$py" - "$log" <<'PY'
import json, sys
torch, lat = [{}, {}], {}
for line in open(sys.argv[1]):
    if line.startswith('{'):
        r = json.loads(line)
        k = (r['model'], r['batch'])
        torch[0 if k not in torch[0] else 1][k] = r['ms_per_step']
    else:
        p = line.split()
        if len(p) == 4 and p[0] in ('phi4', 'u1'):
            lat[(p[0], int(p[1]))] = (float(p[2]), float(p[3]))
print('\n| model | batch | PyTorch run 1, run 2 (mean ms/step) | latflow median, mean | speed-up vs median | speed-up vs mean (same statistic) |')
print('|---|---|---|---|---|---|')
for k, (med, mean) in lat.items():
    a, b = torch[0].get(k), torch[1].get(k)
    if a is None or b is None:
        continue
    print(f'| {k[0]} | {k[1]} | {a:.1f}, {b:.1f} | {med:.2f}, {mean:.2f} | {a/med:.1f}x / {b/med:.1f}x | {a/mean:.1f}x / {b/mean:.1f}x |')
# issue 16's targets: 20x at batch 64, 12x at batch 1024, against both PyTorch runs (the
# ratios as printed, to one decimal)
def held(i):
    ok = [round(t[k] / lat[k][i], 1) >= (20 if k[1] <= 64 else 12) for t in torch for k in lat if k in t]
    return 'yes' if len(ok) == 2 * len(lat) and all(ok) else 'no'
print(f'\ntargets (20x at batch 64, 12x at 1024, against both PyTorch runs) held in every case: '
      f'by the median {held(0)}, by the mean {held(1)}')
PY
