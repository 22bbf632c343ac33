#!/usr/bin/env bash
# What the shell integration costs a shell: the CPU time (user + system,
# from wait4's rusage: the shell and anything it runs) of `zsh -i -c exit`
# and `bash -i -c exit` with a bare rc file, against the same rc file plus
# exactly the block install.sh writes (a private HOME, prefix and
# AI_SESSIONS_HOME; install.sh --binary installs the given ai-sessctl
# there). The bare zsh rc is `autoload -Uz compinit; compinit`, as most are
# (the block then leaves compinit alone); the bare bashrc is empty.
#
# `-c exit` is a shell that never draws a prompt (what editors and tools
# that read a login environment start); "prompt" rows feed `exit` on stdin
# instead, so the shell also runs its prompt hooks once, as a terminal's
# shell does before you type. The eval line, `eval "$(ai-sessctl init SH)"`,
# is shown for reference. Runs of the variants are interleaved; each is
# measured per run (CPU time, hardly moved by other load on the machine,
# unlike wall time); prints the median of N runs (and the quartiles) and
# the difference of the medians.
#
# Usage: bench/shell_start.sh [N]         (default 81)
#   AI_SESSCTL=path/to/ai-sessctl to skip the release build.
#   SHELLS="zsh" to measure one shell.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${1:-81}
[[ $N =~ ^[0-9]+$ && $N -ge 3 ]] || { echo "bench/shell_start.sh: N must be >= 3" >&2; exit 1; }
command -v python3 >/dev/null || { echo "bench/shell_start.sh: needs python3 (for wait4)" >&2; exit 1; }

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
printf 'autoload -Uz compinit; compinit\n' >"$HOME/.zshrc.bare"
: >"$HOME/.bashrc.bare"
cp "$HOME/.zshrc.bare" "$HOME/.zshrc"
cp "$HOME/.bashrc.bare" "$HOME/.bashrc"
printf '. ~/.bashrc\n' >"$HOME/.profile" # keeps install.sh away from a login file
bash "$ROOT/install.sh" --binary "$BIN" --prefix "$T/prefix" >/dev/null
cp "$HOME/.zshrc" "$HOME/.zshrc.line"
cp "$HOME/.bashrc" "$HOME/.bashrc.line"
for sh in zsh bash; do
    cp "$HOME/.${sh}rc.bare" "$HOME/.${sh}rc.eval"
    # shellcheck disable=SC2016 # the line as a user writes it
    printf 'eval "$(%q init %s)"\n' "$T/prefix/bin/ai-sessctl" "$sh" >>"$HOME/.${sh}rc.eval"
done
printf 'exit\n' >"$T/exit.in"

# Runs shell $2 N=$1 times per variant (interleaved: bare line eval, bare
# line eval, ...), in mode $3 (`c`: -i -c exit; `prompt`: -i, `exit` on
# stdin), copying ~/.SHrc.VARIANT to ~/.SHrc before each run (outside the
# measure). posix_spawn, so the child does not pay for tearing down a copy
# of python. Prints one line per variant: name median q1 q3 (ms of CPU).
measure() {
    python3 - "$@" "$HOME" "$T/exit.in" <<'EOF'
import os, shutil, statistics, sys
n, sh, mode, home, exit_in = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
variants = ["bare", "line", "eval"]
argv = [sh, "-i", "-c", "exit"] if mode == "c" else [sh, "-i"]
stdin = "/dev/null" if mode == "c" else exit_in
path = shutil.which(sh)
def once(v):
    shutil.copyfile(f"{home}/.{sh}rc.{v}", f"{home}/.{sh}rc")
    acts = [(os.POSIX_SPAWN_OPEN, 0, stdin, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0)]
    pid = os.posix_spawn(path, argv, os.environ, file_actions=acts)
    _, status, ru = os.wait4(pid, 0)
    if status != 0:
        sys.exit(f"{sh} ({v}) exited with {status}")
    return (ru.ru_utime + ru.ru_stime) * 1000
for v in variants * 2:       # warm up: the cache file, compinit's dump
    once(v)
runs = {v: [] for v in variants}
for _ in range(n):
    for v in variants:
        runs[v].append(once(v))
for v in variants:
    q = statistics.quantiles(runs[v], n=4)
    print(v, f"{statistics.median(runs[v]):.2f}", f"{q[0]:.2f}", f"{q[2]:.2f}")
EOF
}

printf 'CPU ms (user+sys) per start+exit, median (q1..q3) of %s runs each\n' "$N"
printf '%-5s %-7s %-36s %22s %8s\n' shell run rc median 'added'
for sh in ${SHELLS:-zsh bash}; do
    command -v "$sh" >/dev/null 2>&1 || continue
    for mode in c prompt; do
        declare -A med=()
        while read -r v m q1 q3; do
            med[$v]=$m
            case $v in
                bare) label="bare rc" ;;
                line) label="with the block install.sh writes" ;;
                eval) label="with eval \"\$(ai-sessctl init $sh)\"" ;;
            esac
            added=$(awk -v a="$m" -v b="${med[bare]}" 'BEGIN { printf "%+.2f", a - b }')
            [[ $v == bare ]] && added=
            printf '%-5s %-7s %-36s %8s (%s..%s) %8s\n' "$sh" "${mode/#c/-c exit}" "$label" "$m" "$q1" "$q3" "$added"
        done < <(measure "$N" "$sh" "$mode")
        printf 'RESULT %s %s bare %s line %s eval %s added %s\n' "$sh" "$mode" \
            "${med[bare]}" "${med[line]}" "${med[eval]}" \
            "$(awk -v a="${med[line]}" -v b="${med[bare]}" 'BEGIN { printf "%.2f", a - b }')"
        unset med
    done
done
