#!/usr/bin/env bash
# phi^4 along the critical line of Albergo et al. arXiv:1904.12072 (M2 = -4, L/xi about 4):
# at each L a flow trained with the demo's defaults, then plain HMC and flow-HMC, and one
# markdown table row per L (README, "Along the critical line"):
#
#   training time, acceptance, ESS | flow independence Metropolis chi_2, tau_int, cost |
#   HMC chi_2, tau_int, cost | flow-HMC acceptance, chi_2, tau_int, cost
#
# cost = sampling wall seconds x 2 tau_int / N per effective sample of chi_2, in
# microseconds (the training not included). chi_2 and tau_int are the Gamma-method values
# latflow prints. Usage:
#
#   scripts/critical_line.sh [OUT_DIR [L,L,...]]      # default runs/critical_line, 6,8,10,12,14
#   scripts/critical_line.sh --from OUT_DIR [L,...]   # only the table, from an earlier run's logs
#
# About 20 minutes on the 2-core dev box for all five sizes (most of it training).
set -euo pipefail
cd "$(dirname "$0")/.."
run=1
if [ "${1:-}" = "--from" ]; then
    run=0
    shift
    [ -d "${1:-}" ] || { echo "critical_line.sh: --from needs the directory of an earlier run" >&2; exit 2; }
fi
out=${1:-runs/critical_line}
sizes=${2:-6,8,10,12,14}
if [ $run = 1 ]; then
    mkdir -p "$out"
    cargo build --release --quiet
fi
bin=target/release/latflow

lam_of() {
    case $1 in
        6) echo 6.975 ;; 8) echo 6.008 ;; 10) echo 5.550 ;; 12) echo 5.276 ;; 14) echo 5.113 ;;
        *) echo "critical_line.sh: no critical-line coupling for L = $1 (6, 8, 10, 12, 14)" >&2; exit 2 ;;
    esac
}

# the number after `label` on the first line that starts with it (leading spaces ignored)
field() { awk -v k="$2" '{ s = $0; sub(/^ +/, "", s) } index(s, k) == 1 { s = substr(s, length(k) + 1); split(s, w, " "); print w[1]; exit }' "$1"; }

echo "| L | lam | training: s, acceptance, ESS | flow IMH chi_2 | IMH tau_int | IMH cost | HMC chi_2 | HMC tau_int | HMC cost | flow-HMC acceptance | flow-HMC chi_2 | flow-HMC tau_int | flow-HMC cost |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for L in ${sizes//,/ }; do
    lam=$(lam_of "$L")
    train="$out/train-L$L.log" hmc="$out/hmc-L$L.log" fhmc="$out/fhmc-L$L.log"
    if [ $run = 1 ]; then
        "$bin" train phi4 --L "$L" --lam "$lam" --out "$out/L$L" --force --quiet > "$train"
        "$bin" hmc phi4 --L "$L" --lam "$lam" --n-traj 20000 --chains 2 --no-csv --quiet > "$hmc"
        "$bin" fhmc --checkpoint "$out/L$L/model.safetensors" --n-traj 1000 --chains 8 --no-csv --quiet > "$fhmc"
    fi
    for f in "$train" "$hmc" "$fhmc"; do
        [ -s "$f" ] || { echo "critical_line.sh: $f is missing or empty" >&2; exit 1; }
    done
    awk -v L="$L" -v lam="$lam" \
        -v tr="$(field "$train" "training time")" -v samp="$(field "$train" "sampling time")" \
        -v acc="$(field "$train" "Metropolis acceptance")" -v ess="$(field "$train" "ESS / N")" '
        function chi(file,    line, a) {
            # "chi_2 (Metropolis)  V +- E   (tau_int T +- TE, N steps ..." or "chi_2  V +- E  tau_int T +- TE"
            while ((getline line < file) > 0) {
                if (line ~ /^ *chi_2 (\(Metropolis\))? /) {
                    gsub(/[(),]/, " ", line); split(line, a, " "); close(file)
                    return a[1] == "chi_2" && a[2] == "Metropolis" ? a[3] " " a[5] " " a[7] " " a[9] " " a[10] : a[2] " " a[4] " " a[6] " " a[8]
                }
            }
            close(file); return ""
        }
        function timing(file,    line, a) {
            while ((getline line < file) > 0) {
                if (line ~ /trajectories in [0-9.]+ s/) { split(line, a, " "); close(file); return a[1] " " a[4] }
            }
            close(file); return ""
        }
        function accept(file,    line, a) {
            while ((getline line < file) > 0) {
                if (line ~ /^ *acceptance /) { split(line, a, " "); close(file); return a[2] }
            }
            close(file); return ""
        }
        function paren(v, e) { return sprintf("%.3f(%d)", v, e * 1000 + 0.5) }
        BEGIN {
            split(chi(ARGV[1]), i, " "); split(chi(ARGV[2]), h, " "); split(chi(ARGV[3]), f, " ")
            split(timing(ARGV[2]), ht, " "); split(timing(ARGV[3]), ft, " ")
            # IMH: the sampling time covers the evaluation ensemble of i[5] + thermalization proposals;
            # tau_int is per proposal
            c_imh = samp / (i[5] + 512) * 2 * i[3] * 1e6
            c_h = ht[2] / ht[1] * 2 * h[3] * 1e6
            c_f = ft[2] / ft[1] * 2 * f[3] * 1e6
            printf "| %s | %s | %.0f s, %s, %s | %s | %.2f +- %.2f | %.0f | %s | %.2f +- %.2f | %.1f | %.2f | %s | %.2f +- %.2f | %.0f |\n", \
                L, lam, tr, acc, ess, paren(i[1], i[2]), i[3], i[4], c_imh, paren(h[1], h[2]), h[3], h[4], c_h, \
                accept(ARGV[3]) + 0, paren(f[1], f[2]), f[3], f[4], c_f
        }' "$train" "$hmc" "$fhmc"
done
