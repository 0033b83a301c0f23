#!/bin/sh
# RL steps per second with async_level 1 and in-flight weight updates against synchronous
# on-policy RL (async_level 0), in one run, on the default job's task (a tiny reverse-text model
# after a short warm-up). The trainer rank is pinned to core 0 and the inference rank to core 1
# (one thread each); the orchestrator sleeps while it waits and floats. Synchronous RL leaves
# each side idle while the other works; async overlaps them. Prints Markdown table rows.
#
#   sh benchmarks/bench_async.sh [BUILD] [STEPS]
set -eu
BUILD=${1:-build}
STEPS=${2:-60}
PY=/usr/bin/python3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

if [ "$(nproc)" -lt 2 ]; then echo "| RL steps/s | needs 2 cores | | |"; exit 0; fi

# One rank per core by the rank's number: 1 = trainer -> core 0, 2 = inference -> core 1. The
# orchestrator (rank 0) floats; it mostly sleeps, and a higher priority (as root) lets it cut in
# at once when a message arrives, instead of waiting for a busy core's time slice.
cat >"$TMP/pin.sh" <<'PIN'
#!/bin/sh
case "${OMPI_COMM_WORLD_RANK:-0}" in
    1) exec taskset -c 0 "$@" ;;
    2) exec taskset -c 1 "$@" ;;
    *) if [ "$(id -u)" = 0 ]; then exec nice -n -10 "$@"; else exec "$@"; fi ;;
esac
PIN

steps_per_s() {  # LEVEL -> steps/s over the RL steps (after the first few)
    out=$TMP/run$1
    sh scripts/mpirun.sh 3 sh "$TMP/pin.sh" "$BUILD/asyncrl" rl ${BENCH_ASYNC_CFG:-inputs/reverse.cfg} --set run.output_dir="$out" \
        --set run.max_steps="$STEPS" --set run.async_level="$1" --set run.threads=1 --set eval.problems=0 \
        --set eval.interval=0 --set checkpoint.at_end=false --set checkpoint.interval=0 >"$out.log" 2>&1
    $PY - "$out/metrics.h5" <<'PYEOF'
import sys, h5py
t = h5py.File(sys.argv[1], "r")["steps/timing/elapsed_s"][:]
skip = 5  # warm-up of the pipeline
print(f"{(len(t) - 1 - skip) / (t[-1] - t[skip]):.3f}")
PYEOF
}

sync=$(steps_per_s 0)
async=$(steps_per_s 1)
ratio=$(awk -v a="$async" -v s="$sync" 'BEGIN { printf "%.2fx", a / s }')
echo "| RL steps/s, reverse default job, $STEPS steps, trainer and inference pinned to a core each | async_level 1: $async | async_level 0: $sync | $ratio |"
