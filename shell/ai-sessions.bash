# shellcheck shell=bash
# ai-sessions: bash integration (bash >= 4.4; an older bash gets a message
# and no changes). Printed by `ai-sessctl init bash`, which also keeps a copy
# in the state dir (init.bash) that the line install.sh puts in ~/.bashrc
# sources without running a program; or load it from ~/.bashrc with
#   eval "$(ai-sessctl init bash)"
# The two placeholders below are filled in by `ai-sessctl init`.
#
# Defines
#   one function per configured agent (claude, gemini, ...)
#       -> ai-sessctl run <agent> --shell-pid $$ -- ARGS  (status = the agent's;
#          $$ is the top shell's pid, also in subshells; `command claude`
#          still runs the real CLI). `run` reads its own options among the
#          leading ARGS (`claude --egress allowlist -w feat --model x`): from
#          the first word that is not one (or after `--`) all go to the
#          agent; -h/--help are the agent's.
#   ai-list ai-stop ai-stop-all ai-restart ai-attach ai-logs ai-stats ai-top ai-diff
#   ai-health, their completions (`complete -F`, with or without
#   bash-completion), and `ai-sessctl` completion, loaded lazily on the first
#   TAB so that shell start costs no fork for it; `claude -w <TAB>` offers
#   the repository's worktree names (an agent name that already had a
#   completion keeps it).
#
# Settings (read at every prompt, set them anywhere):
#   AI_SESSIONS_HOME           state directory (default ~/.ai-sessions)
#   AI_SESSIONS_PROMPT_PREFIX  segment prefix (default "ai:")
#   AI_SESSIONS_PROMPT_COLOR   1 (default) = \[\e[36m\]...\[\e[0m\], 0 = none
#   AI_SESSIONS_PROMPT_INSERT  1 (default) = prepend the segment to PS1;
#                              0 = leave PS1 alone; place the segment yourself:
#                              PS1='${AI_SESSIONS_PROMPT@P} \$ ' (the @P
#                              expands the \[ \] colour escapes it contains)
#   AI_SESSIONS_DEBUG          non-empty: show errors of the exit handler
#
# Global names (nothing else leaks; functions use locals):
#   AI_SESSIONS_SHELL_PID      this shell's pid, exported: `ai-sessctl run`
#                              typed here (or run by a script under this
#                              shell) is owned by it, as `claude` is
#   AI_SESSIONS_PROMPT         the segment, e.g. "ai:2 claude● gemini◐"
#                              (claude? = that agent waits for you)
#                              (PS1 escapes included when coloured)
#   _AI_SESSIONS_BIN           absolute path of ai-sessctl
#   _AI_SESSIONS_AGENTS        agent functions defined by the last load
#   _AI_SESSIONS_AGENTS_SRC    the agent list they were defined from (the
#                              prompt hook compares agents.list with it)
#   _AI_SESSIONS_KEY           cache key (file content, $PWD, settings)
#   _AI_SESSIONS_CACHED        1 when loaded from the cached copy
#   _AI_SESSIONS_PS1_ON        1 while the segment is inserted into PS1
#   _AI_SESSIONS_PS1_USER      PS1 as the user/theme last set it
#   _AI_SESSIONS_PS1_SET       PS1 as we last set it
#   _AI_SESSIONS_PS1_PART      the text we prepended (to strip it if copied)
#   _AI_SESSIONS_EXIT_WARNED   1 when `exit` warned, 2 at the prompt after it
#                              (an `exit` then exits), 0 after another command
#   _AI_SESSIONS_EXIT_FNS      which of exit/logout are our functions
#   _AI_SESSIONS_TRAP_ON       1 once the EXIT trap is chained (see EXIT)
#   functions _ai_sessions_*; one entry in PROMPT_COMMAND (or in
#   precmd_functions under bash-preexec); the EXIT trap, chained; functions
#   exit and logout (unless you have your own: see "exit" below).
#
# Prompt cost: the PROMPT_COMMAND hook uses builtins only (no fork, no
# subshell): bash cannot read an mtime without a fork, so it re-reads
# prompt.tsv with `mapfile` (about 20 us for 100 lines; comparing it with the
# cached copy costs more than reading it) and recomputes the segment only
# when the content, $PWD or a setting changed. agents.list (one line) is
# read with `read` at every prompt, to define a new agent's function.
#
# PS1 insertion: the hook remembers the user's PS1 and sets
# PS1="<segment> <user's PS1>" on every prompt, so nothing accumulates; when
# PS1 was changed behind our back (user, theme hook running before ours) the
# new value is adopted as the user's, with a stale copy of our segment
# stripped. AI_SESSIONS_PROMPT_INSERT=0 restores the user's PS1.
#
# EXIT: the trap becomes `_ai_sessions_exit_hook "$?"` followed by the text of
# the EXIT trap the user had when this shell first ran an agent (a shell that
# runs none keeps the user's trap as it is); our handler preserves $?
# for it (except under `set -e`, where it returns 0 so the rest still runs).

_AI_SESSIONS_BIN=@AI_SESSCTL@

# What an agent function of a shell opened before `install.sh --uninstall`
# says, instead of "No such file or directory".
_ai_sessions_gone() {
  printf '%s\n' "ai-sessions was uninstalled ($_AI_SESSIONS_BIN is gone); this shell still had its functions: open a new shell (exec \$SHELL)" >&2
  return 127
}

# ---------------------------------------------------------------- commands

function ai-list { "$_AI_SESSIONS_BIN" list "$@"; }
function ai-stop-all { "$_AI_SESSIONS_BIN" stop --all "$@"; }
function ai-restart { "$_AI_SESSIONS_BIN" restart "$@"; }
function ai-attach { "$_AI_SESSIONS_BIN" attach "$@"; }
function ai-stats { "$_AI_SESSIONS_BIN" stats "$@"; }
function ai-top { "$_AI_SESSIONS_BIN" top "$@"; }
function ai-health { "$_AI_SESSIONS_BIN" health check "$@"; }
# ai-diff [ID] [--stat|--json|--no-pager]: what the agent changed (no id:
# the instance of the project or worktree you are in).
function ai-diff { "$_AI_SESSIONS_BIN" diff "$@"; }

function ai-stop {
  if (( $# == 0 )); then
    local -a ids=()
    local id
    mapfile -t ids < <("$_AI_SESSIONS_BIN" list --status running --quiet 2>/dev/null)
    {
      printf '%s\n' 'usage: ai-stop <instance-id>...'
      if (( ${#ids[@]} )); then
        printf '%s\n' 'running instances:'
        for id in "${ids[@]}"; do printf '  %s\n' "$id"; done
      else
        printf '%s\n' 'no running instances'
      fi
    } >&2
    return 2
  fi
  "$_AI_SESSIONS_BIN" stop "$@"
}

# ai-logs [ID] [--follow] [--tail N] [--raw]: last 50 lines unless --tail is
# given; no ID: the instance of the project you are in.
function ai-logs {
  local a
  for a in "$@"; do
    case $a in
      --tail|--tail=*) "$_AI_SESSIONS_BIN" logs "$@"; return ;;
    esac
  done
  "$_AI_SESSIONS_BIN" logs --tail 50 "$@"
}

# --------------------------------------------------------------- prompt

# Recompute AI_SESSIONS_PROMPT from the lines of prompt.tsv ("$@"):
# project_path TAB id TAB mode TAB status TAB port [TAB activity]. Fields are split by IFS
# word splitting (globbing off), twice as fast as parameter expansions; tabs
# are IFS white space, so only the last field (port) may be empty.
_ai_sessions_segment() {
  local -                                   # restores `set -f` on return
  set -f
  local IFS=$'\t' line p mode here='' waits='' run='●' pause='◐' other='○'
  local -i running=0 waiting=0
  local -a fld=()
  case ${LC_ALL:-${LC_CTYPE:-${LANG:-}}} in
    *[Uu][Tt][Ff]-8*|*[Uu][Tt][Ff]8*) ;;
    *) run='*' pause='~' other='?' ;;
  esac
  for line in "$@"; do
    # shellcheck disable=SC2206
    fld=($line)
    (( ${#fld[@]} >= 4 )) || continue
    running+=1   # every line is live: the count of `list --status running`
    # Needs you, wherever it runs: the `?N` after the count.
    [[ ${fld[5]-} == waiting ]] && waiting+=1
    p=${fld[0]}
    if [[ $PWD == "$p" || $PWD == "$p"/* || $p == / ]]; then
      mode=${fld[2]//[^a-zA-Z0-9_.-]/?}
      case ${fld[3]} in
        running) if [[ ${fld[5]-} == waiting ]]; then here+=" $mode?"; else here+=" $mode$run"; fi ;;
        paused) here+=" $mode$pause" ;;
        *) here+=" $mode$other" ;;
      esac
    fi
  done
  (( waiting )) && waits=" ?$waiting"
  if (( running == 0 )) && [[ -z $here ]]; then
    AI_SESSIONS_PROMPT=
  elif [[ ${AI_SESSIONS_PROMPT_COLOR:-1} == 0 ]]; then
    AI_SESSIONS_PROMPT="${AI_SESSIONS_PROMPT_PREFIX-ai:}$running$waits$here"
  else
    AI_SESSIONS_PROMPT="\\[\\e[36m\\]${AI_SESSIONS_PROMPT_PREFIX-ai:}$running$waits$here\\[\\e[0m\\]"
  fi
}

_ai_sessions_precmd() {
  local rc=$?
  if [[ -z ${_AI_SESSIONS_TRAP_ON-} && -e ${AI_SESSIONS_HOME:-${HOME-}/.ai-sessions}/shells/$$ ]]; then
    _ai_sessions_exit_trap
  fi
  _ai_sessions_agents_check
  # After `exit` warned, the next command line may exit; any other resets it.
  case ${_AI_SESSIONS_EXIT_WARNED:-0} in
    1) _AI_SESSIONS_EXIT_WARNED=2 ;;
    2) _AI_SESSIONS_EXIT_WARNED=0 ;;
  esac
  local f=${AI_SESSIONS_HOME:-${HOME-}/.ai-sessions}/prompt.tsv key user new part=''
  local IFS=$'\x1f'                         # joins the cache key below
  local -a lines=()
  if [[ -f $f ]]; then
    mapfile -t lines 2>/dev/null <"$f" || lines=()
  fi
  key="${lines[*]}$IFS$PWD$IFS${AI_SESSIONS_PROMPT_PREFIX-ai:}$IFS${AI_SESSIONS_PROMPT_COLOR:-1}$IFS${LC_ALL:-${LC_CTYPE:-${LANG:-}}}"
  if [[ $key != "${_AI_SESSIONS_KEY-}" ]]; then
    _AI_SESSIONS_KEY=$key
    _ai_sessions_segment "${lines[@]}"
  fi

  if [[ ${AI_SESSIONS_PROMPT_INSERT:-1} == 1 ]]; then
    if [[ ${_AI_SESSIONS_PS1_ON-} != 1 || ${PS1-} != "${_AI_SESSIONS_PS1_SET-}" ]]; then
      # First time, or PS1 changed behind our back: that is the user's.
      user=${PS1-}
      if [[ -n ${_AI_SESSIONS_PS1_PART-} && $user == "$_AI_SESSIONS_PS1_PART"* ]]; then
        user=${user#"$_AI_SESSIONS_PS1_PART"}
      fi
      _AI_SESSIONS_PS1_USER=$user
      _AI_SESSIONS_PS1_ON=1
    fi
    if [[ -n ${AI_SESSIONS_PROMPT-} ]]; then part="$AI_SESSIONS_PROMPT "; fi
    new=$part${_AI_SESSIONS_PS1_USER-}
    if [[ $new != "${PS1-}" ]]; then PS1=$new; fi
    _AI_SESSIONS_PS1_SET=$new
    _AI_SESSIONS_PS1_PART=$part
  elif [[ ${_AI_SESSIONS_PS1_ON-} == 1 ]]; then
    # Insertion switched off: give the user's PS1 back if still ours.
    if [[ ${PS1-} == "${_AI_SESSIONS_PS1_SET-}" ]]; then PS1=${_AI_SESSIONS_PS1_USER-}; fi
    _AI_SESSIONS_PS1_ON=0 _AI_SESSIONS_PS1_SET='' _AI_SESSIONS_PS1_PART=''
  fi
  # Keep $? for PS1 (bash does not restore it after PROMPT_COMMAND).
  if [[ $- == *e* ]]; then return 0; fi
  return "$rc"
}

# ------------------------------------------------------------------ exit

# First command of the EXIT trap; $1 is the exit status, handed back as $?
# to the user's trap text that follows.
_ai_sessions_exit_hook() {
  local rc=${1:-0}
  # Only a shell that ran an agent owns instances: `run --shell-pid` leaves
  # shells/<pid> in the state dir. Any other shell exits without a fork.
  if [[ ${BASHPID-$$} == "$$" && -e ${AI_SESSIONS_HOME:-${HOME-}/.ai-sessions}/shells/$$ ]]; then
    if [[ -n ${AI_SESSIONS_DEBUG-} ]]; then
      "$_AI_SESSIONS_BIN" shell-exit "$$" </dev/null || :
    else
      "$_AI_SESSIONS_BIN" shell-exit "$$" </dev/null 2>/dev/null || :
    fi
  fi
  if [[ $- == *e* ]]; then return 0; fi
  return "$rc"
}

# EXIT: run ours first, then the user's trap with its original text. Reading
# that text costs a fork (a command substitution), so it is done only in a
# shell that owns instances: before an agent function runs (in the shell
# itself, not a subshell: there the copied trap would run the user's text
# when the subshell exits), or at the first prompt after `ai-sessctl run`
# left this shell's marker. Other shells exit through the user's trap
# alone. Once per load (a trap the user sets later replaces ours).
_ai_sessions_exit_trap() {
  local trap_text
  local -a parsed=()
  _AI_SESSIONS_TRAP_ON=1
  trap_text=$(trap -p EXIT) || trap_text=''
  if [[ -n $trap_text ]]; then
    eval "parsed=(${trap_text#trap })"        # -> -- 'text' EXIT
    trap_text=${parsed[1]-}
  fi
  if [[ $trap_text != '_ai_sessions_exit_hook "$?"'* ]]; then
    if [[ -n $trap_text ]]; then
      trap -- '_ai_sessions_exit_hook "$?"'$'\n'"$trap_text" EXIT
    else
      trap -- '_ai_sessions_exit_hook "$?"' EXIT
    fi
  fi
}

# `exit` / `logout` in a shell whose exit would stop agents (it started
# them; on_shell_exit = "stop") warn once, as zsh does for running jobs: an
# `exit` right after goes ahead (another command in between resets it;
# `warn_on_exit = false` in config.toml turns it off). Only a shell that ran
# an agent asks ai-sessctl (one fork, at exit); a subshell's `exit` is never
# held. Not covered: ctrl-d (IGNOREEOF is yours to set), closing the
# terminal, `exec`. A user's own `exit`/`logout` function wins: ours is
# defined only where there is none (see the init below), and one defined
# after this script replaces ours.
_ai_sessions_exit_guard() {
  [[ $- == *i* && ${BASHPID-$$} == "$$" ]] || return 0
  [[ ${_AI_SESSIONS_EXIT_WARNED:-0} == 2 ]] && return 0
  [[ -e ${AI_SESSIONS_HOME:-${HOME-}/.ai-sessions}/shells/$$ ]] || return 0
  [[ -x $_AI_SESSIONS_BIN ]] || return 0     # uninstalled: nothing to ask
  local said=0
  "$_AI_SESSIONS_BIN" shell-exit "$$" --warn </dev/null || said=$?
  (( said == 10 )) || return 0               # 10: it warned
  _AI_SESSIONS_EXIT_WARNED=1                 # the prompt hook makes it 2
  return 1
}

# ------------------------------------------------------------ completion

# Live instance ids (second column of prompt.tsv) starting with $1, no fork;
# ids already on the command line are skipped.
_ai_sessions_live_ids() {
  local f=${AI_SESSIONS_HOME:-${HOME-}/.ai-sessions}/prompt.tsv line id w
  local -a lines=()
  if [[ -f $f ]]; then
    mapfile -t lines 2>/dev/null <"$f" || lines=()
  fi
  for line in "${lines[@]}"; do
    [[ $line == *$'\t'*$'\t'*$'\t'* ]] || continue
    id=${line#*$'\t'}
    id=${id%%$'\t'*}
    [[ $id == "$1"* ]] || continue
    for w in "${COMP_WORDS[@]:1:COMP_CWORD-1}"; do
      [[ $w == "$id" ]] && continue 2
    done
    COMPREPLY+=("$id")
  done
}

# complete -F handler for the ai-* functions: $1 command, $2 word, $3 previous.
_ai_sessions_complete() {
  local cmd=${1-} cur=${2-} prev=${3-} w id
  local -a flags=() ids=()
  COMPREPLY=()
  case $cmd in
    ai-list) flags=(--status --json --quiet) ;;
    ai-stop) flags=(--force) ;;
    ai-logs) flags=(--follow --tail --raw) ;;
    ai-stats) flags=(--watch) ;;
    ai-diff) flags=(--stat --json --no-pager) ;;
  esac
  case $prev in
    --status) for w in running stopped all; do [[ $w == "$cur"* ]] && COMPREPLY+=("$w"); done; return 0 ;;
    --tail) return 0 ;;
  esac
  if [[ $cur == -* || $cmd == ai-list ]]; then
    for w in "${flags[@]}"; do [[ $w == "$cur"* ]] && COMPREPLY+=("$w"); done
    return 0
  fi
  if [[ $cmd == ai-logs || $cmd == ai-diff ]]; then
    # stopped instances have logs too: ask the binary (fork at TAB time only)
    mapfile -t ids < <("$_AI_SESSIONS_BIN" list --status all --quiet 2>/dev/null)
    for id in "${ids[@]}"; do [[ -n $id && $id == "$cur"* ]] && COMPREPLY+=("$id"); done
  else
    _ai_sessions_live_ids "$cur"
  fi
  return 0
}

# ai-sessctl: on the first TAB, load the real (clap) completion with one fork;
# it replaces this compspec and status 124 makes bash retry with it.
_ai_sessions_complete_sessctl() {
  local script spec
  script=$("$_AI_SESSIONS_BIN" completions bash 2>/dev/null) || script=
  if [[ -n $script ]]; then eval "$script"; fi
  spec=$(complete -p ai-sessctl 2>/dev/null) || spec=
  if [[ -n $spec && $spec != *_ai_sessions_complete_sessctl* ]]; then
    return 124
  fi
  complete -r ai-sessctl 2>/dev/null
  COMPREPLY=()
  return 0
}

# complete -F handler for the agent functions: `claude [OPTIONS] -w <TAB>`
# (before any `--`: `run` reads them there) offers the worktree names of the
# repository the shell is in (one fork, at TAB time only); anything else is
# left to `-o default` (files). bash splits `--worktree=x` at `=`.
_ai_sessions_complete_agent() {
  local cur=${2-} prev=${3-} name w
  local -a names=()
  COMPREPLY=()
  for w in "${COMP_WORDS[@]:1:COMP_CWORD-1}"; do
    [[ $w == -- ]] && return 0
  done
  if [[ $prev == -w || $prev == --worktree ]] ||
    { (( COMP_CWORD >= 3 )) && [[ $prev == = && ${COMP_WORDS[COMP_CWORD-2]-} == --worktree ]]; }; then
    mapfile -t names < <("$_AI_SESSIONS_BIN" worktree list --quiet 2>/dev/null)
    for name in "${names[@]}"; do
      [[ -n $name && $name == "$cur"* ]] && COMPREPLY+=("$name")
    done
  fi
  return 0
}

# ---------------------------------------------------------------- agents

# One function per agent named in "$@" (configured names, [a-z0-9_-]+;
# others skipped); the functions of agents no longer named are removed.
_ai_sessions_define_agents() {
  local agent old
  local -a agents=()
  for agent in "$@"; do
    [[ -z $agent || $agent == -* || $agent == *[^a-z0-9_-]* ]] && continue
    agents+=("$agent")
    eval "function $agent { [[ -x \$_AI_SESSIONS_BIN ]] || { _ai_sessions_gone; return; }; [[ -n \${_AI_SESSIONS_TRAP_ON-} || \${BASHPID-\$\$} != \"\$\$\" ]] || _ai_sessions_exit_trap; \"\$_AI_SESSIONS_BIN\" run $agent --shell-pid \"\$\$\" -- \"\$@\"; }"
    # A completion the name already had stays.
    complete -p -- "$agent" >/dev/null 2>&1 ||
      complete -o default -F _ai_sessions_complete_agent -- "$agent"
  done
  local IFS=' ' spec
  for old in ${_AI_SESSIONS_AGENTS-}; do
    for agent in "${agents[@]}"; do [[ $agent == "$old" ]] && continue 2; done
    unset -f -- "$old"
    spec=$(complete -p -- "$old" 2>/dev/null) || spec=
    [[ $spec == *_ai_sessions_complete_agent* ]] && complete -r -- "$old"
  done
  _AI_SESSIONS_AGENTS="${agents[*]}"
}

# The agent list changed since the last load (`config set` of a new agent
# rewrites agents.list): define the new functions. `read` is a builtin.
_ai_sessions_agents_check() {
  local d=${AI_SESSIONS_HOME:-${HOME-}/.ai-sessions} f IFS=' '
  local -a now=()
  f=$d/agents.list
  # Only our own file names functions (ai-sessctl refuses a state dir
  # another uid owns; `-O` tests the owner without a fork).
  [[ -f $f && -O $f && -O $d ]] || return 0
  read -r -a now <"$f" || :
  if (( ${#now[@]} )) && [[ "${now[*]}" != "${_AI_SESSIONS_AGENTS_SRC-}" ]]; then
    _AI_SESSIONS_AGENTS_SRC="${now[*]}"
    _ai_sessions_define_agents "${now[@]}"
  fi
  return 0
}

# ------------------------------------------------------------------ init

_ai_sessions_init() {
  local entry hook=_ai_sessions_precmd
  local -a wanted=(@AI_AGENTS@)

  _ai_sessions_define_agents "${wanted[@]}"
  _AI_SESSIONS_AGENTS_SRC="${wanted[*]}"
  export AI_SESSIONS_SHELL_PID=$$          # `ai-sessctl run` under this shell: ours
  _AI_SESSIONS_KEY=''                       # settings may have changed: recompute
  AI_SESSIONS_PROMPT=${AI_SESSIONS_PROMPT-}

  # prompt hook, once, keeping PROMPT_COMMAND's form (unset, string, array)
  if [[ -n ${bash_preexec_imported-}${__bp_imported-} ]] && declare -F __bp_precmd_invoke_cmd >/dev/null; then
    # bash-preexec owns PROMPT_COMMAND: use its precmd_functions
    for entry in ${precmd_functions[@]+"${precmd_functions[@]}"}; do [[ $entry == "$hook" ]] && hook=''; done
    if [[ -n $hook ]]; then precmd_functions+=("$hook"); fi
  elif ! declare -p PROMPT_COMMAND >/dev/null 2>&1 || [[ -z ${PROMPT_COMMAND[*]-} ]]; then
    PROMPT_COMMAND=$hook
  elif [[ ${PROMPT_COMMAND@a} == *a* ]]; then
    for entry in "${PROMPT_COMMAND[@]}"; do [[ $entry == *"$hook"* ]] && hook=''; done
    if [[ -n $hook ]]; then PROMPT_COMMAND+=("$hook"); fi
  else
    # a plain string: append on a new line (robust to a trailing ; or &)
    # shellcheck disable=SC2128,SC2178
    if [[ $PROMPT_COMMAND != *"$hook"* ]]; then PROMPT_COMMAND=$PROMPT_COMMAND$'\n'$hook; fi
  fi

  # EXIT: chained once this shell owns instances (_ai_sessions_exit_trap)
  _AI_SESSIONS_TRAP_ON=''

  # `exit`/`logout` with the warning, unless the user has functions of
  # theirs (those we defined are named in _AI_SESSIONS_EXIT_FNS: reading a
  # function's text would cost a fork). Without arguments they exit with
  # the status of the command before them, as the builtins do.
  local fns=''
  if ! declare -F exit >/dev/null || [[ " ${_AI_SESSIONS_EXIT_FNS-} " == *' exit '* ]]; then
    exit() { local rc=$?; _ai_sessions_exit_guard || return 1; builtin exit "${@:-$rc}"; }
    fns='exit'
  fi
  if ! declare -F logout >/dev/null || [[ " ${_AI_SESSIONS_EXIT_FNS-} " == *' logout '* ]]; then
    logout() { local rc=$?; _ai_sessions_exit_guard || return 1; builtin logout "${@:-$rc}"; }
    fns+=' logout'
  fi
  _AI_SESSIONS_EXIT_FNS=$fns

  # completion (complete -F works with and without bash-completion)
  complete -F _ai_sessions_complete ai-list ai-stop ai-restart ai-attach ai-logs ai-stats ai-health
  complete -F _ai_sessions_complete ai-diff
  if ! complete -p ai-sessctl >/dev/null 2>&1; then
    complete -o default -F _ai_sessions_complete_sessctl ai-sessctl
  fi
  return 0
}
# bash < 4.4 (macOS's /bin/bash is 3.2) lacks what this needs (mapfile,
# `local -`, ${var@a}): say so once and leave the shell as it was.
if (( BASH_VERSINFO[0] > 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] >= 4) )); then
  _ai_sessions_init
else
  printf '%s\n' "ai-sessions: bash $BASH_VERSION is too old for the shell integration (needs bash >= 4.4)." \
    "  Use zsh (eval \"\$(ai-sessctl init zsh)\" in ~/.zshrc), or a newer bash (macOS: brew install bash)." >&2
  unset -f ai-list ai-stop-all ai-restart ai-attach ai-stats ai-top ai-health ai-stop ai-logs ai-diff \
    _ai_sessions_segment _ai_sessions_precmd _ai_sessions_exit_hook _ai_sessions_exit_guard _ai_sessions_live_ids \
    _ai_sessions_complete _ai_sessions_complete_sessctl _ai_sessions_complete_agent _ai_sessions_init _ai_sessions_gone \
    _ai_sessions_exit_trap
  unset _AI_SESSIONS_BIN
fi
