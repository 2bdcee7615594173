#!/usr/bin/env bash
# Measures producer throughput and latency, as Kafka's tool does:
# kafka-producer-perf-test.sh --topic test --num-records 1000000 --record-size 100 \
#     --throughput -1 --producer-props bootstrap.servers=localhost:9092 acks=1
exec "$(dirname "$0")/kafka-run-class.sh" kafka-producer-perf-test "$@"
