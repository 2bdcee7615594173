#!/usr/bin/env bash
# Sends each line of standard input as one message:
# kafka-console-producer.sh --broker-list localhost:9092 --topic test
exec "$(dirname "$0")/kafka-run-class.sh" kafka-console-producer "$@"
