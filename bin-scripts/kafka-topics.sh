#!/usr/bin/env bash
# Creates, lists, describes, alters and deletes topics:
# kafka-topics.sh --create --zookeeper localhost:2181 --replication-factor 1 --partitions 1 --topic test
exec "$(dirname "$0")/kafka-run-class.sh" kafka-topics "$@"
