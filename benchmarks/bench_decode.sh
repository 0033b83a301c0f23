#!/bin/sh
# Inference engine throughput on CPU (benchmarks/bench_decode.c) against transformers'
# generate with its KV cache (benchmarks/bench_decode_torch.py), same model, same workload,
# same thread count. Prints Markdown table rows for benchmarks/run.sh's table:
#   | decode MODEL, N sequences | asyncrl tokens/s | PyTorch tokens/s | ratio |
#
#   sh benchmarks/bench_decode.sh [BUILD] [THREADS] [REPEATS]
# Models: ../shared/models/stories260K.bin (skipped when absent) and the stories15M shape with
# random weights (dim 288, 6 layers, vocab 32000). N = 1, 8, 64 and 256 sequences with 16-token
# prompts sampling 128 new tokens at temperature 1 (no stop tokens), and prefill of 8 prompts
# of context - 8 tokens. Each number is the best of REPEATS runs (the machine may be shared);
# before each program the script waits up to QUIET_WAIT seconds (default 60) for the 1-minute
# load average to drop below 1. TORCH=0 skips the PyTorch side (also skipped without torch).
# Then, for each model, the engine with an fp16 KV cache (1 and 64 sequences; PyTorch's cache
# stays fp32, so no ratio), and the issue's goal: 64 sequences against our own single stream,
# with each cache type. Last, that goal on the stories110M shape (fp16 cache; ~1 minute).
set -u
BUILD=${1:-build}
THREADS=${2:-2}
REPEATS=${3:-2}
MODELS=${ASYNCRL_MODELS:-../shared/models}
# OpenBLAS runs one thread inside each OpenMP thread (kernels/cpu/memory.c); without this its
# own idle pool spins next to them for a while after start-up.
export OPENBLAS_NUM_THREADS=1
[ -x "$BUILD/bench/bench_decode" ] || make --no-print-directory -s "$BUILD/bench/bench_decode" >&2 || exit 1
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

wait_quiet() {
    waited=0
    while [ "$waited" -lt "${QUIET_WAIT:-60}" ] && ! awk '{ exit !($1 < 1.0) }' /proc/loadavg; do
        sleep 5
        waited=$((waited + 5))
    done
}

have_torch=0
[ "${TORCH:-1}" != 0 ] && python3 -c "import torch, transformers" 2>/dev/null && have_torch=1

# tok/s of the line starting with PREFIX in FILE (empty when absent).
rate() { grep "^$2 " "$1" | head -1 | sed -n 's/.* tok\/s=\([0-9.]*\).*/\1/p'; }

models="stories15M-shape"
[ -r "$MODELS/stories260K.bin" ] && models="$MODELS/stories260K.bin $models"
for m in $models; do
    name=$(basename "$m" .bin)
    wait_quiet
    "$BUILD/bench/bench_decode" "$m" --threads "$THREADS" --repeat "$REPEATS" >"$TMP/ours" 2>&1
    : >"$TMP/torch"
    if [ "$have_torch" = 1 ]; then
        wait_quiet
        python3 benchmarks/bench_decode_torch.py "$m" --threads "$THREADS" --repeat "$REPEATS" >"$TMP/torch" 2>/dev/null
    fi
    for line in "decode seqs=1" "decode seqs=8" "decode seqs=64" "decode seqs=256" "prefill seqs=8"; do
        ours=$(rate "$TMP/ours" "$line")
        torch=$(rate "$TMP/torch" "$line")
        ratio=$(awk -v a="${ours:-0}" -v b="${torch:-0}" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "n/a" }')
        [ -n "$torch" ] || torch="n/a (no torch)"
        case "$line" in
            decode*) what="decode $name, ${line#decode seqs=} sequences" ;;
            *) what="prefill $name, 8 prompts" ;;
        esac
        echo "| $what | ${ours:-failed} | $torch | $ratio |"
    done
    wait_quiet
    "$BUILD/bench/bench_decode" "$m" --threads "$THREADS" --repeat "$REPEATS" --seqs 1,64 --prefill-seqs 0 \
        --kv-cache fp16 >"$TMP/ours16" 2>&1
    for n in 1 64; do
        echo "| decode $name, $n sequences, fp16 KV cache | $(rate "$TMP/ours16" "decode seqs=$n" || true) | n/a (fp32 cache) | |"
    done
    for kv in fp32 fp16; do
        f=$TMP/ours; [ "$kv" = fp16 ] && f=$TMP/ours16
        one=$(rate "$f" "decode seqs=1"); many=$(rate "$f" "decode seqs=64")
        r=$(awk -v a="${many:-0}" -v b="${one:-0}" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "n/a" }')
        echo "| decode $name, 64 sequences vs our single stream ($kv KV cache) | $r | | |"
    done
done

# The same goal on the stories110M shape (random weights), whose 440 MB of fp32 weights a single
# stream must read from memory every token on most machines, where the two models above fit in
# a large L3 (no PyTorch side: one goal line, fp16 cache).
wait_quiet
"$BUILD/bench/bench_decode" stories110M-shape --threads "$THREADS" --repeat "$REPEATS" --seqs 1,64 --prefill-seqs 0 \
    --kv-cache fp16 >"$TMP/ours110" 2>&1
for n in 1 64; do
    echo "| decode stories110M-shape, $n sequences, fp16 KV cache | $(rate "$TMP/ours110" "decode seqs=$n" || true) | | |"
done
one=$(rate "$TMP/ours110" "decode seqs=1"); many=$(rate "$TMP/ours110" "decode seqs=64")
r=$(awk -v a="${many:-0}" -v b="${one:-0}" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "n/a" }')
echo "| decode stories110M-shape, 64 sequences vs our single stream (fp16 KV cache) | $r | | |"
