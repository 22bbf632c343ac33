#!/usr/bin/env bash
# shellcheck disable=SC2016  # shell text is sent, unexpanded, to other shells on purpose
# Checks the sourced shell layer (shell/ai-sessions.{zsh,bash}, the plugin
# file) WITHOUT the Rust binary: a stub ai-sessctl that logs its argv stands
# in for it, the templates get their placeholders filled in like
# `ai-sessctl init` does, and real interactive zsh and bash are driven in a
# private tmux server. Needs: bash, zsh, tmux, shellcheck (skipped if absent).
# Usage: tests/shell/check.sh [-v]      exit status 0 = all checks passed
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VERBOSE=0
[[ ${1-} == -v ]] && VERBOSE=1
START=$SECONDS
FAILS=0
PASSES=0

ok() { PASSES=$((PASSES + 1)); if ((VERBOSE)); then printf 'ok   %s\n' "$*"; fi; }
CUR= # tmux session under test, for failure reports
fail() {
    FAILS=$((FAILS + 1))
    printf 'FAIL %s\n' "$*" >&2
    if [[ -n $CUR ]]; then printf '     last line of %s: %s\n' "$CUR" "$(last_line "$CUR")" >&2; fi
}
check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}

for tool in zsh tmux; do
    command -v "$tool" >/dev/null 2>&1 || { echo "check.sh: $tool is required" >&2; exit 2; }
done

# A space and a single quote in every path on purpose (binary path, project).
T=$(mktemp -d "${TMPDIR:-/tmp}/ais check 'q'.XXXXXX")
SOCK="$T/tmux.sock"
cleanup() {
    tmux -S "$SOCK" kill-server >/dev/null 2>&1 || true
    if [[ -n ${AIS_KEEP-} ]]; then
        echo "kept $T" >&2
    else # shells killed above may still be running their exit hooks
        rm -rf "$T" 2>/dev/null || { sleep 0.5; rm -rf "$T"; }
    fi
}
trap cleanup EXIT

BIN_DIR="$T/bin dir"
STUB="$BIN_DIR/ai-sessctl"
LOG="$T/calls.log"
STATE="$T/state"
HOME_DIR="$T/home"
PROJ="$T/proj with space 'and quote'"
mkdir -p "$BIN_DIR" "$STATE" "$HOME_DIR" "$PROJ/sub" "$T/zdot"
: >"$LOG"

# shell-single-quote, as `ai-sessctl init` does for @AI_SESSCTL@
shq() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }

# fill the placeholders (quoted replacement: no & or \ surprises)
render() { # render TEMPLATE OUT
    local text
    text=$(<"$1")
    text=${text//@AI_SESSCTL@/"$(shq "$STUB")"}
    text=${text//@AI_AGENTS@/"claude gemini"}
    printf '%s\n' "$text" >"$2"
}
render "$ROOT/shell/ai-sessions.zsh" "$T/ai-sessions.zsh"
render "$ROOT/shell/ai-sessions.bash" "$T/ai-sessions.bash"

# --- stub binary: logs argv as <a><b c>..., answers list/completions/init
cat >"$STUB" <<EOF
#!/usr/bin/env bash
T=$(printf %q "$T")
EOF
cat >>"$STUB" <<'EOF'
{ printf '%s' "${AIS_TAG:-}"; printf '<%s>' "$@"; printf '\n'; } >>"$T/calls.log"
case ${1-} in
list)
    case " $* " in
    *" --status all "*) cat "$T/ids_all" 2>/dev/null ;;
    *" --quiet "*) cat "$T/ids" 2>/dev/null ;;
    esac ;;
run)
    # as the binary does: the marker that makes this shell's exit hook run
    # shell-exit
    [[ ${3-} == --shell-pid ]] && mkdir -p "$AI_SESSIONS_HOME/shells" && : >"$AI_SESSIONS_HOME/shells/${4-}"
    [[ ${!#} == __rc7 ]] && exit 7 ;;
completions)
    case ${2-} in
    zsh) printf '%s\n' '_ais_fake_sessctl() { compadd -- lazyloaded; }' \
        'compdef _ais_fake_sessctl ai-sessctl' ;;
    bash) printf '%s\n' '_ais_fake_sessctl() { COMPREPLY=(lazyloaded); }' \
        'complete -F _ais_fake_sessctl ai-sessctl' ;;
    esac ;;
init) cat "$T/ai-sessions.${2-}" ;;
esac
exit 0
EOF
# the "real" agent CLI, for `command claude`
cat >"$BIN_DIR/claude" <<EOF
#!/bin/sh
printf 'real-claude %s\n' "\$*" >>$(printf %q "$LOG")
EOF
chmod +x "$STUB" "$BIN_DIR/claude"
printf '%s\n' other-claude-1 proj-claude-2 >"$T/ids"
printf '%s\n' other-claude-1 proj-claude-2 old-stopped-9 >"$T/ids_all"

write_tsv() { # write_tsv LINE... (atomically, like the binary)
    if (($#)); then printf '%s\n' "$@" >"$STATE/.prompt.tmp"; else : >"$STATE/.prompt.tmp"; fi
    mv -f "$STATE/.prompt.tmp" "$STATE/prompt.tsv"
}
TAB=$'\t'
TSV_RUNNING=(
    "/srv/other${TAB}other-claude-1${TAB}claude${TAB}running${TAB}7001"
    "$PROJ${TAB}proj-claude-2${TAB}claude${TAB}running${TAB}7002"
    "$PROJ${TAB}proj-gemini-3${TAB}gemini${TAB}paused${TAB}7003"
)

# ------------------------------------------------------------ static checks
check "zsh -n ai-sessions.zsh" zsh -n "$ROOT/shell/ai-sessions.zsh"
check "zsh -n ai-sessions.plugin.zsh" zsh -n "$ROOT/shell/ai-sessions.plugin.zsh"
check "bash -n ai-sessions.bash" bash -n "$ROOT/shell/ai-sessions.bash"
if command -v shellcheck >/dev/null 2>&1; then
    check "shellcheck ai-sessions.bash" shellcheck "$ROOT/shell/ai-sessions.bash"
    check "shellcheck rendered ai-sessions.bash" shellcheck -s bash "$T/ai-sessions.bash"
    check "shellcheck check.sh" shellcheck "$ROOT/tests/shell/check.sh"
else
    echo "note: shellcheck not installed, skipped" >&2
fi

# ----------------------------------------------------- non-interactive checks
export AI_SESSIONS_HOME="$STATE"
write_tsv "${TSV_RUNNING[@]}"
# under set -euo pipefail / nounset+errexit: load twice, run hook, completion
out=$(cd "$PROJ/sub" && LANG=C.UTF-8 bash -euo pipefail -c '
    source "$1"; source "$1"
    _ai_sessions_precmd; _ai_sessions_precmd
    printf "%s|" "$AI_SESSIONS_PROMPT"
    COMP_WORDS=(ai-stop proj-c); COMP_CWORD=1; _ai_sessions_complete ai-stop proj-c ai-stop
    printf "%s|" "${COMPREPLY[@]}"
    AI_SESSIONS_HOME=/nonexistent; _ai_sessions_precmd; printf "[%s]|" "$AI_SESSIONS_PROMPT"
    trap - EXIT; echo done' _ "$T/ai-sessions.bash" 2>&1) || true
check "bash -eu: load twice, hook, completion (got: $out)" \
    test "$out" = '\[\e[36m\]ai:3 claude● gemini◐\[\e[0m\]|proj-claude-2|[]|done'
out=$(cd "$PROJ/sub" && LANG=C.UTF-8 zsh -f -c '
    setopt nounset errexit pipefail
    source "$1"; source "$1"
    _ai_sessions_precmd; _ai_sessions_precmd
    print -rn -- "$AI_SESSIONS_PROMPT|$RPROMPT|"
    AI_SESSIONS_HOME=/nonexistent; _ai_sessions_precmd; print -rn -- "[$AI_SESSIONS_PROMPT]|"
    print -rn -- ${#precmd_functions} ${#zshexit_functions}
    zshexit_functions=(); echo "|done"' _ "$T/ai-sessions.zsh" 2>&1) || true
check "zsh nounset errexit: load twice, hook (got: $out)" \
    test "$out" = '%F{cyan}ai:3 claude● gemini◐%f|%F{cyan}ai:3 claude● gemini◐%f|[]|2 1|done'
# the C locale gets ASCII marks, colour off
out=$(cd "$PROJ" && LC_ALL=C AI_SESSIONS_PROMPT_COLOR=0 bash -uc \
    'source "$1"; _ai_sessions_precmd; printf %s "$AI_SESSIONS_PROMPT"; trap - EXIT' _ "$T/ai-sessions.bash")
check "bash: C locale ASCII marks, no colour (got: $out)" test "$out" = 'ai:3 claude* gemini~'
# raw templates (placeholders not replaced) load harmlessly, define no agent
out=$(bash -uc 'source "$1"; type -t claude || echo none; trap - EXIT' _ "$ROOT/shell/ai-sessions.bash" 2>&1)
check "bash: raw template loads (got: $out)" test "$out" = none
out=$(zsh -f -c 'source "$1"; print ${+functions[claude]} ${+functions[ai-list]}; zshexit_functions=()' _ "$ROOT/shell/ai-sessions.zsh" 2>&1)
check "zsh: raw template loads (got: $out)" test "$out" = '0 1'
# agent dropped from the configuration is removed on reload
out=$(zsh -f -c 'source "$1"; source <(sed "s/^  _ai_sessions_define_agents claude gemini$/  _ai_sessions_define_agents claude/" "$1")
    print ${+functions[claude]} ${+functions[gemini]}; zshexit_functions=()' _ "$T/ai-sessions.zsh" 2>&1)
check "zsh: reload drops removed agent (got: $out)" test "$out" = '1 0'
# `exit`/`logout`: ours (guarded) after loading twice; a user's own is kept
out=$(bash -uc 'source "$1"; source "$1"; declare -f exit logout | grep -c _ai_sessions_exit_guard
    bash -uc '\''exit() { echo mine; }; source "$1"; source "$1"; exit; trap - EXIT'\'' _ "$1"
    trap - EXIT' _ "$T/ai-sessions.bash" 2>&1) || true
check "bash: exit/logout ours, a user's exit kept (got: $out)" test "$out" = '2
mine'
out=$(zsh -f -c 'source "$1"; source "$1"; print -l -- $functions[exit] $functions[logout] | grep -c _ai_sessions_exit_guard
    function logout { print mine; }; source "$1"; logout; zshexit_functions=()' _ "$T/ai-sessions.zsh" 2>&1) || true
check "zsh: exit/logout ours, a user's logout kept (got: $out)" test "$out" = '2
mine'

# PROMPT_COMMAND in all its forms, loaded twice
pc_case() { # pc_case SETUP -> prints declare -p PROMPT_COMMAND / precmd_functions
    bash -uc "$1"'
        source "$1"; source "$1"
        declare -p PROMPT_COMMAND 2>/dev/null || echo "PROMPT_COMMAND unset"
        declare -p precmd_functions 2>/dev/null || :
        trap - EXIT' _ "$T/ai-sessions.bash" 2>&1
}
out=$(pc_case 'unset PROMPT_COMMAND') || true
check "PROMPT_COMMAND unset -> string (got: $out)" test "$out" = 'declare -- PROMPT_COMMAND="_ai_sessions_precmd"'
out=$(pc_case 'PROMPT_COMMAND="history -a;"') || true
check "PROMPT_COMMAND string kept (got: $out)" test "$out" = "declare -- PROMPT_COMMAND=\$'history -a;\\n_ai_sessions_precmd'"
out=$(pc_case 'PROMPT_COMMAND=("a b" c)') || true
check "PROMPT_COMMAND array kept (got: $out)" \
    test "$out" = 'declare -a PROMPT_COMMAND=([0]="a b" [1]="c" [2]="_ai_sessions_precmd")'
out=$(pc_case '__bp_imported=1; __bp_precmd_invoke_cmd() { :; }; precmd_functions=(x); PROMPT_COMMAND=__bp_precmd_invoke_cmd') || true
check "bash-preexec: precmd_functions used (got: $out)" test "$out" = 'declare -- PROMPT_COMMAND="__bp_precmd_invoke_cmd"
declare -a precmd_functions=([0]="x" [1]="_ai_sessions_precmd")'

# the oh-my-zsh style plugin: evals `ai-sessctl init zsh` only when on PATH
out=$(PATH="$BIN_DIR:/usr/bin:/bin" zsh -f -c 'source "$1"; print ${+functions[claude]} ${+functions[ai-list]}; zshexit_functions=()' \
    _ "$ROOT/shell/ai-sessions.plugin.zsh" 2>&1)
check "plugin: loads via ai-sessctl on PATH (got: $out)" test "$out" = '1 1'
out=$(PATH=/usr/bin:/bin zsh -f -c 'source "$1"; print ${+functions[claude]} ${+functions[ai-list]}' \
    _ "$ROOT/shell/ai-sessions.plugin.zsh" 2>&1)
check "plugin: silent no-op without ai-sessctl (got: $out)" test "$out" = '0 0'
check "plugin called init zsh" grep -qxF '<init><zsh>' "$LOG"
: >"$LOG"

# ------------------------------------------------------- interactive (tmux)
q() { printf %q "$1"; }
cat >"$T/zdot/.zshrc" <<EOF
setopt nounset
T=$(q "$T"); proj=$(q "$PROJ"); proj_sub=\$proj/sub
PS1='[%?]%# '
RPROMPT='R>'
print -r -- \$\$ >\$T/zsh.pid
_user_precmd() { print -r -- hook >>\$T/zsh.userhook }
precmd_functions+=(_user_precmd)
trap 'print -r -- "user-exit \$?" >>\$T/zsh.exit' EXIT
source $(q "$T/ai-sessions.zsh")
source $(q "$T/ai-sessions.zsh")
autoload -Uz compinit && compinit -u -D
t_hooks() { print -r -- \${#\${(M)precmd_functions:#_ai_sessions_precmd}} \${#\${(M)zshexit_functions:#_ai_sessions_zshexit}} \${#\${(M)precmd_functions:#_user_precmd}} \${#\${(M)precmd_functions:#_ai_sessions_compdef_deferred}} >\$T/zsh.hooks }
EOF
BASH_COMPLETION_FILE=/usr/share/bash-completion/bash_completion
make_bashrc() { # make_bashrc SESSION [bash-completion file]
    cat >"$T/$1.rc" <<EOF
set -u
T=$(q "$T"); proj=$(q "$PROJ"); proj_sub=\$proj/sub
${2:+source $(q "${2-}")}
PS1='[\$?]\\$ '
printf '%s\n' "\$\$" >"\$T/$1.pid"
PROMPT_COMMAND='echo hook >>"\$T/$1.userhook"'
trap 'echo "user-exit \$?" >>"\$T/$1.exit"' EXIT
source $(q "$T/ai-sessions.bash")
source $(q "$T/ai-sessions.bash")
t_hooks() { { declare -p PROMPT_COMMAND; trap -p EXIT; } >"\$T/$1.hooks"; }
EOF
}
SESSIONS=(zsh bash)
make_bashrc bash
if [[ -r $BASH_COMPLETION_FILE ]]; then
    SESSIONS+=(bashc) # bash with the bash-completion package loaded first
    make_bashrc bashc "$BASH_COMPLETION_FILE"
else
    echo "note: bash-completion not installed, bash checked without it only" >&2
fi

ENV=(env -i "HOME=$HOME_DIR" "PATH=$BIN_DIR:/usr/bin:/bin" TERM=xterm-256color LANG=C.UTF-8
    "AI_SESSIONS_HOME=$STATE" "ZDOTDIR=$T/zdot")
tmux -S "$SOCK" -f /dev/null new-session -d -s zsh -x 200 -y 50 -- "${ENV[@]}" zsh -d -i
for S in "${SESSIONS[@]:1}"; do
    tmux -S "$SOCK" new-session -d -s "$S" -x 200 -y 50 -- "${ENV[@]}" bash --noprofile --rcfile "$T/$S.rc" -i
done

pane() { tmux -S "$SOCK" capture-pane -p -t "=$1:" 2>/dev/null; }
last_line() { pane "$1" | sed '/^[[:space:]]*$/d' | tail -n 1; }
keys() { tmux -S "$SOCK" send-keys -t "=$1:" -l -- "$2"; }
enter() { tmux -S "$SOCK" send-keys -t "=$1:" Enter; }
typeline() { keys "$1" "$2"; enter "$1"; }
wait_until() { # wait_until TIMEOUT_S COMMAND...
    local tries=$(($1 * 20))
    shift
    until "$@"; do
        ((--tries > 0)) || return 1
        sleep 0.05
    done
}
pane_esc_has() { tmux -S "$SOCK" capture-pane -e -p -t "=$1:" | grep -qF -- "$2"; }
last_matches() { [[ $(last_line "$1") =~ $2 ]]; }
pane_has() { pane "$1" | grep -qF -- "$2"; }
log_has() { grep -qxF -- "$1" "$LOG"; }
file_has() { [[ -f $1 ]] && grep -qxF -- "$2" "$1"; }
# run a command line and wait for its (unique) completion marker
N=0
run() { # run SESSION COMMANDLINE
    N=$((N + 1))
    typeline "$1" "$2; echo \"@@\"\"done$N\""
    wait_until 5 pane_has "$1" "@@done$N" || fail "$1: '$2' did not finish"
}
prompt_shows() { # prompt_shows SESSION REGEX : fresh prompt, last line matches
    enter "$1"
    wait_until 5 last_matches "$1" "$2"
}

for S in "${SESSIONS[@]}"; do
    SH=${S%c} # bashc -> bash
    CUR=$S
    status_re='\[0\][%#$]' # % or $, # for root
    check "$S: starts and shows its prompt" wait_until 10 last_matches "$S" "$status_re"
    sleep 0.2
    out=$(pane "$S" | sed '/^[[:space:]]*$/d')
    check "$S: no output at start (pane: $out)" test "$(printf '%s\n' "$out" | wc -l)" -eq 1
    pid=$(cat "$T/$S.pid" 2>/dev/null) || pid=unknown

    run "$S" t_hooks
    if [[ $S == zsh ]]; then
        # deferred compdef hook removed itself after the first prompt (compinit ran after us)
        check "zsh: hooks registered once, deferred compdef gone ($(cat "$T/zsh.hooks"))" \
            file_has "$T/zsh.hooks" '1 1 1 0'
    else
        check "$S: PROMPT_COMMAND has our hook once" \
            test "$(grep -c _ai_sessions_precmd "$T/$S.hooks")" -eq 1
        check "$S: PROMPT_COMMAND keeps the user's hook first" \
            grep -qxF "declare -- PROMPT_COMMAND=\$'echo hook >>\"\$T/$S.userhook\"\\n_ai_sessions_precmd'" "$T/$S.hooks"
        # the EXIT trap is chained once the shell runs an agent (below)
        check "$S: EXIT trap the user's alone before an agent ran" \
            test "$(grep -c '_ai_sessions_exit_hook' "$T/$S.hooks")" -eq 0
    fi

    # prompt segment: appears, per-project agents, clears
    write_tsv "${TSV_RUNNING[@]}"
    check "$S: segment shows total running count" prompt_shows "$S" 'ai:3'
    check "$S: no project agents outside the project" \
        test "$(last_line "$S" | grep -c 'claude')" -eq 0
    run "$S" 'cd -- "$proj_sub"'
    check "$S: in project subdir shows agents" prompt_shows "$S" 'ai:3 claude● gemini◐'
    check "$S: segment not accumulated" test "$(last_line "$S" | grep -o 'ai:' | wc -l)" -eq 1
    if [[ $S == zsh ]]; then
        check "zsh: user's RPROMPT kept" last_matches zsh 'R> ai:3 claude● gemini◐$'
    else
        check "$S: segment prepended to user's PS1" last_matches "$S" 'ai:3 claude● gemini◐ '"$status_re"
        check "$S: segment coloured" pane_esc_has "$S" $'\e[36mai:3'
    fi
    # status of the last command survives our hook
    typeline "$S" false
    check "$S: \$? preserved for the prompt" wait_until 5 last_matches "$S" '\[1\]'
    typeline "$S" true
    write_tsv
    check "$S: segment clears when prompt.tsv is emptied" prompt_shows "$S" "^${status_re}"'[^a]*$'
    check "$S: user hook runs" test "$(wc -l <"$T/$S.userhook")" -ge 5

    # agent function and commands
    : >"$LOG"
    run "$S" "claude a 'b c'"
    check "$S: claude args intact" log_has "<run><claude><--shell-pid><$pid><--><a><b c>"
    run "$S" "claude __rc7; echo \"rc=\$?\""
    check "$S: agent exit status returned" pane_has "$S" "rc=7"
    run "$S" "(claude sub)"
    check "$S: subshell passes the top shell pid" log_has "<run><claude><--shell-pid><$pid><--><sub>"
    run "$S" "command claude real"
    check "$S: command claude reaches the real CLI" log_has "real-claude real"
    run "$S" "gemini -p 'x'"
    check "$S: gemini function" log_has "<run><gemini><--shell-pid><$pid><--><-p><x>"
    if [[ $SH == bash ]]; then
        run "$S" t_hooks
        check "$S: EXIT trap chained once" \
            test "$(grep -c '_ai_sessions_exit_hook' "$T/$S.hooks")" -eq 1
        check "$S: user's EXIT trap text kept" grep -qF "echo \"user-exit \$?\" >>\"\$T/$S.exit\"" "$T/$S.hooks"
    fi
    run "$S" "ai-stop; echo \"rc=\$?\""
    check "$S: ai-stop without args: usage" pane_has "$S" "usage: ai-stop <instance-id>..."
    check "$S: ai-stop without args: running ids" pane_has "$S" "  proj-claude-2"
    check "$S: ai-stop without args: status 2" pane_has "$S" "rc=2"
    check "$S: ai-stop asked for running ids" log_has "<list><--status><running><--quiet>"
    run "$S" "ai-stop x y; ai-stop-all; ai-restart x; ai-attach x; ai-list --json; ai-stats; ai-top; ai-health"
    for want in "<stop><x><y>" "<stop><--all>" "<restart><x>" "<attach><x>" "<list><--json>" \
        "<stats>" "<top>" "<health><check>"; do
        check "$S: ai-* maps to $want" log_has "$want"
    done
    run "$S" "ai-logs x; ai-logs x --follow; ai-logs x --tail 5"
    check "$S: ai-logs default tail" log_has "<logs><--tail><50><x>"
    check "$S: ai-logs --follow" log_has "<logs><--tail><50><x><--follow>"
    check "$S: ai-logs explicit --tail" log_has "<logs><x><--tail><5>"
    run "$S" "ai-diff; ai-diff x --stat"
    check "$S: ai-diff without an id" log_has "<diff>"
    check "$S: ai-diff passes its options" log_has "<diff><x><--stat>"

    # completion
    write_tsv "${TSV_RUNNING[@]}"
    enter "$S"
    keys "$S" "ai-stop proj-c"
    tmux -S "$SOCK" send-keys -t "=$S:" Tab
    check "$S: ai-stop <TAB> completes a live id" wait_until 5 last_matches "$S" 'ai-stop proj-claude-2'
    tmux -S "$SOCK" send-keys -t "=$S:" C-u
    keys "$S" "ai-logs old-"
    tmux -S "$SOCK" send-keys -t "=$S:" Tab
    check "$S: ai-logs <TAB> completes a stopped id" wait_until 5 last_matches "$S" 'ai-logs old-stopped-9'
    tmux -S "$SOCK" send-keys -t "=$S:" C-u
    keys "$S" "ai-diff old-"
    tmux -S "$SOCK" send-keys -t "=$S:" Tab
    check "$S: ai-diff <TAB> completes any id" wait_until 5 last_matches "$S" 'ai-diff old-stopped-9'
    tmux -S "$SOCK" send-keys -t "=$S:" C-u
    keys "$S" "ai-sessctl laz"
    tmux -S "$SOCK" send-keys -t "=$S:" Tab
    check "$S: ai-sessctl <TAB> loads the real completion lazily" \
        wait_until 5 last_matches "$S" 'ai-sessctl lazyloaded'
    tmux -S "$SOCK" send-keys -t "=$S:" C-u
    check "$S: completions loaded once" test "$(grep -c "<completions><$SH>" "$LOG")" -eq 1

    # sourcing again at the prompt changes nothing
    run "$S" "source \"\$T/ai-sessions.$SH\"; t_hooks"
    if [[ $S == zsh ]]; then
        check "zsh: hooks still once after re-source ($(cat "$T/zsh.hooks"))" file_has "$T/zsh.hooks" '1 1 1 0'
    else
        check "$S: hooks still once after re-source" \
            test "$(grep -c '_ai_sessions_precmd\|_ai_sessions_exit_hook' "$T/$S.hooks")" -eq 2
    fi
    check "$S: prompt after re-source" prompt_shows "$S" 'ai:3 claude● gemini◐'
    check "$S: segment still once" test "$(last_line "$S" | grep -o 'ai:' | wc -l)" -eq 1
    # the user (or a theme) changes the prompt: adopted, segment kept once
    if [[ $SH == zsh ]]; then
        run "$S" "RPROMPT='Q>'"
        check "$S: new RPROMPT adopted" prompt_shows "$S" '[#%] +Q> ai:3 claude● gemini◐$'
    else
        run "$S" "PS1=\$PS1'Q '" # a copy of our PS1 plus text: stale segment stripped
        check "$S: changed PS1 adopted" prompt_shows "$S" '^ai:3 claude● gemini◐ \[0\][#$] Q$'
    fi
    run "$S" "AI_SESSIONS_PROMPT_INSERT=0"
    check "$S: INSERT=0 restores the user's prompt" prompt_shows "$S" "^${status_re}"'[^a]*$'

    # exit: shell-exit with our pid, and the user's EXIT trap with the status
    : >"$LOG"
    typeline "$S" "exit 3"
    check "$S: shell exited" wait_until 5 bash -c '! tmux -S "$1" has-session -t "=$2" 2>/dev/null' _ "$SOCK" "$S"
    check "$S: shell-exit called with the shell's pid" log_has "<shell-exit><$pid>"
    check "$S: user's EXIT trap ran with the exit status ($(cat "$T/$S.exit" 2>/dev/null))" file_has "$T/$S.exit" "user-exit 3"
done

printf '%d passed, %d failed, %ds\n' "$PASSES" "$FAILS" "$((SECONDS - START))"
((FAILS == 0))
