# shellcheck shell=bash
# ai-sessions: the output of `ai-sessctl init bash`, kept by it in the state
# directory so that a new shell loads it without running a program. The line
# install.sh puts in ~/.bashrc sources this file, when the file and its
# directory are the user's own, with the path of ai-sessctl as $1. Stale
# when that binary, the one named below, config.toml or agents.list is newer
# than this file (or $1 is missing): then `ai-sessctl init bash` is asked
# instead, and it rewrites (or re-dates) this file.
_ai_sessions_cache_fresh() {
  local self=$1 bin=$2 dir=${1%/*}
  [[ -n $bin && $self -nt $bin && -x @AI_SESSCTL@ && $self -nt @AI_SESSCTL@ ]] &&
    [[ ! -e $dir/config.toml || $self -nt $dir/config.toml ]] &&
    [[ ! -e $dir/agents.list || $self -nt $dir/agents.list ]]
}
if ! _ai_sessions_cache_fresh "${BASH_SOURCE[0]}" "${1-}"; then
  unset -f _ai_sessions_cache_fresh
  if [[ ${1-} == /*/ai-sessctl && -x ${1-} ]]; then
    eval "$("$1" init bash)"
  else
    eval "$(@AI_SESSCTL@ init bash)"
  fi
  return 0
fi
unset -f _ai_sessions_cache_fresh
_AI_SESSIONS_CACHED=1
