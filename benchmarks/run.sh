#!/bin/sh
# Benchmarks. `make bench` builds BUILD/bench/* and runs this script; each step below prints
# Markdown table rows, and the whole run is appended to benchmarks/RESULTS.md as one dated
# section with the machine, the command and the load average (other work on the machine skews
# timings: compare numbers taken at a low load). To add a benchmark, write a step function
# and call it in the list at the end.
#
#   sh benchmarks/run.sh [BUILD]          BENCH_THREADS (default 2), BENCH_REPEATS (default 2)
set -eu
BUILD=${1:-build}
# The CUDA build (make CUDA=1 bench) has its own suite: GPU name, training MFU, decode against
# the HBM bound, broadcast bandwidth (benchmarks/gpu/README.md).
if [ "${ASYNCRL_CUDA:-0}" = 1 ]; then exec sh benchmarks/gpu/run.sh "$BUILD"; fi
THREADS=${BENCH_THREADS:-2}
REPEATS=${BENCH_REPEATS:-2}
RESULTS=benchmarks/RESULTS.md
export OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS=1

machine() {
    cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
    cores=$(nproc 2>/dev/null || echo "?")
    mem=$(free -g 2>/dev/null | awk '/^Mem:/ {print $2 " GiB"}')
    echo "${cpu:-unknown CPU}, $cores cores, ${mem:-? GiB}, $(uname -sr)"
}

# The larger of two numbers (either may be empty).
best() { awk -v a="${1:-0}" -v b="${2:-0}" 'BEGIN { print (a + 0 > b + 0) ? a : b }'; }

# Step: training throughput (tokens/s of forward + backward + clipped AdamW on packed rows,
# median step of each run), asyncrl and the same step in PyTorch (transformers'
# LlamaForCausalLM) at the same thread count, run alternately REPEATS times, best of each kept.
train_step() {  # SHAPE ROWS SEQ STEPS
    ours=0; torch=0
    i=0
    while [ "$i" -lt "$REPEATS" ]; do
        a=$("$BUILD/bench/bench_train" "$1" "$2" "$3" "$4" "$THREADS" 2>/dev/null | awk '{print $4}') || a=0
        ours=$(best "$ours" "$a")
        t=$(python3 benchmarks/bench_train_torch.py "$1" "$2" "$3" "$4" "$THREADS" 2>/dev/null | awk '{print $4}') || t=0
        torch=$(best "$torch" "$t")
        i=$((i + 1))
    done
    ratio=$(awk -v a="$ours" -v b="$torch" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }')
    [ "$torch" = 0 ] && torch="n/a (no torch)"
    echo "| train $1, $2 x $3 tokens/step | $ours | $torch | $ratio |"
}

report() {
    echo
    echo "## $(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo
    echo "Machine: $(machine). Load average before: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "Command: \`make bench\` (sh benchmarks/run.sh $BUILD), $THREADS threads, training: median step of each run, best of $REPEATS alternating runs."
    echo
    echo "| benchmark | asyncrl tokens/s | PyTorch tokens/s | asyncrl / PyTorch |"
    echo "|---|---|---|---|"
    # --- the steps ---
    train_step stories260K 4 512 7
    train_step stories15M 8 256 5
    sh benchmarks/bench_decode.sh "$BUILD" "$THREADS" "$REPEATS" || echo "| decode | failed | | |"
    # --- end of steps ---
    echo
    echo "| RL job | steps/s | steps/s | speed-up |"
    echo "|---|---|---|---|"
    sh benchmarks/bench_async.sh "$BUILD" 60 || echo "| RL steps/s | failed | | |"
    echo
    echo "Machine limits (\`bench_machine --threads $THREADS\`: FMA peak, streaming read, packed decode GEMM of the"
    echo "stories15M output layer at 64 rows): $("$BUILD/bench/bench_machine" --threads "$THREADS" 2>&1 | tr '\n' ';' | sed 's/;$//; s/;/; /g')."
    echo
    echo "Load average after: $(cut -d' ' -f1-3 /proc/loadavg)."
}

out=$(mktemp)
report | tee "$out"
cat "$out" >>"$RESULTS"
rm -f "$out"
echo "appended to $RESULTS"
