#!/usr/bin/env bash
# The Quick start demo: a task that writes feedback, watched by taskwatcher on the
# default database, listed while it runs, then its history, final feedback and log.
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
echo "\$ taskwatcher control --log $id          # what the task printed, kept in its log"
taskwatcher control --log "$id"
echo "\$ taskwatcher control --wait $id; echo \$?  # its exit status"
set +e
taskwatcher control --wait "$id"
echo $?
