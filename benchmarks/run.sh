#!/bin/sh
# Runs every benchmark script benchmarks/bench_*.sh (each prints a Markdown section) and
# appends their output to benchmarks/RESULTS.md.   Usage: sh benchmarks/run.sh BUILD
set -u
BUILD=${1:-build}
out=benchmarks/RESULTS.md
[ -f "$out" ] || printf '# Benchmark results\n\nAppended by `make bench` (benchmarks/run.sh).\n' >"$out"
for script in benchmarks/bench_*.sh; do
    [ -f "$script" ] || continue
    echo "== $script" >&2
    { echo; sh "$script" "$BUILD"; } | tee -a "$out"
done
