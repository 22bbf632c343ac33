# ai-sessions plugin for oh-my-zsh / zinit / antidote / antigen: loads the zsh
# integration when ai-sessctl is on PATH, and does nothing (silently)
# otherwise: the copy `ai-sessctl init zsh` keeps in the state dir when it and
# the dir are the user's own (no fork), else `ai-sessctl init zsh` itself.
# See shell/ai-sessions.zsh for settings.
if (( ${+commands[ai-sessctl]} )); then
  if [[ -O ${AI_SESSIONS_HOME:-${HOME-}/.ai-sessions} && -O ${AI_SESSIONS_HOME:-${HOME-}/.ai-sessions}/init.zsh ]]; then
    . "${AI_SESSIONS_HOME:-${HOME-}/.ai-sessions}/init.zsh" "${commands[ai-sessctl]}"
  else
    eval "$(command ai-sessctl init zsh)"
  fi
fi
