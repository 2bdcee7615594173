#!/usr/bin/env bash
# Times produce-then-consume round trips, one record at a time, as Kafka's
# EndToEndLatency: kafka-e2e-latency.sh localhost:9092 test 10000 all 100
exec "$(dirname "$0")/kafka-run-class.sh" kafka-e2e-latency "$@"
