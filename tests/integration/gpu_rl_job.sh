# GPU: the whole RL job (`asyncrl rl inputs/reverse.cfg`, CUDA build) on ONE GPU with 3 ranks
# (orchestrator, trainer, inference; the trainer and the inference rank share the GPU, so the
# weights travel through host staging). A few steps, then: the job ends cleanly, it really ran
# on the GPU, the metrics file has finite losses for every step, and the reward is a number.
. tests/integration/lib.sh
if [ "$(gpu_count)" = 0 ]; then
    skip "RL job on one GPU" "no GPU visible (nvidia-smi -L)"
    exit 0
fi
if [ ! -f inputs/reverse.cfg ]; then
    skip "RL job on one GPU" "inputs/reverse.cfg is not there yet (the rl job lands on main later)"
    exit 0
fi
steps=${GPU_RL_STEPS:-4}
outdir=$TMP_ROOT/run
log=$TMP_ROOT/job.log
CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0} timeout 900 sh scripts/mpirun.sh 3 "$BIN" rl inputs/reverse.cfg \
    --set run.output_dir="$outdir" --set run.max_steps="$steps" >"$log" 2>&1
rc=$?
if grep -qiE 'unknown (sub)?command|usage: asyncrl' "$log" && [ "$rc" != 0 ]; then
    skip "RL job on one GPU" "this build has no 'rl' subcommand yet"
    exit 0
fi
check "rl job on one GPU exits 0" test "$rc" = 0
[ "$rc" = 0 ] || echo "$(tail -20 "$log" | sed 's/^/# /')"
check "every GPU rank ran on the cuda backend" grep -q 'cuda: GPU' "$log"
metrics=$outdir/metrics.h5
check "metrics.h5 written" test -f "$metrics"
if [ -f "$metrics" ] && command -v h5dump >/dev/null 2>&1; then
    h5dump -d /steps/loss -y -w 0 -o "$TMP_ROOT/loss.txt" "$metrics" >/dev/null 2>&1
    tr ',' '\n' <"$TMP_ROOT/loss.txt" | tr -d ' ' | grep . >"$TMP_ROOT/losses.txt"
    check "a loss for each of the $steps steps" test "$(grep -c . "$TMP_ROOT/losses.txt")" -ge "$steps"
    check "losses are finite" sh -c "! grep -qiE 'nan|inf' '$TMP_ROOT/losses.txt'"
    check "reward_mean recorded" sh -c "h5dump -d /steps/reward_mean '$metrics' >/dev/null 2>&1"
else
    skip "metrics contents" "h5dump not found or no metrics file"
fi
