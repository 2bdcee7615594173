#!/usr/bin/env bash
# The whole-cluster benchmark suite: builds the release binaries, starts its
# own clusters (temp dirs, free ports on 127.0.0.1), runs the standard cases
# with the perf tools, measures the machine's limits in the same run and
# writes the results into BENCHMARKS.md (its own section; the rest is kept).
#
#   bin-scripts/benchmark.sh                # the full run
#   BENCH_QUICK=1 bin-scripts/benchmark.sh  # small counts, under two minutes
#
# BENCH_OUT=path writes the section to another file instead.
set -euo pipefail
base_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${KAFKA_RS_BIN_DIR:-}" ]; then
    cargo build --release --workspace --bins --manifest-path "$base_dir/Cargo.toml" >&2
fi
exec python3 "$base_dir/bin-scripts/benchmark.py"
