#!/usr/bin/env bash
# Cost of the shell integration at shell start and exit: `zsh -i -c exit`
# and `bash -i -c exit` with a bare rc file against the same rc file plus
# the block install.sh adds (a private HOME, prefix and AI_SESSIONS_HOME;
# install.sh --binary installs the given ai-sessctl there). The bare zsh rc
# runs compinit itself, as most do (the block then leaves it alone). Runs
# alternate between the two rc files; prints the median (and min..max) of
# N runs each and the median difference, for a shell that started nothing.
# Also the old line, `eval "$(ai-sessctl init SHELL)"`, for reference.
# Usage: bench/shell_start.sh [N]         (default 100)
#   AI_SESSCTL=path/to/ai-sessctl to skip the release build.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${1:-100}
[[ $N =~ ^[0-9]+$ && $N -ge 3 ]] || { echo "bench/shell_start.sh: N must be >= 3" >&2; exit 1; }

if [[ -n ${AI_SESSCTL:-} ]]; then
    BIN=$AI_SESSCTL
else
    (cd "$ROOT" && cargo build --release --quiet --bin ai-sessctl)
    BIN=$ROOT/target/release/ai-sessctl
fi

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/home" "$T/state"
export HOME=$T/home AI_SESSIONS_HOME=$T/state NO_COLOR=1
unset ZDOTDIR BASH_ENV ENV
printf 'autoload -Uz compinit && compinit -i\n' >"$HOME/.zshrc.bare"
: >"$HOME/.bashrc.bare"
cp "$HOME/.zshrc.bare" "$HOME/.zshrc"
cp "$HOME/.bashrc.bare" "$HOME/.bashrc"
: >"$HOME/.profile" # keeps install.sh away from a login file
bash "$ROOT/install.sh" --binary "$BIN" --prefix "$T/prefix" >/dev/null
cp "$HOME/.zshrc" "$HOME/.zshrc.line"
cp "$HOME/.bashrc" "$HOME/.bashrc.line"
for sh in zsh bash; do
    cp "$HOME/.${sh}rc.bare" "$HOME/.${sh}rc.eval"
    # shellcheck disable=SC2016 # the line as a user writes it
    printf 'eval "$(%q init %s)"\n' "$T/prefix/bin/ai-sessctl" "$sh" >>"$HOME/.${sh}rc.eval"
done

# one start+exit in ms, of shell $1 with rc variant $2
once() {
    cp "$HOME/.${1}rc.$2" "$HOME/.${1}rc"
    local t0=$EPOCHREALTIME
    "$1" -i -c exit </dev/null >/dev/null 2>&1
    local t1=$EPOCHREALTIME
    echo $(((${t1/./} - ${t0/./}) / 10))   # hundredths of a ms
}

# median min max of the numbers on stdin, in ms
stats() {
    sort -n | awk '{ v[NR] = $1 } END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%.2f %.2f %.2f\n", m / 100, v[1] / 100, v[NR] / 100 }'
}

# CPU time (user + system, the shell and what it runs) per start+exit, in
# ms, over N runs of shell $1 with rc variant $2: unlike wall time, hardly
# moved by other load on the machine.
cpu() {
    cp "$HOME/.${1}rc.$2" "$HOME/.${1}rc"
    (
        for ((i = 0; i < N; i++)); do "$1" -i -c exit </dev/null >/dev/null 2>&1; done
        times
    ) | awk -v n="$N" 'NR == 2 {
        split($1, u, /[ms]/); split($2, s, /[ms]/)
        printf "%.2f", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * 1000 / n }'
}

printf '%-6s %-34s %22s %12s\n' shell rc 'wall median (min..max) ms' 'CPU ms'
for sh in zsh bash; do
    command -v "$sh" >/dev/null 2>&1 || continue
    for v in bare line eval; do once "$sh" "$v" >/dev/null; done # warm up (cache, compdump)
    : >"$T/bare" ; : >"$T/line" ; : >"$T/eval"
    for ((i = 0; i < N; i++)); do
        for v in bare line eval; do once "$sh" "$v" >>"$T/$v"; done
    done
    read -r bm bmin bmax < <(stats <"$T/bare")
    read -r lm lmin lmax < <(stats <"$T/line")
    read -r em emin emax < <(stats <"$T/eval")
    bc=$(cpu "$sh" bare) lc=$(cpu "$sh" line) ec=$(cpu "$sh" eval)
    printf '%-6s %-34s %8s (%s..%s) %12s\n' "$sh" "bare rc" "$bm" "$bmin" "$bmax" "$bc"
    printf '%-6s %-34s %8s (%s..%s) %12s\n' "$sh" "with the install.sh line" "$lm" "$lmin" "$lmax" "$lc"
    printf '%-6s %-34s %8s (%s..%s) %12s\n' "$sh" "with eval \"\$(ai-sessctl init $sh)\"" "$em" "$emin" "$emax" "$ec"
    printf 'RESULT %s bare %s %s %s line %s %s %s eval %s %s %s added %s cpu %s %s %s added %s\n' "$sh" \
        "$bm" "$bmin" "$bmax" "$lm" "$lmin" "$lmax" "$em" "$emin" "$emax" \
        "$(awk -v a="$lm" -v b="$bm" 'BEGIN { printf "%.2f", a - b }')" "$bc" "$lc" "$ec" \
        "$(awk -v a="$lc" -v b="$bc" 'BEGIN { printf "%.2f", a - b }')"
done
