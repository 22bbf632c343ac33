#!/bin/sh
# Runs `worktree.setup` before the agent, inside its container, in the
# project directory, as the agent's user (ai-sessctl wraps the agent's
# command in this script). Usage: sh -c SCRIPT ai-setup N CMD1..CMDN AGENT...
# Each step's output goes where the agent's goes (the instance log). The
# outcome is written next to $AI_SESSION_STATUS_FILE, in the file `setup`:
# `ok`, or `failed CODE COMMAND`, which ai-sessctl waits for and reports.
n=$1
shift
status=/dev/null
[ -n "${AI_SESSION_STATUS_FILE-}" ] && status=${AI_SESSION_STATUS_FILE%/*}/setup
i=0
while [ "$i" -lt "$n" ]; do
    i=$((i + 1))
    step=$1
    shift
    printf 'ai-sessions: setup %s/%s: %s\n' "$i" "$n" "$step"
    # No terminal input: a step that prompts fails instead of hanging.
    sh -c "$step" </dev/null
    code=$?
    if [ "$code" -ne 0 ]; then
        printf 'failed %s %s\n' "$code" "$step" >"$status"
        # shellcheck disable=SC2016 # the backquotes are meant literally
        printf 'ai-sessions: setup command `%s` failed with exit code %s; the agent was not started\n' "$step" "$code" >&2
        exit "$code"
    fi
done
printf 'ok\n' >"$status"
exec "$@"
