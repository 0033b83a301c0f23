# GPU: the weight flow of comm/weights.c (tests/mpi/weights_ranks.c, CUDA build) from the trainer
# root to two inference ranks, parameters in GPU memory: NCCL when 3+ GPUs give the root and the
# inference ranks one each, host staging otherwise (and with ASYNCRL_NCCL=0).
. tests/integration/lib.sh
prog="$ASYNCRL_BUILD/tests/mpi/weights_ranks"
if [ "$(gpu_count)" = 0 ]; then
    skip "weight broadcast on GPU" "no GPU visible (nvidia-smi -L)"
    exit 0
fi
for mode in 1 0; do
    out=$TMP_ROOT/out-$mode.txt
    env ASYNCRL_NCCL=$mode sh scripts/mpirun.sh 4 "$prog" tests/fixtures/config/weights.cfg >"$out" 2>&1
    rc=$?
    grep -E '^(not )?ok ' "$out" | sed "s/\$/ [ASYNCRL_NCCL=$mode]/"
    [ "$rc" = 0 ] || not_ok "weights job (ASYNCRL_NCCL=$mode) exited with $rc" "$(tail -5 "$out")"
    grep 'device collectives' "$out" | head -1 | sed 's/^/# /'
done
