#!/usr/bin/env bash
# A/B of the training step between two builds, interleaved: rounds of A B B A, each a run of
# the train_step bench (`TRAIN_STEP_SUMMARY_ONLY=1`), so slow moments of a shared machine hit
# both sides alike. Prints per case the median and the minimum of each side's medians and the
# paired speed-up of B over A (geometric mean of the per-round ratios, and how many of them
# favour B). The dev machines' speed moves by 10-30% within minutes: trust only effects larger
# than the spread of the paired ratios.
#
# usage: scripts/ab_train_step.sh A B [ROUNDS=4] [CASES]
#   A, B:   a commit (anything `git rev-parse` takes; `WORKTREE` = the working tree as it is),
#           optionally with environment settings for that side after a colon, comma-separated:
#           `HEAD:LATFLOW_NO_FFT=1`, `WORKTREE:LATFLOW_FFT_MIN_BATCH=32,LATFLOW_NO_WINOGRAD=1`
#   CASES:  the bench's TRAIN_STEP_CASES, e.g. phi4/1024,u1/1024 (default: all four)
#
# Builds each commit's bench once, in target/ab/<commit>/ (a worktree and its own target
# directory: the first build of a commit takes a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
a=${1:?usage: scripts/ab_train_step.sh A B [ROUNDS] [CASES]}
b=${2:?usage: scripts/ab_train_step.sh A B [ROUNDS] [CASES]}
rounds=${3:-4}
cases=${4:-}
case $rounds in '' | *[!0-9]* | 0) echo "ab_train_step: ROUNDS must be a positive integer, got '$rounds'" >&2; exit 2 ;; esac

# the bench executable of a commit (built on first use)
bench_of() {
  local rev=$1 dir
  if [ "$rev" = WORKTREE ]; then
    dir=$root
  else
    local sha
    sha=$(git rev-parse --verify --quiet "$rev^{commit}") || { echo "ab_train_step: '$rev' is not a commit" >&2; exit 2; }
    dir=$root/target/ab/$sha
    if [ ! -d "$dir" ]; then
      git worktree add --detach "$dir" "$sha" > /dev/null
    fi
  fi
  (cd "$dir" && cargo bench --bench train_step --no-run --message-format=json 2> /dev/null) \
    | sed -n 's/.*"executable":"\([^"]*train_step[^"]*\)".*/\1/p' | tail -1
}

side() { # "REV[:ENV,ENV]" -> "exe<TAB>env words"
  local spec=$1 rev envs exe
  rev=${spec%%:*}
  envs=""
  [ "$spec" != "$rev" ] && envs=${spec#*:}
  exe=$(bench_of "$rev") || exit $?
  [ -x "$exe" ] || { echo "ab_train_step: no train_step bench built for '$rev'" >&2; exit 1; }
  printf '%s\t%s\n' "$exe" "${envs//,/ }"
}

sa=$(side "$a")
sb=$(side "$b")
IFS=$'\t' read -r exe_a env_a <<< "$sa"
IFS=$'\t' read -r exe_b env_b <<< "$sb"
date -u; lscpu | grep 'Model name' || true
grep -m1 -E '^cpu family' /proc/cpuinfo || true
echo "A = $a ($exe_a)"; echo "B = $b ($exe_b)"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
run() { # side exe envs round
  # shellcheck disable=SC2086 # the settings are words
  (cd "$root/benches" && env TRAIN_STEP_SUMMARY_ONLY=1 ${cases:+TRAIN_STEP_CASES=$cases} $3 "$2" --bench 2> /dev/null) \
    | awk -v s="$1" -v r="$4" '($1 == "phi4" || $1 == "u1") && NF >= 3 { print s, r, $1 "/" $2, $3 }' >> "$log"
}
for r in $(seq 1 "$rounds"); do
  run A "$exe_a" "$env_a" "$r"
  run B "$exe_b" "$env_b" "$r"
  run B "$exe_b" "$env_b" "$r"
  run A "$exe_a" "$env_a" "$r"
  echo "round $r of $rounds done"
done

[ -s "$log" ] || { echo "ab_train_step: no case ran (CASES '$cases': model/batch pairs the bench knows, e.g. phi4/1024,u1/64)" >&2; exit 2; }
echo
echo "case          A median   A min   B median   B min   B speed-up: medians, paired (geometric mean), rounds B faster"
awk '
  { v[$1, $3, ++n[$1, $3]] = $4; cases[$3] = 1 }
  function med(s, c,   k, i, j, t, a) {
    k = n[s, c]; for (i = 1; i <= k; i++) a[i] = v[s, c, i]
    for (i = 2; i <= k; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
  }
  function mn(s, c,   k, i, m) { k = n[s, c]; m = v[s, c, 1]; for (i = 2; i <= k; i++) if (v[s, c, i] < m) m = v[s, c, i]; return m }
  END {
    for (c in cases) {
      k = n["A", c] < n["B", c] ? n["A", c] : n["B", c]
      if (k == 0) continue
      lg = 0; w = 0
      for (i = 1; i <= k; i++) { q = v["A", c, i] / v["B", c, i]; lg += log(q); if (q > 1) w++ }
      printf "%-12s %9.2f %7.2f %10.2f %7.2f   %.3fx, %.3fx, %d of %d\n", c, med("A", c), mn("A", c), med("B", c), mn("B", c), med("A", c) / med("B", c), exp(lg / k), w, k
    }
  }' "$log" | sort
