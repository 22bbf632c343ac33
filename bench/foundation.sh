#!/usr/bin/env bash
# Cost of the foundation commands against the cost of starting a process:
# with a registry of 100 instances (all stopped, so no engine is involved)
# in a temp AI_SESSIONS_HOME, time
#   - `true`                                  (the floor: fork + exec)
#   - `ai-sessctl list --json`                (goal: <= 3x true)
#   - `ai-sessctl port alloc --for bench-claude` (goal: <= 5x true; the
#     registry is reset before every run, so each run does the same work:
#     lock, read, bind check, atomic write + fsync)
# with hyperfine when installed, else a `date +%s%N` loop.
# Usage: bench/foundation.sh [RUNS]     (default 200)
#        AI_SESSCTL=/path/to/ai-sessctl bench/foundation.sh   (skip the build)
#        NO_HYPERFINE=1 bench/foundation.sh                   (the plain loop)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${1:-200}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

if [[ -n ${AI_SESSCTL-} ]]; then
    BIN=$AI_SESSCTL
else
    echo "building release …" >&2
    cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
    BIN="$ROOT/target/release/ai-sessctl"
fi
TRUE=$(command -v true)
[[ $TRUE == /* ]] || TRUE=/bin/true

export AI_SESSIONS_HOME="$T/state" NO_COLOR=1
mkdir -p "$AI_SESSIONS_HOME"
chmod 700 "$AI_SESSIONS_HOME"
cat >"$AI_SESSIONS_HOME/config.toml" <<'EOF'
[networking]
port_range = [41000, 41999]
EOF

# 100 stopped instances in the seed's schema, plus what we add.
{
    printf '{\n  "version": 1,\n  "instances": {\n'
    for ((i = 1; i <= 100; i++)); do
        mode=claude
        ((i % 2)) && mode=gemini
        id="project$i-$mode"
        ((i > 1)) && printf ',\n'
        printf '    "%s": {"id": "%s", "project_path": "/home/dev/src/project%d", "project_name": "project%d", "mode": "%s", "status": "stopped", "port": %d, "runtime": "docker", "image": "ai-sessions/%s:latest", "resources": {"memory_limit": "1Gi", "cpu_limit": "500m"}, "timestamps": {"created": "2025-12-11T10:30:00Z", "started": "2025-12-11T10:30:05Z", "stopped": "2025-12-11T12:00:00Z"}, "config": {"model": "m", "max_tokens": 4096, "temperature": 0.7}, "exit_code": 0, "status_reason": "agent exited", "restarts": 0}' \
            "$id" "$id" "$i" "$i" "$mode" $((41000 + i)) "$mode"
    done
    printf '\n  }\n}\n'
} >"$T/registry.base.json"
cp "$T/registry.base.json" "$AI_SESSIONS_HOME/registry.json"

# Sanity: the planted registry is valid and lists 100 entries.
"$BIN" registry check >/dev/null
n=$("$BIN" list --quiet | wc -l)
[[ $n -eq 100 ]] || {
    echo "expected 100 instances, list shows $n" >&2
    exit 1
}

# mean_ms NAME PREPARE COMMAND...: prints "WALL CPU", the mean wall time and
# the mean user+system CPU time of COMMAND in ms (CPU is "-" without
# hyperfine). CPU time is the steadier figure on a busy machine. PREPARE (a
# command line without shell syntax, or "") runs before each run.
mean_ms() {
    local name=$1 prepare=$2
    shift 2
    if [[ -z ${NO_HYPERFINE-} ]] && command -v hyperfine >/dev/null 2>&1; then
        local args=(--style none --warmup 10 --runs "$RUNS" -N --export-csv "$T/$name.csv")
        [[ -n $prepare ]] && args+=(--prepare "$prepare")
        hyperfine "${args[@]}" "$(printf '%q ' "$@")" >/dev/null
        # command,mean,stddev,median,user,system,min,max (seconds)
        awk -F, 'NR == 2 { printf "%.3f %.3f\n", $2 * 1000, ($5 + $6) * 1000 }' "$T/$name.csv"
    else
        # $EPOCHREALTIME (bash 5) reads the clock without a fork; `date`
        # would add its own fork + exec to every sample.
        local i start end total=0
        for ((i = 0; i < RUNS; i++)); do
            # shellcheck disable=SC2086 # PREPARE is a plain word list
            [[ -n $prepare ]] && $prepare
            if [[ -n ${EPOCHREALTIME-} ]]; then
                start=${EPOCHREALTIME/[.,]/}
                "$@" >/dev/null
                end=${EPOCHREALTIME/[.,]/}
                total=$((total + 10#$end - 10#$start))
            else
                start=$(date +%s%N)
                "$@" >/dev/null
                end=$(date +%s%N)
                total=$((total + (end - start) / 1000))
            fi
        done
        awk -v t="$total" -v n="$RUNS" 'BEGIN { printf "%.3f -\n", t / n / 1e3 }'
    fi
}

reset="cp $T/registry.base.json $AI_SESSIONS_HOME/registry.json"
read -r t_true c_true < <(mean_ms true "" "$TRUE")
read -r t_list c_list < <(mean_ms list "" "$BIN" list --json)
read -r t_alloc c_alloc < <(mean_ms alloc "$reset" "$BIN" port alloc --for bench-claude)
# The allocation really happened (and the reset really reset).
"$BIN" registry check >/dev/null
grep -q bench-claude "$AI_SESSIONS_HOME/registry.json"

echo
echo "ai-sessctl foundation, 100 registered instances, $RUNS runs each ($(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg))"
printf '%-40s %9s %7s %9s %7s %6s  %s\n' command "wall ms" "x true" "CPU ms" "x true" goal verdict
row() { # row LABEL WALL CPU GOAL; the verdict is on wall time
    awk -v l="$1" -v t="$2" -v c="$3" -v g="$4" -v bt="$t_true" -v bc="$c_true" 'BEGIN {
        r = t / bt
        rc = (c == "-" || bc == "-") ? "-" : sprintf("%.2f", c / bc)
        v = (g == "-") ? "" : (r <= g ? "ok" : "MISSED")
        printf "%-40s %9.3f %7.2f %9s %7s %6s  %s\n", l, t, r, c, rc, (g == "-" ? "-" : "<=" g), v
    }'
}
row "true" "$t_true" "$c_true" -
row "ai-sessctl list --json" "$t_list" "$c_list" 3
row "ai-sessctl port alloc --for bench-claude" "$t_alloc" "$c_alloc" 5
