# ai-sessions cache @STAMP@
# ai-sessions: the output of `ai-sessctl init zsh`, kept by it in the state
# directory so that a new shell loads it without running a program. The line
# install.sh puts in ~/.zshrc sources this file, when the file and its
# directory are the user's own, with the path of ai-sessctl as $1. Stale
# when that binary, the one named below, config.toml or agents.list is newer
# than this file (or $1 is missing): then `ai-sessctl init zsh` is asked
# instead, and it rewrites (or re-dates) this file.
#
# Compiled copy: `.` loads init.zsh.zwc in place of this file unless the
# .zwc is older by whole seconds; that saves parsing this file. This header
# writes it (zcompile -U, so no alias of the compiling shell is baked in;
# to a new name, renamed into place) when it is missing, older (to the
# nanosecond) or made by another zsh version. The stamp on the first line
# is compiled into the copy: when this file is newer than the copy, the
# code running may be an older text's (zsh only compares seconds), and
# unless its stamp is the file's, it is stale and `init` is asked as above
# (which removes a copy of another text). A compile keeps its result only
# when the file's stamp is its own before and after.
#
# This file's path: $0 (the first use of %x costs more than the rest of
# this header), unless the user turned FUNCTION_ARGZERO off.
() {
  emulate -L zsh
  local self=$1 bin=$2 dir=${1:h} first= zwc=$1.zwc tmp had
  [[ -n $bin && $self -nt $bin && -x @AI_SESSCTL@ && $self -nt @AI_SESSCTL@ ]] &&
    [[ ! -e $dir/config.toml || $self -nt $dir/config.toml ]] &&
    [[ ! -e $dir/agents.list || $self -nt $dir/agents.list ]] || return 1
  if [[ -f $zwc && ! $self -nt $zwc ]]; then
    zcompile -t $zwc ${self:t} 2>/dev/null && return 0
  fi
  { IFS= read -r first <$self } 2>/dev/null
  [[ $first == '# ai-sessions cache @STAMP@' ]] || return 1
  tmp=$self.$$.zwc
  zmodload -e zsh/files && had=1
  if zmodload -F zsh/files b:zf_mv b:zf_rm 2>/dev/null; then
    if zcompile -UR $tmp $self 2>/dev/null; then
      first=
      { IFS= read -r first <$self } 2>/dev/null
      if [[ $first != '# ai-sessions cache @STAMP@' ]] || ! zf_mv -f $tmp $zwc 2>/dev/null; then
        zf_rm -f $tmp 2>/dev/null
      fi
    fi
    (( ${had:-0} )) || zmodload -u zsh/files 2>/dev/null
  fi
  return 0
} "${${(M)0:#*/init.zsh}:-${(%):-%x}}" "${1-}" || {
  if [[ ${1-} == /*/ai-sessctl && -x ${1-} ]]; then
    eval "$("$1" init zsh)"
  else
    eval "$(@AI_SESSCTL@ init zsh)"
  fi
  return 0
}
typeset -g _AI_SESSIONS_CACHED=1
