#!/usr/bin/env bash
# Stops every running coordination server gracefully (SIGTERM), as Kafka's
# zookeeper-server-stop.sh does. Exits 1 when none is running.
#
# A process counts when its program (the first word of its command line)
# is the zookeeper-server-start binary: the start script execs it, and a
# shell or editor that merely mentions the name is left alone.
set -euo pipefail

signal=${1:-TERM}
pids=$(ps -eo pid=,args= | awk '{ n = split($2, path, "/"); if (path[n] == "zookeeper-server-start") print $1 }')

if [ -z "$pids" ]; then
    echo "No zookeeper server to stop"
    exit 1
fi
# shellcheck disable=SC2086
kill -s "$signal" $pids
