#!/usr/bin/env bash
# Prints a topic's messages, one per line:
# kafka-console-consumer.sh --bootstrap-server localhost:9092 --topic test --from-beginning
exec "$(dirname "$0")/kafka-run-class.sh" kafka-console-consumer "$@"
