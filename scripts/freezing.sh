#!/usr/bin/env bash
# Topological freezing of 2D U(1) at L = 16, beta = 6: plain HMC against flow-HMC at equal
# trajectory length (tau = 1). The flow is ultralocal: 16 gauge-equivariant couplings whose
# nets have kernel 1, so every active plaquette gets the same NCP mixture whatever its
# neighbours (the net's input there is the frozen-masked field, constant); tanh, 2 mixture
# components, trained at 8x8 and a lower beta (a partial trivializing map, applied at
# 16x16 and beta 6 with no retraining). One markdown row per sampler (README, "Flow-HMC",
# and the issue "flow-HMC"):
#
#   trajectories | acceptance | tunnelling rate (mean |Q_{i+1} - Q_i| per trajectory) |
#   <Q^2> against the exact finite-volume value | tau_int of Q^2 | wall s | cost per
#   effective sample of Q^2 (wall x 2 tau_int / N, ms)
#
#   scripts/freezing.sh [OUT_DIR [BETA_TRAIN [FHMC_STEPS [PLAQUETTE_STEPS]]]]   # default runs/freezing, 2.5, 50, 100
#   scripts/freezing.sh --from OUT_DIR                        # only the table, from an earlier run
#
# About 5 minutes on the 2-core dev box: flow-HMC 64 chains x 4020 trajectories of 50 leapfrog
# steps through the ultralocal map without the tape (`fhmc` picks it for kernel-1 flows, with
# the action's force on the same f32 lanes); training 2000 steps at 8x8, a few seconds; plain
# HMC 4 chains x 200500 trajectories, with leapfrog and with Omelyan's integrator; and plain
# HMC through flow-HMC's machinery (`fhmc --identity`: the same lanes, no layers), 64 chains
# x 13000 trajectories with Omelyan's integrator; and flow-HMC through the plaquette map
# (`fhmc --plaquette-map 3 --map-beta 3`: every plaquette through one circle map fitted to
# exp(3 cos x), the plaquette sum kept by one shift; no checkpoint, no lattice training),
# 64 x 4020 trajectories of 100 leapfrog steps.
set -euo pipefail
cd "$(dirname "$0")/.."
run=1
if [ "${1:-}" = "--from" ]; then
    run=0
    shift
    [ -d "${1:-}" ] || { echo "freezing.sh: --from needs the directory of an earlier run" >&2; exit 2; }
fi
out=${1:-runs/freezing}
beta_train=${2:-2.5}
steps=${3:-50}
pm_steps=${4:-100}
bin=target/release/latflow
if [ $run = 1 ]; then
    mkdir -p "$out"
    cargo build --release --quiet
    "$bin" train u1 --L 8 --beta "$beta_train" --layers 16 --hidden 1 --kernel 1 --mix 2 --activation tanh \
        --steps 2000 --out "$out/flow" --force --quiet > "$out/train.log"
    "$bin" hmc u1 --L 16 --beta 6 --tau 1 --steps 10 --chains 4 --n-traj 200000 --n-therm 500 --no-csv --quiet \
        > "$out/hmc.log"
    # plain HMC with the Omelyan integrator: 5 steps of 2 forces, as many forces as leapfrog's 10
    "$bin" hmc u1 --L 16 --beta 6 --tau 1 --steps 5 --integrator omelyan --chains 4 --n-traj 200000 --n-therm 500 \
        --no-csv --quiet > "$out/hmc-omelyan.log"
    # plain HMC through flow-HMC's machinery (the identity map: 64 chains in f32 lanes, the
    # action's force on the lanes, H in f64), Omelyan 5: the baseline at equal implementation
    "$bin" fhmc --checkpoint "$out/flow/model.safetensors" --identity --L 16 --beta 6 --tau 1 --steps 5 \
        --integrator omelyan --chains 64 --n-traj 12500 --n-therm 500 --out "$out/identity" --force --quiet \
        > "$out/hmc-identity.log"
    "$bin" fhmc --checkpoint "$out/flow/model.safetensors" --L 16 --beta 6 --tau 1 --steps "$steps" --chains 64 \
        --n-traj 4000 --n-therm 20 --out "$out/fhmc" --force --quiet > "$out/fhmc.log"
    # the plaquette map: 3-component circle map fitted to exp(3 cos x), no checkpoint
    "$bin" fhmc --plaquette-map 3 --map-beta 3 --L 16 --beta 6 --tau 1 --steps "$pm_steps" --chains 64 \
        --n-traj 4000 --n-therm 20 --out "$out/fhmc-plaquette" --force --quiet > "$out/fhmc-plaquette.log"
fi
for f in "$out/train.log" "$out/hmc.log" "$out/hmc-omelyan.log" "$out/hmc-identity.log" "$out/fhmc.log" \
    "$out/fhmc-plaquette.log"; do
    [ -s "$f" ] || { echo "freezing.sh: $f is missing or empty" >&2; exit 1; }
done

row() {
    awk -v name="$1" '
        { s = $0; sub(/^ +/, "", s) }
        s ~ /^[0-9]+ trajectories in / { split(s, w, " "); total = w[1]; secs = w[4] }
        s ~ /^acceptance / { split(s, w, " "); acc = w[2] }
        s ~ /^<Q\^2> +[-0-9.]+ \+- / { split(s, w, " "); q = w[2]; dq = w[4]; tau = w[6]; dtau = w[8] }
        s ~ /^<Q\^2> \(exact, 2D\)/ { split(s, w, " "); exact = w[4] }
        s ~ /^tunnelling rate +[0-9.]+ per trajectory/ { split(s, w, " "); rate = w[3] }
        END {
            cost = secs / total * 2 * tau * 1e3
            printf "| %s | %d | %s | %s | %s +- %s (exact %s) | %s +- %s | %.1f | %.1f |\n", \
                name, total, acc, rate, q, dq, exact, tau, dtau, secs, cost
        }' "$2"
}

echo "flow: $(grep -E '^Metropolis acceptance|^training time' "$out/train.log" | tr -s ' ' | tr '\n' ';' | sed 's/;$//') (ultralocal: 16 layers, kernel 1, 2 mixture components, tanh; trained at 8x8, beta $beta_train, 2000 steps)"
echo
echo "| sampler (U(1) 16x16, beta 6, tau 1) | trajectories (all chains, with thermalization) | acceptance | tunnelling rate | <Q^2> | tau_int(Q^2) | wall s | cost per effective Q^2 sample, ms |"
echo "|---|---|---|---|---|---|---|---|"
row "HMC, 10 leapfrog steps" "$out/hmc.log"
row "HMC, 5 Omelyan steps (10 forces)" "$out/hmc-omelyan.log"
row "HMC, 5 Omelyan steps, 64 chains on f32 lanes (fhmc --identity)" "$out/hmc-identity.log"
row "flow-HMC, $(awk '/ steps/ { for (i = 1; i <= NF; i++) if ($(i + 2) == "steps," || $(i + 2) == "steps") { print $i, $(i + 1); exit } }' "$out/fhmc.log") steps" "$out/fhmc.log"
row "flow-HMC, plaquette map (3 components fitted at beta 3), $(awk '/ steps/ { for (i = 1; i <= NF; i++) if ($(i + 2) == "steps," || $(i + 2) == "steps") { print $i, $(i + 1); exit } }' "$out/fhmc-plaquette.log") steps" "$out/fhmc-plaquette.log"
