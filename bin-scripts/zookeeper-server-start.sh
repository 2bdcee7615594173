#!/usr/bin/env bash
# Starts the coordination server (ZooKeeper's replacement and the cluster
# controller): zookeeper-server-start.sh config/zookeeper.properties
exec "$(dirname "$0")/kafka-run-class.sh" zookeeper-server-start "$@"
