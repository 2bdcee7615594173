#!/usr/bin/env bash
# Starts a broker: kafka-server-start.sh config/server.properties [--override property=value]*
exec "$(dirname "$0")/kafka-run-class.sh" kafka-server-start "$@"
