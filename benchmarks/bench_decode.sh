#!/bin/sh
# Inference engine throughput on CPU against transformers' generate (the PyTorch baseline),
# same model, same workload, same thread count. Prints a Markdown section on stdout.
#   sh benchmarks/bench_decode.sh BUILD [THREADS]
# Models: ../shared/models/stories260K.bin (skipped when absent) and the stories15M shape with
# random weights. Concurrency 1, 8, 64 and 256 sequences (16-token prompts, 128 new tokens at
# temperature 1), and prefill of 8 prompts. Each number is the best of a few runs (REPEAT),
# since the machine may be shared; the load average is printed before and after.
# The PyTorch side needs python3 with torch and transformers (skipped otherwise); set
# TORCH=0 to skip it. Before each program, waits up to QUIET_WAIT seconds (default 120) for the
# 1-minute load average to drop below 1, so that other work on a shared machine disturbs less.
set -u
BUILD=${1:-build}
THREADS=${2:-2}
REPEAT=${REPEAT:-3}
MODELS=${ASYNCRL_MODELS:-../shared/models}
# OpenBLAS runs one thread inside each OpenMP thread (kernels/cpu/memory.c); without this its
# own idle pool spins next to them for a while after start-up.
export OPENBLAS_NUM_THREADS=1
make --no-print-directory -s "$BUILD/bench/bench_decode" >&2 || exit 1

wait_quiet() {
    waited=0
    while [ "$waited" -lt "${QUIET_WAIT:-120}" ] && ! awk '{ exit !($1 < 1.0) }' /proc/loadavg; do
        sleep 5
        waited=$((waited + 5))
    done
}

models="stories15M-shape"
[ -r "$MODELS/stories260K.bin" ] && models="$MODELS/stories260K.bin $models"
have_torch=0
[ "${TORCH:-1}" != 0 ] && python3 -c "import torch, transformers" 2>/dev/null && have_torch=1

echo "### Inference decode / prefill ($(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null))"
echo
echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores;" \
     "$THREADS threads; OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-default}; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
for m in $models; do
    echo "asyncrl engine, $m:"
    echo '```'
    echo "\$ $BUILD/bench/bench_decode $m --threads $THREADS --repeat $REPEAT"
    wait_quiet
    echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    "$BUILD/bench/bench_decode" "$m" --threads "$THREADS" --repeat "$REPEAT"
    echo '```'
    if [ "$have_torch" = 1 ]; then
        echo "transformers generate (KV cache), $m:"
        echo '```'
        echo "\$ python3 benchmarks/bench_decode_torch.py $m --threads $THREADS --repeat ${TORCH_REPEAT:-2}"
        wait_quiet
        echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
        python3 benchmarks/bench_decode_torch.py "$m" --threads "$THREADS" --repeat "${TORCH_REPEAT:-2}" 2>/dev/null
        echo '```'
    else
        echo "(transformers baseline skipped: no python3 with torch and transformers, or TORCH=0)"
    fi
    echo
done
echo "Load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
