# ai-sessions plugin for oh-my-zsh / zinit / antidote / antigen: loads the zsh
# integration printed by `ai-sessctl init zsh` when ai-sessctl is on PATH, and
# does nothing (silently) otherwise. See shell/ai-sessions.zsh for settings.
if (( ${+commands[ai-sessctl]} )); then
  eval "$(command ai-sessctl init zsh)"
fi
