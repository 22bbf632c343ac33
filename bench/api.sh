#!/usr/bin/env bash
# Load on the REST API: GET /api/v1/instances with a registry of 100 stopped
# instances (planted in a temp AI_SESSIONS_HOME, so no engine is involved)
# under CONNECTIONS concurrent keep-alive clients on loopback, with wrk; then
# the dashboard's static page (GET /) the same way, as the baseline.
# Prints requests/s, p50/p90/p99 latency of both, and the resident memory of
# `serve` (VmRSS from /proc, and its peak VmHWM) before and after the load.
# Goals: p99 of the list within 2x the p99 of the static page; RSS under
# 30 MB after the load.
# Usage: bench/api.sh [SECONDS] [CONNECTIONS]     (default 10 s, 50)
#   AI_SESSCTL=path/to/ai-sessctl to skip the release build.
# Needs wrk (apt-get install -y wrk). Traffic goes to 127.0.0.1 only.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECONDS_RUN=${1:-10}
CONNS=${2:-50}
INSTANCES=100
RSS_GOAL_KB=$((30 * 1024))

die() { printf 'bench/api.sh: error: %s\n' "$*" >&2; exit 1; }

[[ $SECONDS_RUN =~ ^[0-9]+$ && $SECONDS_RUN -ge 1 && $SECONDS_RUN -le 120 ]] ||
    die "SECONDS must be 1-120"
[[ $CONNS =~ ^[0-9]+$ && $CONNS -ge 1 && $CONNS -le 1000 ]] || die "CONNECTIONS must be 1-1000"
command -v wrk >/dev/null 2>&1 || die "wrk is not installed (apt-get install -y wrk)"

if [[ -n ${AI_SESSCTL:-} ]]; then
    BIN=$AI_SESSCTL
else
    echo "building the release binary ..."
    (cd "$ROOT" && cargo build --release --quiet --bin ai-sessctl)
    BIN=$ROOT/target/release/ai-sessctl
fi
[[ -x $BIN ]] || die "$BIN is not executable"

T=$(mktemp -d)
serve_pid=
cleanup() {
    if [[ -n $serve_pid ]]; then
        kill -TERM "$serve_pid" 2>/dev/null || true
        wait "$serve_pid" 2>/dev/null || true
    fi
    rm -rf "$T"
}
trap cleanup EXIT

export AI_SESSIONS_HOME="$T/state" NO_COLOR=1
mkdir -p "$AI_SESSIONS_HOME" "$T/projects"

# The registry: 100 stopped instances of real (empty) project dirs.
{
    printf '{"version": 1, "instances": {'
    for ((i = 1; i <= INSTANCES; i++)); do
        mode=claude
        ((i % 3 == 0)) && mode=gemini
        name=$(printf 'proj%03d' "$i")
        id="$name-$mode"
        mkdir -p "$T/projects/$name"
        ((i > 1)) && printf ','
        printf '"%s": {"id": "%s", "project_path": "%s", "project_name": "%s",' \
            "$id" "$id" "$T/projects/$name" "$name"
        printf ' "mode": "%s", "status": "stopped", "port": %d, "runtime": "docker",' \
            "$mode" $((9000 + i))
        printf ' "container_id": null, "exit_code": 143,'
        printf ' "resources": {"memory_limit": "1Gi", "cpu_limit": "500m"},'
        printf ' "timestamps": {"created": "2026-01-01T00:00:00Z", "started": "2026-01-01T00:00:01Z",'
        printf ' "stopped": "2026-01-01T01:00:00Z"}, "config": {"model": "m"}}'
    done
    printf '}}\n'
} >"$AI_SESSIONS_HOME/registry.json"

"$BIN" serve --addr 127.0.0.1:0 >"$T/serve.out" 2>"$T/serve.err" &
serve_pid=$!
addr=
for _ in $(seq 1 100); do
    addr=$(sed -n 's#^ai-sessions API and dashboard on http://\(.*\)/$#\1#p' "$T/serve.out")
    [[ -n $addr ]] && break
    [[ -d /proc/$serve_pid ]] || break
    sleep 0.1
done
[[ -n $addr ]] || die "serve did not start: $(cat "$T/serve.err")"
token=$(<"$AI_SESSIONS_HOME/api.token")
url="http://$addr/api/v1/instances"

rss() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$serve_pid/status"; }

# Sanity: one request by hand (bash's /dev/tcp), 200 with 100 instances.
exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}"
printf 'GET /api/v1/instances HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n' \
    "$addr" "$token" >&3
reply=$(cat <&3)
exec 3<&-
[[ $reply == "HTTP/1.1 200"* ]] || die "sanity request failed: ${reply%%$'\r'*}"
count=$(grep -o '"status":"stopped"' <<<"$reply" | wc -l)
((count == INSTANCES)) || die "expected $INSTANCES instances in the reply, got $count"
bytes=$(printf '%s' "${reply#*$'\r\n\r\n'}" | wc -c)

rss_idle=$(rss VmRSS)
# Warm-up, then the measured run.
wrk -t2 -c"$CONNS" -d2s -H "Authorization: Bearer $token" "$url" >/dev/null
wrk -t2 -c"$CONNS" -d"${SECONDS_RUN}s" --latency -H "Authorization: Bearer $token" "$url" >"$T/wrk.out"
wrk -t2 -c"$CONNS" -d"${SECONDS_RUN}s" --latency "http://$addr/" >"$T/wrk-static.out"
rss_after=$(rss VmRSS)
rss_peak=$(rss VmHWM)
threads=$(awk '$1 == "Threads:" {print $2}' "/proc/$serve_pid/status")

# a wrk latency (e.g. 850.00us, 1.20ms, 1.01s) in ms
ms() { awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
    printf "%.3f", n }'; }
static_p99=$(awk '$1 == "99%" {print $2}' "$T/wrk-static.out")
static_p50=$(awk '$1 == "50%" {print $2}' "$T/wrk-static.out")
static_rps=$(awk '$1 == "Requests/sec:" {print $2}' "$T/wrk-static.out")

rps=$(awk '$1 == "Requests/sec:" {print $2}' "$T/wrk.out")
total=$(awk '/requests in/ {print $1}' "$T/wrk.out")
p50=$(awk '$1 == "50%" {print $2}' "$T/wrk.out")
p90=$(awk '$1 == "90%" {print $2}' "$T/wrk.out")
p99=$(awk '$1 == "99%" {print $2}' "$T/wrk.out")
errors=$(awk '/Non-2xx|Socket errors/' "$T/wrk.out" "$T/wrk-static.out")

echo
echo "GET /api/v1/instances, $INSTANCES instances ($bytes bytes of JSON), $CONNS connections, ${SECONDS_RUN}s, wrk -t2, $(nproc) cores"
printf '  requests/s   %s   (%s requests)\n' "$rps" "$total"
printf '  latency      p50 %s   p90 %s   p99 %s\n' "$p50" "$p90" "$p99"
printf '  static page  GET / (%s bytes): requests/s %s, p50 %s, p99 %s\n' \
    "$(wc -c <"$ROOT/web/dashboard.html")" "$static_rps" "$static_p50" "$static_p99"
ratio=$(awk -v a="$(ms "$p99")" -v b="$(ms "$static_p99")" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
if awk -v r="$ratio" 'BEGIN { exit !(r <= 2) }'; then
    echo "  p99 goal     list within 2x the static page: met (${ratio}x)"
else
    echo "  p99 goal     list within 2x the static page: MISSED (${ratio}x)"
fi
printf '  serve RSS    idle %d KiB, after load %d KiB, peak %d KiB (%s threads)\n' \
    "$rss_idle" "$rss_after" "$rss_peak" "$threads"
if [[ -n $errors ]]; then
    echo "  errors:      $errors"
fi
if ((rss_after < RSS_GOAL_KB)); then
    echo "  RSS goal     under $((RSS_GOAL_KB / 1024)) MB: met"
else
    echo "  RSS goal     under $((RSS_GOAL_KB / 1024)) MB: MISSED"
fi
[[ -z $errors ]] || die "some requests failed"
