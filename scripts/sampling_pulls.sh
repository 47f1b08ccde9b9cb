#!/usr/bin/env bash
# Are the quoted error bars honest? Draws S independent 8192-proposal Metropolis ensembles
# from one checkpoint (sampling seeds 1..S) and summarizes the pulls
# (estimate - reference) / error: for honest errors their mean is ~0, their standard
# deviation ~1 and about 5% lie beyond 2.
#
# usage: scripts/sampling_pulls.sh CHECKPOINT [S=30] [REFERENCE]
#   REFERENCE defaults to phi^4 chi_2 = 0.7444 (+- 0.0005, latflow's HMC:
#   `latflow hmc phi4 --n-traj 1200000 --chains 8`) and U(1) <Q^2> = 1.2393 (exact, 2D).
set -euo pipefail
cd "$(dirname "$0")/.."
ckpt=${1:?usage: scripts/sampling_pulls.sh CHECKPOINT [S] [REFERENCE]}
n=${2:-30}
cargo build --release --quiet
bin=target/release/latflow
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for s in $(seq 1 "$n"); do
  "$bin" sample --checkpoint "$ckpt" --n 8192 --seed "$s" --out "$out/s$s" > "$out/s$s.log"
done
# lines like "chi_2 (Metropolis)       0.7049 +- 0.0214 ..." or "<Q^2> (Metropolis) ..." (the
# primary observable; the other observables' lines are left out)
cat "$out"/s*.log | awk -v ref="${3:-}" '
  /Metropolis acceptance/ { acc += $3; na++ }
  /^(chi_2|<Q\^2>) \(Metropolis\)/ && /\+-/ {
    if ($1 == "chi_2") { r = (ref == "" ? 0.7444 : ref); name = "chi_2" } else { r = (ref == "" ? 1.2393 : ref); name = $1 }
    v = $3; e = $5; p = (v - r) / e
    n++; sv += v; svv += v * v; se += e; sp += p; spp += p * p; if (p > 2 || p < -2) out2++
  }
  END {
    mv = sv / n; mp = sp / n
    printf "%d ensembles of 8192 proposals: acceptance %.3f, %s mean %.4f, scatter %.4f, mean quoted error %.4f\n",
      n, acc / na, name, mv, sqrt((svv - n * mv * mv) / (n - 1)), se / n
    printf "pulls against %s: mean %+.2f, standard deviation %.2f, %d of %d beyond 2\n",
      r, mp, sqrt((spp - n * mp * mp) / (n - 1)), out2, n
  }'
