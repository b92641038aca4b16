#!/usr/bin/env bash
# The Quick start demo: a task that writes feedback, watched by taskwatcher on the
# default database, listed while it runs, then its history and final feedback.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
feed=$(mktemp -d)
trap 'rm -rf "$feed"' EXIT

echo "\$ taskwatcher control --reserve --name demo --info1 'quick start'"
id=$(taskwatcher control --reserve --name demo --info1 "quick start")
echo "$id"

echo "\$ taskwatcher launch --detach --taskid $id --feedpath $feed --timeout 5 -- python3 progress_task.py {feedback}"
taskwatcher launch --detach --taskid "$id" --feedpath "$feed" --timeout 5 \
    -- python3 "$here/progress_task.py" "{feedback}" 8 0.5

while taskwatcher control --list --json | grep -q "\"$id\""; do
    echo
    echo "\$ taskwatcher control --list"
    taskwatcher control --list
    echo "\$ taskwatcher control --feedback $id"
    taskwatcher control --feedback "$id"
    sleep 1
done

echo
echo "\$ taskwatcher control --history"
taskwatcher control --history
echo "\$ taskwatcher control --feedback $id     # the final feedback, kept in history"
taskwatcher control --feedback "$id"
db=${TASKWATCHER_DB:-${XDG_STATE_HOME:-$HOME/.local/state}/taskwatcher/taskwatcher.db}
echo
echo "The database is $db; the task's output is in its log file:"
taskwatcher control --history --json | python3 -c \
    "import json,sys; e=[v for v in json.load(sys.stdin).values() if v['taskid']==$id][0]; print(e['logfile'])"
