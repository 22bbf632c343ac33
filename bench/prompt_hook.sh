#!/usr/bin/env bash
# shellcheck disable=SC2016  # the benchmark bodies are single-quoted on purpose
# Cost of the prompt hook of the shell layer (shell/ai-sessions.{zsh,bash}):
# with a prompt.tsv of 100 (then 5) instances in a temp AI_SESSIONS_HOME and
# $PWD inside one of the projects, time N calls of the precmd hook inside zsh and
# inside bash against N calls of an empty function, both
#   - steady: prompt.tsv unchanged since the last prompt (the common case)
#   - recompute: cache dropped before every call (prompt.tsv or $PWD changed)
# and count the forks the hook makes (strace, when installed): the number of
# clone/fork calls of a run with N hook calls minus a run with none.
# Usage: bench/prompt_hook.sh [N]      (default 1000)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${1:-1000}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

export AI_SESSIONS_HOME="$T/state" LANG=C.UTF-8
mkdir -p "$AI_SESSIONS_HOME"
# what `ai-sessctl init` writes: the hook compares it with the loaded agents
printf 'claude gemini\n' >"$AI_SESSIONS_HOME/agents.list"
for tpl in zsh bash; do
    text=$(<"$ROOT/shell/ai-sessions.$tpl")
    text=${text//@AI_SESSCTL@/"'/bin/true'"}
    text=${text//@AI_AGENTS@/"claude gemini"}
    printf '%s\n' "$text" >"$T/ai-sessions.$tpl"
done
modes=(claude gemini)
states=(running running running paused)
write_tsv() { # write_tsv COUNT
    local i
    for ((i = 1; i <= $1; i++)); do
        mkdir -p "$T/projects/p$i/src"
        printf '%s\t%s\t%s\t%s\t%s\n' "$T/projects/p$i" "p$i-${modes[i % 2]}-$i" \
            "${modes[i % 2]}" "${states[i % 4]}" "$((7000 + i))"
    done >"$AI_SESSIONS_HOME/prompt.tsv"
    # an old mtime: zsh trusts its (inode, size, mtime) cache only for files
    # older than 2 s
    touch -d '-1 hour' "$AI_SESSIONS_HOME/prompt.tsv"
}
WORK="$T/projects/p2/src"

ZSH_BENCH='
zmodload zsh/datetime
source "$1"; cd "$2"; N=$3
zshexit_functions=()
empty() { }
_ai_sessions_precmd
t0=$EPOCHREALTIME; repeat N { empty }
t1=$EPOCHREALTIME; repeat N { _ai_sessions_precmd }
t2=$EPOCHREALTIME; repeat N { _AI_SESSIONS_KEY=; _ai_sessions_precmd }
t3=$EPOCHREALTIME
(( N > 0 )) || N=1
printf "%s %s %s %s\n" $(( (t1-t0)*1e6/N )) $(( (t2-t1)*1e6/N )) $(( (t3-t2)*1e6/N )) "$AI_SESSIONS_PROMPT"
'
BASH_BENCH='
source "$1"; cd "$2"; N=$3
trap - EXIT
empty() { :; }
_ai_sessions_precmd
t0=$EPOCHREALTIME; for ((i = 0; i < N; i++)); do empty; done
t1=$EPOCHREALTIME; for ((i = 0; i < N; i++)); do _ai_sessions_precmd; done
t2=$EPOCHREALTIME; for ((i = 0; i < N; i++)); do _AI_SESSIONS_KEY=; _ai_sessions_precmd; done
t3=$EPOCHREALTIME
us() { local a=${1/./} b=${2/./}; echo $(( (10#$b - 10#$a) / (N > 0 ? N : 1) )); }
printf "%s %s %s %s\n" "$(us "$t0" "$t1")" "$(us "$t1" "$t2")" "$(us "$t2" "$t3")" "$AI_SESSIONS_PROMPT"
'
run_shell() { # run_shell zsh|bash N [wrapper...]
    local sh=$1 n=$2
    shift 2
    if [[ $sh == zsh ]]; then
        "$@" zsh -f -c "$ZSH_BENCH" _ "$T/ai-sessions.zsh" "$WORK" "$n"
    else
        "$@" bash --norc --noprofile -c "$BASH_BENCH" _ "$T/ai-sessions.bash" "$WORK" "$n"
    fi
}
forks() { # forks zsh|bash N -> number of clone/fork calls of the whole run
    run_shell "$1" "$2" strace -f -qq --seccomp-bpf -e trace=clone,clone3,fork,vfork -o "$T/strace.$1.$2" >/dev/null
    grep -cE '^[0-9]+ +(clone3?|v?fork)\(' "$T/strace.$1.$2" || true
}

for count in 100 5; do
    write_tsv "$count"
    printf '\n%d calls, prompt.tsv with %d instances (%d bytes), PWD in a project\n' \
        "$N" "$count" "$(wc -c <"$AI_SESSIONS_HOME/prompt.tsv")"
    printf '%-5s %9s %9s %13s %11s %15s  %s\n' shell 'empty µs' 'hook µs' 'recompute µs' \
        'hook/empty' 'forks per call' segment
    for sh in zsh bash; do
        read -r e h r seg < <(run_shell "$sh" "$N")
        if command -v strace >/dev/null 2>&1; then
            f0=$(forks "$sh" 0)
            f1=$(forks "$sh" "$N")
            fk="$((f1 - f0)) / $((2 * N))"
        else
            fk='n/a (no strace)'
        fi
        ratio=$(awk -v h="$h" -v e="$e" 'BEGIN { printf "%.1fx", (e > 0 ? h / e : 0) }')
        printf '%-5s %9.1f %9.1f %13.1f %11s %15s  %s\n' "$sh" "$e" "$h" "$r" "$ratio" "$fk" "$seg"
    done
done
