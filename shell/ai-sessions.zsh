# ai-sessions: zsh integration. Printed by `ai-sessctl init zsh`, which also
# keeps a copy in the state dir (init.zsh) that the line install.sh puts in
# ~/.zshrc sources without running a program; or load it with
#   eval "$(ai-sessctl init zsh)"
# (or the oh-my-zsh style plugin shell/ai-sessions.plugin.zsh). The two
# placeholders below are filled in by `ai-sessctl init`.
#
# Defines
#   one function per configured agent (claude, gemini, ...)
#       -> ai-sessctl run <agent> --shell-pid $$ -- ARGS  (status = the agent's;
#          `command claude` still runs the real CLI). `run` reads its own
#          options among the leading ARGS (`claude --egress allowlist -w feat
#          --model x`): from the first word that is not one (or after `--`)
#          all go to the agent; -h/--help are the agent's.
#   ai-list ai-stop ai-stop-all ai-restart ai-attach ai-logs ai-stats ai-top ai-diff
#   ai-health, their completions, and `ai-sessctl` completion (loaded lazily
#   on the first TAB so that shell start costs no fork); `claude -w <TAB>`
#   offers the repository's worktree names.
#
# Settings (read at every prompt, set them anywhere):
#   AI_SESSIONS_HOME           state directory (default ~/.ai-sessions)
#   AI_SESSIONS_PROMPT_PREFIX  segment prefix (default "ai:")
#   AI_SESSIONS_PROMPT_COLOR   1 (default) = %F{cyan}...%f, 0 = no colour
#   AI_SESSIONS_PROMPT_INSERT  1 (default) = append the segment to RPROMPT;
#                              0 = leave prompts alone and use
#                              $AI_SESSIONS_PROMPT yourself, e.g.
#                              setopt prompt_subst; RPROMPT='${AI_SESSIONS_PROMPT}'
#   AI_SESSIONS_DEBUG          non-empty: show errors of the exit handler
#
# Global names (nothing else leaks; functions use `emulate -L zsh` and locals):
#   AI_SESSIONS_SHELL_PID      this shell's pid, exported: `ai-sessctl run`
#                              typed here (or run by a script under this
#                              shell) is owned by it, as `claude` is
#   AI_SESSIONS_PROMPT         the segment, e.g. "ai:2 claude● gemini◐"
#                              (claude? = that agent waits for you)
#                              (prompt escapes included when coloured)
#   _AI_SESSIONS_BIN           absolute path of ai-sessctl
#   _AI_SESSIONS_AGENTS        agent functions defined by the last load
#   _AI_SESSIONS_AGENTS_SRC    the agent list they were defined from (the
#                              prompt hook compares agents.list with it)
#   _AI_SESSIONS_AGENT_COMPS   completion each agent name had before ours
#                              (used for what is not a worktree name)
#   _AI_SESSIONS_ZSTAT         1 when zsh/stat's zstat builtin is available
#                              (set at the first prompt, which loads it)
#   _AI_SESSIONS_CACHED        1 when loaded from the cached copy
#   _AI_SESSIONS_KEY           cache key of the last computed segment
#   _AI_SESSIONS_RPROMPT_ON    1 while the segment is inserted into RPROMPT
#   _AI_SESSIONS_RPROMPT_USER  RPROMPT as the user/theme last set it
#   _AI_SESSIONS_RPROMPT_SET   RPROMPT as we last set it
#   _AI_SESSIONS_RPROMPT_PART  the text we appended (to strip it if copied)
#   _AI_SESSIONS_EXIT_WARNED   1 when `exit` warned, 2 at the prompt after it
#                              (an `exit` then exits), 0 after another command
#   functions _ai_sessions_* ; hooks in precmd_functions / zshexit_functions;
#   functions exit and logout (unless you have your own: see "exit" below).
#
# Prompt cost: the precmd hook uses builtins only (no fork, no subshell):
# zstat on prompt.tsv (rewritten by rename on every registry change) and the
# segment is recomputed only when the file (inode, size, mtime), $PWD or a
# setting changed; `$(<file)` is read in-process by zsh. agents.list (one
# line) is read the same way at every prompt, to define a new agent's
# function.
#
# RPROMPT insertion: we do not depend on (or turn on) prompt_subst. The hook
# keeps the user's RPROMPT and sets RPROMPT="<user's> <segment>" as plain
# prompt text; when RPROMPT was changed behind our back (theme, user) the new
# value is adopted as the user's (with a stale copy of our segment stripped),
# so nothing accumulates, and with AI_SESSIONS_PROMPT_INSERT=0 the user's
# RPROMPT is restored. Themes that rewrite RPROMPT in their own precmd after
# ours win; use AI_SESSIONS_PROMPT_INSERT=0 with them.

typeset -g _AI_SESSIONS_BIN=@AI_SESSCTL@

# What an agent function of a shell opened before `install.sh --uninstall`
# says, instead of "no such file or directory".
function _ai_sessions_gone {
  print -ru2 -- "ai-sessions was uninstalled ($_AI_SESSIONS_BIN is gone); this shell still had its functions: open a new shell (exec \$SHELL)"
  return 127
}

# ---------------------------------------------------------------- commands

function ai-list { emulate -L zsh; "$_AI_SESSIONS_BIN" list "$@"; }
function ai-stop-all { emulate -L zsh; "$_AI_SESSIONS_BIN" stop --all "$@"; }
function ai-restart { emulate -L zsh; "$_AI_SESSIONS_BIN" restart "$@"; }
function ai-attach { emulate -L zsh; "$_AI_SESSIONS_BIN" attach "$@"; }
function ai-stats { emulate -L zsh; "$_AI_SESSIONS_BIN" stats "$@"; }
function ai-top { emulate -L zsh; "$_AI_SESSIONS_BIN" top "$@"; }
function ai-health { emulate -L zsh; "$_AI_SESSIONS_BIN" health check "$@"; }
# ai-diff [ID] [--stat|--json|--no-pager]: what the agent changed (no id:
# the instance of the project or worktree you are in).
function ai-diff { emulate -L zsh; "$_AI_SESSIONS_BIN" diff "$@"; }

function ai-stop {
  emulate -L zsh
  if (( $# == 0 )); then
    local -a ids
    ids=( ${(f)"$("$_AI_SESSIONS_BIN" list --status running --quiet 2>/dev/null)"} )
    print -ru2 -- 'usage: ai-stop <instance-id>...'
    if (( $#ids )); then
      print -ru2 -- 'running instances:'
      print -ru2 -l -- "  "${^ids}
    else
      print -ru2 -- 'no running instances'
    fi
    return 2
  fi
  "$_AI_SESSIONS_BIN" stop "$@"
}

# ai-logs [ID] [--follow] [--tail N] [--raw]: last 50 lines unless --tail is
# given; no ID: the instance of the project you are in.
function ai-logs {
  emulate -L zsh
  local a
  for a in "$@"; do
    case $a in
      (--tail|--tail=*) "$_AI_SESSIONS_BIN" logs "$@"; return ;;
    esac
  done
  "$_AI_SESSIONS_BIN" logs --tail 50 "$@"
}

# --------------------------------------------------------------- prompt

# Recompute AI_SESSIONS_PROMPT from prompt.tsv ($1).
# Lines: project_path TAB id TAB mode TAB status TAB port [TAB activity].
function _ai_sessions_segment {
  emulate -L zsh
  local f=$1 line p mode run=● pause=◐ other=○ here= waits= pwdp=${PWD:A}
  local -i running=0 waiting=0
  local -a lines fields
  [[ -r $f ]] && lines=( ${(f)"$(<$f)"} )
  case ${LC_ALL:-${LC_CTYPE:-${LANG:-}}} in
    (*[Uu][Tt][Ff]-8*|*[Uu][Tt][Ff]8*) ;;
    (*) run='*' pause='~' other='?' ;;
  esac
  for line in $lines; do
    fields=( "${(@ps:\t:)line}" )
    (( $#fields >= 4 )) || continue
    p=$fields[1]
    (( ++running ))   # every line is live: the count of `list --status running`
    # Needs you, wherever it runs: the `?N` after the count.
    [[ ${fields[6]-} == waiting ]] && (( ++waiting ))
    # Only an absolute path can hold $PWD (an empty one would match all).
    if [[ $p == /* ]] && [[ $PWD == "$p" || $PWD == "$p"/* || $p == / ||
          $pwdp == "$p" || $pwdp == "$p"/* ]]; then
      mode=${fields[3]//[^a-zA-Z0-9_.-]/?}
      case $fields[4] in
        (running) [[ ${fields[6]-} == waiting ]] && here+=" $mode?" || here+=" $mode$run" ;;
        (paused)  here+=" $mode$pause" ;;
        (*)       here+=" $mode$other" ;;
      esac
    fi
  done
  (( waiting )) && waits=" ?$waiting"
  if (( running == 0 )) && [[ -z $here ]]; then
    typeset -g AI_SESSIONS_PROMPT=
  elif [[ ${AI_SESSIONS_PROMPT_COLOR:-1} == 0 ]]; then
    typeset -g AI_SESSIONS_PROMPT="${AI_SESSIONS_PROMPT_PREFIX-ai:}$running$waits$here"
  else
    typeset -g AI_SESSIONS_PROMPT="%F{cyan}${AI_SESSIONS_PROMPT_PREFIX-ai:}$running$waits$here%f"
  fi
}

function _ai_sessions_precmd {
  emulate -L zsh
  # The modules load at the first prompt, not at start: a shell that draws
  # none (zsh -i -c CMD, as editors start to read the environment) skips it.
  if (( ! ${+_AI_SESSIONS_ZSTAT} )); then
    if zmodload -F zsh/stat b:zstat 2>/dev/null; then
      typeset -g _AI_SESSIONS_ZSTAT=1
    else
      typeset -g _AI_SESSIONS_ZSTAT=0
    fi
    zmodload -F zsh/datetime p:EPOCHSECONDS p:EPOCHREALTIME 2>/dev/null
  fi
  _ai_sessions_agents_check
  # After `exit` warned, the next command line may exit; any other resets it.
  case ${_AI_SESSIONS_EXIT_WARNED:-0} in
    (1) typeset -g _AI_SESSIONS_EXIT_WARNED=2 ;;
    (2) typeset -g _AI_SESSIONS_EXIT_WARNED=0 ;;
  esac
  local f=${AI_SESSIONS_HOME:-$HOME/.ai-sessions}/prompt.tsv stamp=none
  local -a st
  if (( ${_AI_SESSIONS_ZSTAT:-0} )); then
    if zstat -A st $f 2>/dev/null; then
      # inode:size:mtime. mtime has 1 s resolution, so while the file is
      # younger than 2 s re-read it every time.
      stamp="$st[2]:$st[8]:$st[10]"
      if (( ${+EPOCHSECONDS} == 0 || st[10] + 1 >= EPOCHSECONDS )); then
        stamp+=":${EPOCHREALTIME:-$RANDOM}"
      fi
    fi
  else
    stamp="nostat:$RANDOM:${EPOCHREALTIME:-}"
  fi
  local key="$stamp|$PWD|${AI_SESSIONS_PROMPT_PREFIX-ai:}|${AI_SESSIONS_PROMPT_COLOR:-1}|${LC_ALL:-${LC_CTYPE:-${LANG:-}}}"
  if [[ $key != "${_AI_SESSIONS_KEY-}" ]]; then
    typeset -g _AI_SESSIONS_KEY=$key
    _ai_sessions_segment $f
  fi

  local user new part=
  if [[ ${AI_SESSIONS_PROMPT_INSERT:-1} == 1 ]]; then
    if [[ ${_AI_SESSIONS_RPROMPT_ON-} != 1 || ${RPROMPT-} != "${_AI_SESSIONS_RPROMPT_SET-}" ]]; then
      # First time, or RPROMPT changed behind our back: that is the user's.
      user=${RPROMPT-}
      if [[ -n ${_AI_SESSIONS_RPROMPT_PART-} && $user == *"$_AI_SESSIONS_RPROMPT_PART" ]]; then
        user=${user%"$_AI_SESSIONS_RPROMPT_PART"}
      fi
      typeset -g _AI_SESSIONS_RPROMPT_USER=$user _AI_SESSIONS_RPROMPT_ON=1
    fi
    user=${_AI_SESSIONS_RPROMPT_USER-}
    if [[ -n ${AI_SESSIONS_PROMPT-} ]]; then
      if [[ -n $user ]]; then part=" $AI_SESSIONS_PROMPT"; else part=$AI_SESSIONS_PROMPT; fi
    fi
    new=$user$part
    [[ $new == "${RPROMPT-}" ]] || RPROMPT=$new
    typeset -g _AI_SESSIONS_RPROMPT_SET=$new _AI_SESSIONS_RPROMPT_PART=$part
  elif [[ ${_AI_SESSIONS_RPROMPT_ON-} == 1 ]]; then
    # Insertion switched off: give the user's RPROMPT back if still ours.
    if [[ ${RPROMPT-} == "${_AI_SESSIONS_RPROMPT_SET-}" ]]; then
      RPROMPT=${_AI_SESSIONS_RPROMPT_USER-}
    fi
    typeset -g _AI_SESSIONS_RPROMPT_ON=0 _AI_SESSIONS_RPROMPT_SET= _AI_SESSIONS_RPROMPT_PART=
  fi
  return 0
}

# ------------------------------------------------------------------ exit

# Only a shell that ran an agent owns instances: `run --shell-pid` leaves
# shells/<pid> in the state dir. Any other shell exits without a fork.
function _ai_sessions_zshexit {
  emulate -L zsh
  [[ -e ${AI_SESSIONS_HOME:-${HOME-}/.ai-sessions}/shells/$$ ]] || return 0
  if [[ -n ${AI_SESSIONS_DEBUG-} ]]; then
    "$_AI_SESSIONS_BIN" shell-exit $$ </dev/null
  else
    "$_AI_SESSIONS_BIN" shell-exit $$ </dev/null 2>/dev/null
  fi
  return 0
}

# `exit` / `logout` in a shell whose exit would stop agents (it started
# them; on_shell_exit = "stop") warn once, as zsh does for running jobs: an
# `exit` right after goes ahead (another command in between resets it;
# `warn_on_exit = false` in config.toml turns it off). Only a shell that ran an agent asks ai-sessctl (one
# fork, at exit); a subshell's `exit` is never held. Not covered: ctrl-d
# (set IGNORE_EOF if you want it to warn too), closing the terminal, `exec`.
# A user's own `exit`/`logout` function wins: ours is defined only in its
# place (see the init below).
function _ai_sessions_exit_guard {
  emulate -L zsh
  [[ -o interactive ]] && (( ${ZSH_SUBSHELL:-0} == 0 )) || return 0
  (( ${_AI_SESSIONS_EXIT_WARNED:-0} == 2 )) && return 0
  [[ -e ${AI_SESSIONS_HOME:-${HOME-}/.ai-sessions}/shells/$$ ]] || return 0
  [[ -x $_AI_SESSIONS_BIN ]] || return 0     # uninstalled: nothing to ask
  "$_AI_SESSIONS_BIN" shell-exit $$ --warn </dev/null
  (( $? == 10 )) || return 0                # 10: it warned
  typeset -g _AI_SESSIONS_EXIT_WARNED=1     # the prompt hook makes it 2
  return 1
}

# ------------------------------------------------------------ completion

# Instance ids of live instances, from prompt.tsv (no fork), as _describe
# specs "id:mode status project" appended to the caller's _ais_specs (not
# `reply`: _describe's helpers clobber that); ids already on the line skipped.
function _ai_sessions_live_specs {
  emulate -L zsh
  local f=${AI_SESSIONS_HOME:-$HOME/.ai-sessions}/prompt.tsv line
  local -a lines fields seen
  seen=( ${words[2,CURRENT-1]} )
  [[ -r $f ]] && lines=( ${(f)"$(<$f)"} )
  for line in $lines; do
    fields=( "${(@ps:\t:)line}" )
    (( $#fields >= 4 )) || continue
    (( ${seen[(Ie)$fields[2]]} )) && continue
    _ais_specs+=( "${fields[2]//:/\\:}:$fields[3] $fields[4] ${fields[1]/#$HOME/~}" )
  done
}

# No `emulate -L zsh` here: compsys runs completers with its own option set
# ($_comp_options, e.g. extended_glob) that _describe & co. rely on.
function _ai_sessions_complete {
  local -a _ais_specs flags ids expl
  local cmd=${service:-${words[1]}}
  case $cmd in
    (ai-list)  flags=(--status --json --quiet) ;;
    (ai-stop)  flags=(--force) ;;
    (ai-logs)  flags=(--follow --tail --raw) ;;
    (ai-stats) flags=(--watch) ;;
    (ai-diff)  flags=(--stat --json --no-pager) ;;
  esac
  case ${words[CURRENT-1]} in
    (--status) compadd -- running stopped all; return ;;
    (--tail)   _message 'number of lines'; return ;;
  esac
  if [[ $PREFIX == -* ]]; then
    (( $#flags )) && compadd -- $flags
    return
  fi
  case $cmd in
    (ai-list) (( $#flags )) && compadd -- $flags ;;
    (ai-logs|ai-diff)
      # stopped instances have logs too: ask the binary (fork at TAB time only)
      ids=( ${(f)"$("$_AI_SESSIONS_BIN" list --status all --quiet 2>/dev/null)"} )
      ids=( ${ids:|words} )
      (( $#ids )) && _wanted instances expl 'instance id' compadd -- $ids ;;
    (*)
      _ai_sessions_live_specs
      (( $#_ais_specs )) && _describe -t instances 'instance id' _ais_specs ;;
  esac
}

# ai-sessctl: on the first TAB, load the real (clap) completion with one fork
# and hand over to it; it replaces this function in $_comps.
function _ai_sessions_complete_sessctl {
  local _ais_script _ais_fn
  _ais_script=$("$_AI_SESSIONS_BIN" completions zsh 2>/dev/null) || _ais_script=
  [[ -n $_ais_script ]] && eval "$_ais_script"
  _ais_fn=${_comps[ai-sessctl]-}
  if [[ -n $_ais_fn && $_ais_fn != _ai_sessions_complete_sessctl ]]; then
    "$_ais_fn" "$@"
    return
  fi
  _files
}

# The worktree names `ai-sessctl worktree list --quiet` gives for the repo
# the shell is in (one fork, at TAB time only), offered with compadd "$@".
function _ai_sessions_worktree_names {
  local -a names expl
  names=( ${(f)"$("$_AI_SESSIONS_BIN" worktree list --quiet 2>/dev/null)"} )
  (( $#names )) && _wanted worktrees expl 'worktree' compadd "$@" -- $names
}

# Agent functions: `claude [OPTIONS] -w <TAB>` / `--worktree=<TAB>` (before
# any `--`: `run` reads them there) offer worktree names; anything else goes
# to the completion the command had before ours, or to files.
function _ai_sessions_complete_agent {
  local cmd=${service:-${words[1]}}
  local -a before
  before=( "${(@)words[2,CURRENT-1]}" )
  if (( ${before[(Ie)--]} )); then
    :
  elif (( CURRENT > 2 )) && [[ ${words[CURRENT-1]} == (-w|--worktree) ]]; then
    _ai_sessions_worktree_names
    return
  elif [[ $PREFIX == --worktree=* ]]; then
    compset -P '--worktree='
    _ai_sessions_worktree_names
    return
  fi
  local prev=${_AI_SESSIONS_AGENT_COMPS[$cmd]-}
  if [[ -n $prev ]]; then
    "$prev" "$@"
    return
  fi
  _default
}

# `compdef FN NAME...` for plain names is `_comps[NAME]=FN`: done directly
# when compinit made _comps (a call of compdef costs more than the rest of
# a shell start with this file), else through compdef (a plugin manager's
# may stand in for compinit's until it runs).
function _ai_sessions_comps {
  emulate -L zsh
  local fn=$1 name
  shift
  if [[ ${(t)_comps-} == association* ]]; then
    for name in "$@"; do
      _comps[$name]=$fn
    done
  else
    compdef $fn "$@"
  fi
}

# Registers _ai_sessions_complete_agent for the agents in $@, keeping what
# was registered before for each (compinit must have run).
function _ai_sessions_compdef_agents {
  emulate -L zsh
  (( ${+functions[compdef]} )) || return 1
  (( ${+_AI_SESSIONS_AGENT_COMPS} )) || typeset -gA _AI_SESSIONS_AGENT_COMPS
  local agent had
  for agent in "$@"; do
    had=${_comps[$agent]-}
    if [[ -n $had && $had != _ai_sessions_complete_agent ]]; then
      _AI_SESSIONS_AGENT_COMPS[$agent]=$had
    fi
  done
  (( $# )) && _ai_sessions_comps _ai_sessions_complete_agent "$@"
  return 0
}

# Register the commands' completions once compinit has run (now, or at a
# later prompt; the agents' come with their functions, or with the latter).
function _ai_sessions_compdef {
  emulate -L zsh
  (( ${+functions[compdef]} )) || return 1
  _ai_sessions_comps _ai_sessions_complete ai-list ai-stop ai-restart ai-attach ai-logs ai-stats ai-health ai-diff
  # An installed _ai-sessctl (fpath) or an earlier registration wins.
  if (( ! ${+_comps[ai-sessctl]} )); then
    _ai_sessions_comps _ai_sessions_complete_sessctl ai-sessctl
  fi
  return 0
}

function _ai_sessions_compdef_deferred {
  emulate -L zsh
  if _ai_sessions_compdef; then
    _ai_sessions_compdef_agents ${=_AI_SESSIONS_AGENTS-}
    precmd_functions=( ${precmd_functions:#_ai_sessions_compdef_deferred} )
  fi
  return 0
}

# ---------------------------------------------------------------- agents

# One function per agent named in $@ (configured names, [a-z0-9_-]+; others
# skipped); the functions of agents no longer named are removed.
function _ai_sessions_define_agents {
  emulate -L zsh
  local agent old
  local -a agents
  for agent in "$@"; do
    [[ -z $agent || $agent == -* || $agent == *[^a-z0-9_-]* ]] && continue
    agents+=( $agent )
    eval "function $agent { emulate -L zsh; [[ -x \$_AI_SESSIONS_BIN ]] || { _ai_sessions_gone; return; }; \"\$_AI_SESSIONS_BIN\" run $agent --shell-pid \"\$\$\" -- \"\$@\"; }"
  done
  for old in ${=_AI_SESSIONS_AGENTS-}; do
    if (( ! ${agents[(Ie)$old]} )) && [[ ${functions[$old]-} == *'_AI_SESSIONS_BIN" run '* ]]; then
      unfunction -- $old
    fi
  done
  typeset -g _AI_SESSIONS_AGENTS="${agents[*]}"
  # Newly configured agents get completion too (once compinit has run;
  # until then _ai_sessions_compdef_deferred does it).
  (( ${+functions[compdef]} )) && _ai_sessions_compdef_agents $agents
  return 0
}

# The agent list changed since the last load (`config set` of a new agent
# rewrites agents.list): define the new functions. $(<file) reads in-process.
function _ai_sessions_agents_check {
  emulate -L zsh
  local d=${AI_SESSIONS_HOME:-$HOME/.ai-sessions} f now
  f=$d/agents.list
  # Only our own file names functions (ai-sessctl refuses a state dir
  # another uid owns; the hook cannot stat without a fork, -O is a test).
  [[ -r $f && -O $f && -O $d ]] || return 0
  now=$(<$f)
  if [[ -n $now && $now != "${_AI_SESSIONS_AGENTS_SRC-}" ]]; then
    typeset -g _AI_SESSIONS_AGENTS_SRC=$now
    _ai_sessions_define_agents ${=now}
  fi
  return 0
}

# ------------------------------------------------------------------ init

() {
  emulate -L zsh
  _ai_sessions_define_agents @AI_AGENTS@
  typeset -g _AI_SESSIONS_AGENTS_SRC='@AI_AGENTS@'

  typeset -gx AI_SESSIONS_SHELL_PID=$$   # `ai-sessctl run` under this shell: ours
  typeset -g _AI_SESSIONS_KEY=            # settings may have changed: recompute
  typeset -g AI_SESSIONS_PROMPT=${AI_SESSIONS_PROMPT-}

  # What add-zsh-hook does (once each), without loading it: that is a
  # search of $fpath, the costliest step of a shell start with this file.
  typeset -ga precmd_functions zshexit_functions
  (( ${precmd_functions[(Ie)_ai_sessions_precmd]} )) || precmd_functions+=( _ai_sessions_precmd )
  (( ${zshexit_functions[(Ie)_ai_sessions_zshexit]} )) || zshexit_functions+=( _ai_sessions_zshexit )
  # `exit`/`logout` with the warning, unless the user has functions of theirs.
  # Without arguments they exit with the status of the command before them.
  if [[ ${functions[exit]-_ai_sessions_exit_guard} == *_ai_sessions_exit_guard* ]]; then
    function exit { local rc=$?; _ai_sessions_exit_guard || return 1; builtin exit "${@:-$rc}"; }
  fi
  if [[ ${functions[logout]-_ai_sessions_exit_guard} == *_ai_sessions_exit_guard* ]]; then
    function logout { local rc=$?; _ai_sessions_exit_guard || return 1; builtin logout "${@:-$rc}"; }
  fi
  if ! _ai_sessions_compdef; then
    (( ${precmd_functions[(Ie)_ai_sessions_compdef_deferred]} )) ||
      precmd_functions+=( _ai_sessions_compdef_deferred )
  fi
  return 0
}
