#!/usr/bin/env bash
# Stops every broker on this machine with SIGTERM: a controlled shutdown that
# moves leadership away, flushes the logs and exits 0. As Kafka's script does.
pids=$(pgrep -f '(^|/)kafka-server-start( |$)')
if [ -z "$pids" ]; then
    echo "No kafka server to stop"
    exit 1
fi
kill -s TERM $pids
