#!/usr/bin/env bash
# Builds the release binaries (on first use) and runs a single-node cluster
# in the foreground: the coordinator from config/zookeeper.properties and one
# broker from config/server.properties, on Kafka's default ports with data
# under /tmp. Ctrl-C stops both cleanly (the broker first, with a controlled
# shutdown, then the coordinator).
#
# Extra arguments go to the broker, e.g. --override num.partitions=3.
set -euo pipefail

base_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin="$base_dir/bin-scripts"

# Build once up front so the two daemons do not both try to.
"$bin/kafka-run-class.sh" --build

"$bin/zookeeper-server-start.sh" "$base_dir/config/zookeeper.properties" &
zookeeper=$!
"$bin/kafka-server-start.sh" "$base_dir/config/server.properties" "$@" &
broker=$!

stop() {
    trap - INT TERM
    kill -TERM "$broker" 2>/dev/null || true
    wait "$broker" 2>/dev/null || true
    kill -TERM "$zookeeper" 2>/dev/null || true
    wait "$zookeeper" 2>/dev/null || true
}
trap stop INT TERM

# Either daemon exiting on its own (a port in use, say) stops the other.
status=0
wait -n "$zookeeper" "$broker" || status=$?
stop
exit "$status"
