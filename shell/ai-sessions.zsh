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
#   _AI_SESSIONS_CACHED        1 when loaded from the cached copy
#   _AI_SESSIONS_KEY           cache key of the last computed segment
#   _AI_SESSIONS_RPROMPT_ON    1 while the segment is inserted into RPROMPT
#   _AI_SESSIONS_RPROMPT_USER  RPROMPT as the user/theme last set it
#   _AI_SESSIONS_RPROMPT_SET   RPROMPT as we last set it
#   _AI_SESSIONS_RPROMPT_PART  the text we appended (to strip it if copied)
#   functions _ai_sessions_* ; hooks in precmd_functions / zshexit_functions.
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
  local f=$1 line p mode run=● pause=◐ other=○ here= pwdp=${PWD:A}
  local -i running=0
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
  if (( running == 0 )) && [[ -z $here ]]; then
    typeset -g AI_SESSIONS_PROMPT=
  elif [[ ${AI_SESSIONS_PROMPT_COLOR:-1} == 0 ]]; then
    typeset -g AI_SESSIONS_PROMPT="${AI_SESSIONS_PROMPT_PREFIX-ai:}$running$here"
  else
    typeset -g AI_SESSIONS_PROMPT="%F{cyan}${AI_SESSIONS_PROMPT_PREFIX-ai:}$running$here%f"
  fi
}

function _ai_sessions_precmd {
  emulate -L zsh
  _ai_sessions_agents_check
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
    compdef _ai_sessions_complete_agent $agent
  done
  return 0
}

# Register completions once compinit has run (now, or at a later prompt).
function _ai_sessions_compdef {
  emulate -L zsh
  (( ${+functions[compdef]} )) || return 1
  compdef _ai_sessions_complete ai-list ai-stop ai-restart ai-attach ai-logs ai-stats ai-health
  compdef _ai_sessions_complete ai-diff
  _ai_sessions_compdef_agents ${=_AI_SESSIONS_AGENTS-}
  # An installed _ai-sessctl (fpath) or an earlier registration wins.
  if (( ! ${+_comps[ai-sessctl]} )); then
    compdef _ai_sessions_complete_sessctl ai-sessctl
  fi
  return 0
}

function _ai_sessions_compdef_deferred {
  emulate -L zsh
  if _ai_sessions_compdef; then
    add-zsh-hook -d precmd _ai_sessions_compdef_deferred
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
    eval "function $agent { emulate -L zsh; \"\$_AI_SESSIONS_BIN\" run $agent --shell-pid \"\$\$\" -- \"\$@\"; }"
  done
  for old in ${=_AI_SESSIONS_AGENTS-}; do
    if (( ! ${agents[(Ie)$old]} )) && [[ ${functions[$old]-} == *'_AI_SESSIONS_BIN" run '* ]]; then
      unfunction -- $old
    fi
  done
  typeset -g _AI_SESSIONS_AGENTS="${agents[*]}"
  # Newly configured agents get completion too (once compinit has run;
  # until then _ai_sessions_compdef does it).
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

  if zmodload -F zsh/stat b:zstat 2>/dev/null; then
    typeset -g _AI_SESSIONS_ZSTAT=1
  else
    typeset -g _AI_SESSIONS_ZSTAT=0
  fi
  zmodload -F zsh/datetime p:EPOCHSECONDS p:EPOCHREALTIME 2>/dev/null
  typeset -gx AI_SESSIONS_SHELL_PID=$$   # `ai-sessctl run` under this shell: ours
  typeset -g _AI_SESSIONS_KEY=            # settings may have changed: recompute
  typeset -g AI_SESSIONS_PROMPT=${AI_SESSIONS_PROMPT-}

  autoload -Uz add-zsh-hook
  add-zsh-hook precmd _ai_sessions_precmd        # add-zsh-hook deduplicates
  add-zsh-hook zshexit _ai_sessions_zshexit
  if ! _ai_sessions_compdef; then
    add-zsh-hook precmd _ai_sessions_compdef_deferred
  fi
  return 0
}
