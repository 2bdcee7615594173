#!/usr/bin/env bash
# Runs one of the project's binaries: kafka-run-class.sh <binary> [args...]
# (kafka-run-class.sh --build only makes sure the binaries are built.)
#
# Every other script in bin-scripts/ is a one-line wrapper around this one, as
# in Kafka. It works from any directory, builds the release binaries on first
# use if they are missing (and again when the sources are newer than them),
# and execs the binary so that signals and the exit status pass straight
# through.
#
# KAFKA_RS_BIN_DIR, if set, names a directory holding the binaries to run
# instead (the Docker image and the test harness use it).
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "USAGE: $0 binary [args...]" >&2
    exit 1
fi
binary=$1
shift

base_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The binary whose presence says the build is done.
probe=$binary
[ "$binary" = "--build" ] && probe=kafka-server-start

if [ -n "${KAFKA_RS_BIN_DIR:-}" ]; then
    bin_dir=$KAFKA_RS_BIN_DIR
else
    bin_dir=${CARGO_TARGET_DIR:-$base_dir/target}/release
    if [ ! -x "$bin_dir/$probe" ]; then
        echo "Building the release binaries (first use; this takes a few minutes)..." >&2
        cargo build --release --workspace --bins --manifest-path "$base_dir/Cargo.toml" >&2
    elif [ -n "$(find "$base_dir/crates" "$base_dir/Cargo.lock" -newer "$bin_dir/$probe" -type f -print -quit 2>/dev/null)" ]; then
        # Sources changed since the build (a git pull, say): never run stale binaries.
        echo "Sources changed since the last build; rebuilding the release binaries..." >&2
        cargo build --release --workspace --bins --manifest-path "$base_dir/Cargo.toml" >&2
        touch "$bin_dir/$probe"
    fi
fi

if [ "$binary" = "--build" ]; then
    exit 0
fi
if [ ! -x "$bin_dir/$binary" ]; then
    echo "ERROR: no binary '$binary' in $bin_dir" >&2
    exit 1
fi
exec "$bin_dir/$binary" "$@"
