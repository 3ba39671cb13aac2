#!/usr/bin/env bash
# Run a command in a terminal (a detached tmux session, 120 x 40) and save what a person would have
# seen: the whole scroll-back of the pane, as text, once the command ends.
#   scripts/capture_console.sh OUT.txt dampeml demo --workdir /tmp/demo
# docs/main-job-console.md holds the main job's capture made this way.
set -euo pipefail
if [ $# -lt 2 ]; then echo "usage: $0 OUT.txt COMMAND [ARGS...]" >&2; exit 2; fi
out=$1; shift
command -v tmux >/dev/null || { echo "error: tmux is not installed" >&2; exit 2; }
session="capture-$$"
done_flag=$(mktemp -u)
cmd=$(printf '%q ' "$@")
tmux start-server \; set-option -g history-limit 100000 \; new-session -d -s "$session" -x 120 -y 40 \
  "$cmd; echo \"[exit code \$?]\"; touch $done_flag; sleep 3600"
trap 'tmux kill-session -t "$session" 2>/dev/null || true; rm -f "$done_flag"' EXIT
while [ ! -e "$done_flag" ]; do sleep 2; done
sleep 1
tmux capture-pane -t "$session" -p -J -S - -E - | sed -e 's/[[:space:]]*$//' | cat -s > "$out"
echo "captured $(wc -l < "$out") lines into $out"
