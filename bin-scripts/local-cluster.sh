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

# Each daemon in its own session: Ctrl-C reaches only this script, which
# then stops them in order (a terminal would signal both at once).
setsid "$bin/zookeeper-server-start.sh" "$base_dir/config/zookeeper.properties" &
zookeeper=$!
setsid "$bin/kafka-server-start.sh" "$base_dir/config/server.properties" "$@" &
broker=$!

asked_to_stop=0
stop() {
    trap - INT TERM
    kill -TERM "$broker" 2>/dev/null || true
    wait "$broker" 2>/dev/null || true
    kill -TERM "$zookeeper" 2>/dev/null || true
    wait "$zookeeper" 2>/dev/null || true
}
trap 'asked_to_stop=1; stop' INT TERM

# The cluster lives as long as the coordinator: a broker that dies (the
# quickstart kills one with kill -9) can be started again by hand, as in
# Kafka; the coordinator exiting on its own (a port in use, say) ends it.
status=0
wait "$zookeeper" || status=$?
stop
# Stopped by Ctrl-C or SIGTERM: both daemons shut down cleanly, so exit 0.
[ "$asked_to_stop" = 1 ] && status=0
exit "$status"
