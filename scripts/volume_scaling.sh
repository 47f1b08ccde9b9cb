#!/usr/bin/env bash
# How far a flow carries (README, "How far a flow carries"): a checkpoint trained at L0
# applied with no retraining at each L (`examples/volume_scaling.rs`: acceptance, ESS,
# ESS(V0)^(V/V0), the plot), then a short fine-tune at each L > L0 (`latflow train THEORY
# --init CKPT --L L --steps 1000 --lr 5e-4 --lr-final 1e-5`) and its evaluation ensemble.
#
# usage: scripts/volume_scaling.sh OUT_DIR SIZES THEORY:CKPT [THEORY:CKPT...]
#   e.g. scripts/volume_scaling.sh runs/volume 8,12,16,24,32 phi4:runs/phi4/model.safetensors
#   (OUT_DIR/volume-scaling.svg is the plot; OUT_DIR/<name>-L<L>/ the fine-tuned runs)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { echo "usage: scripts/volume_scaling.sh OUT_DIR SIZES THEORY:CKPT [THEORY:CKPT...]" >&2; exit 2; }
out=$1; sizes=$2; shift 2
ckpts=()
for a in "$@"; do
  case $a in
    phi4:*|u1:*) ckpts+=("${a#*:}") ;;
    *) echo "volume_scaling.sh: '$a' is not THEORY:CKPT (THEORY phi4 or u1)" >&2; exit 2 ;;
  esac
done
cargo build --release --quiet --example volume_scaling
cargo build --release --quiet
mkdir -p "$out"
target/release/examples/volume_scaling "$out/volume-scaling.svg" "$sizes" 8192 "${ckpts[@]}" | tee "$out/table.md"
echo
echo "| checkpoint | L | acceptance, ESS after 1000 steps at L | train s |"
echo "|---|---|---|---|"
for a in "$@"; do
  theory=${a%%:*}; ckpt=${a#*:}
  # the trained size: the example's row for this checkpoint with V/V0 = 1.00
  l0=$(awk -F' *[|] *' -v c="$ckpt" '$2 == c && $4 == "1.00" { print $3; exit }' "$out/table.md")
  [ -n "$l0" ] || { echo "volume_scaling.sh: SIZES must include the size $ckpt was trained at" >&2; exit 2; }
  name=$(basename "$(dirname "$ckpt")")
  for l in ${sizes//,/ }; do
    [ "$l" -gt "$l0" ] || continue
    log=$out/$name-L$l.log
    target/release/latflow train "$theory" --init "$ckpt" --L "$l" --steps 1000 --lr 5e-4 --lr-final 1e-5 \
      --out "$out/$name-L$l" --force --quiet > "$log"
    acc=$(awk '/^Metropolis acceptance/ { print $3 }' "$log")
    ess=$(awk '/^ESS \/ N/ { print $4 }' "$log")
    secs=$(awk '/^training time/ { print $3 }' "$log")
    echo "| $ckpt | $l | $acc, $ess | $secs |"
  done
done
