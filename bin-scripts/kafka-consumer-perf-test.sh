#!/usr/bin/env bash
# Measures consumer throughput, as Kafka's tool does:
# kafka-consumer-perf-test.sh --bootstrap-server localhost:9092 --topic test --messages 1000000
exec "$(dirname "$0")/kafka-run-class.sh" kafka-consumer-perf-test "$@"
