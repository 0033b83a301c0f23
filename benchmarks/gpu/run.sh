#!/bin/sh
# GPU benchmarks of the CUDA build: op throughput, training tokens/s and MFU for the Llama shape
# of benchmarks/gpu/README.md, decode tokens/s at 1, 64 and 256 sequences against the HBM
# bound, and weight-broadcast / all-reduce bandwidth. Appends a section
# with the GPU's name, the commit and the commands to benchmarks/RESULTS.md.
# Usage: sh benchmarks/gpu/run.sh [BUILD]   (BUILD defaults to build/cuda; make CUDA=1 bench-gpu)
# ASYNCRL_PEAK_TFLOPS overrides the dense bf16 peak used for MFU (guessed from the GPU name).
set -u
BUILD=${1:-build/cuda}
RESULTS=benchmarks/RESULTS.md
for b in bench_gpu_ops bench_gpu_train bench_gpu_decode bench_gpu_broadcast; do
    [ -x "$BUILD/bench/gpu/$b" ] || { echo "missing $BUILD/bench/gpu/$b: run make CUDA=1 bench-gpu"; exit 2; }
done
command -v nvidia-smi >/dev/null 2>&1 || { echo "nvidia-smi not found: these benchmarks need a GPU"; exit 2; }
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
gpus=$(nvidia-smi -L | wc -l)
# Dense bf16 tensor-core peaks (TFLOPS) and HBM bandwidth (TB/s) from NVIDIA's data sheets.
case "$gpu" in
    *H200*) peak=989; hbm=4.8 ;;
    *H100*PCIe*) peak=756; hbm=2.0 ;;
    *H100*NVL*) peak=835; hbm=3.9 ;;
    *H100*) peak=989; hbm=3.35 ;;
    *A100*80GB*) peak=312; hbm=2.0 ;;
    *A100*) peak=312; hbm=1.55 ;;
    *) peak=0; hbm=0 ;;
esac
peak=${ASYNCRL_PEAK_TFLOPS:-$peak}
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
out=$(mktemp)
{
    echo "## GPU benchmarks: $gpu ($gpus visible), commit $commit, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Peak used for MFU: $peak TFLOPS dense bf16; HBM $hbm TB/s."
    echo
    echo '```'
    echo "\$ $BUILD/bench/gpu/bench_gpu_ops"
    "$BUILD/bench/gpu/bench_gpu_ops" 2>&1
    echo "\$ $BUILD/bench/gpu/bench_gpu_train 1024 24 16 16 2816 32000 2048 4 10 $peak"
    "$BUILD/bench/gpu/bench_gpu_train" 1024 24 16 16 2816 32000 2048 4 10 "$peak" 2>"$out.err"
    tail -3 "$out.err"
    for np in 2 3; do
        echo "\$ mpirun -np $np $BUILD/bench/gpu/bench_gpu_broadcast 370000000 5"
        sh scripts/mpirun.sh "$np" "$BUILD/bench/gpu/bench_gpu_broadcast" 370000000 5 2>&1 | grep -v '^\[' | tail -4
    done
    for seqs in 1 64 256; do
        echo "\$ $BUILD/bench/gpu/bench_gpu_decode $seqs 128 64 $hbm"
        "$BUILD/bench/gpu/bench_gpu_decode" "$seqs" 128 64 "$hbm" 2>&1 | tail -1
    done
    echo '```'
    echo
} | tee "$out"
cat "$out" >>"$RESULTS"
rm -f "$out" "$out.err"
echo "appended to $RESULTS"
