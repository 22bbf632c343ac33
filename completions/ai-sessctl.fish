complete --keep-order --exclusive --command ai-sessctl --arguments "(COMPLETE=fish ai-sessctl -- (commandline --current-process --tokenize --cut-at-cursor) (commandline --current-token))"
