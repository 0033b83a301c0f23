# GPU: the device collectives (tests/mpi/collective_ranks.c, CUDA build) on 3 ranks. With fewer
# than 3 GPUs the ranks share one, so devcomm_create must pick host staging; with 3 or more it
# picks NCCL. ASYNCRL_NCCL=0 forces host staging in any case.
. tests/integration/lib.sh
prog="$ASYNCRL_BUILD/tests/mpi/collective_ranks"
if [ "$(gpu_count)" = 0 ]; then
    skip "device collectives on GPU" "no GPU visible (nvidia-smi -L)"
    exit 0
fi
run() {  # label, env assignment
    out=$TMP_ROOT/out-$1.txt
    env $2 sh scripts/mpirun.sh 3 "$prog" >"$out" 2>&1
    rc=$?
    grep -E '^(not )?ok ' "$out" | sed "s/\$/ [$1]/"
    [ "$rc" = 0 ] || not_ok "collective job ($1) exited with $rc" "$(tail -5 "$out")"
    path=$(grep -o 'direct broadcast [01]' "$out" | head -1)
    echo "# $1: $path"
}
run auto "ASYNCRL_NCCL=1"
if [ "$(gpu_count)" -ge 3 ]; then
    check "3 ranks on 3 GPUs use NCCL" grep -q 'direct broadcast 1' "$TMP_ROOT/out-auto.txt"
else
    check "3 ranks sharing a GPU use host staging" grep -q 'direct broadcast 0' "$TMP_ROOT/out-auto.txt"
fi
run staged "ASYNCRL_NCCL=0"
check "ASYNCRL_NCCL=0 forces host staging" grep -q 'direct broadcast 0' "$TMP_ROOT/out-staged.txt"
