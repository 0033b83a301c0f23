# Short RL runs on 3 ranks, 4 ranks (two trainers) and 5 ranks (two inference): each completes,
# learns (reward rises), and the staleness bounds of DESIGN.md section 2 hold in the rollout
# table: async (default), synchronous (async_level 0), deterministic, and multi-turn with no
# in-flight slack. The 5-rank run keeps its KV cache in fp16 (inference.kv_cache_dtype), the
# others in fp32.
. tests/integration/lib.sh
PY=/usr/bin/python3
if ! $PY -c 'import h5py' 2>/dev/null; then skip "rl runs" "python3-h5py is missing (make deps installs it)"; exit 0; fi

run() {  # name np mode k margin [--set ...]
    name=$1; np=$2; mode=$3; k=$4; margin=$5; shift 5
    out=$TMP_ROOT/$name
    if job "$np" rl inputs/test_reverse.cfg --set run.output_dir="$out" "$@" >"$out.log" 2>&1; then
        ok "$name: the job completes"
        $PY tests/integration/check_run.py "$out/metrics.h5" "$mode" "$k" "${MAX_OFF:-8}" $margin | sed "s/^\(ok\|not ok\) - /\1 - $name: /"
    else
        not_ok "$name: the job completes" "$(tail -5 "$out.log")"
    fi
}

# The async runs take 100 steps with margin 0.02. Which policy version samples what depends on
# timing, and with two trainers the gain varies widely: at 60 steps it was 0.024-0.058 over 12
# runs (once 0.020 in CI). At 100 steps 28 runs of the 4- and 5-rank jobs (some beside a busy
# loop) gained 0.057-0.090, and the 4-rank job with a learning rate of 1e-9 gains 0.001.
LONG="--set run.max_steps=100"
run "3 ranks, async" 3 async 1 0.02 $LONG
run "4 ranks, two trainers" 4 async 1 0.02 $LONG --set ranks.trainers=2
run "5 ranks, two trainers, two inference, fp16 KV cache" 5 async 1 0.02 $LONG --set ranks.trainers=2 \
    --set ranks.inference=2 --set inference.kv_cache_dtype=fp16
run "3 ranks, async_level 0" 3 sync 0 "" --set run.async_level=0 --set run.max_steps=10
run "4 ranks, async_level 2, deterministic" 4 deterministic 2 "" --set run.async_level=2 --set run.deterministic=true \
    --set ranks.inference=2 --set run.max_steps=10
# The bound with no in-flight slack (max_off_policy_steps 0) on a multi-turn task: each turn is
# a request of its own, so only the orchestrator can see a sample's earlier turns (and a group
# waiting in the ready buffer) grow too old; such groups start over.
MAX_OFF=0 run "3 ranks, multi-turn, max_off_policy_steps 0" 3 async 1 "" --set run.max_steps=15 --set sft.steps=0 \
    --set 'env.tasks=["guess"]' --set model.max_seq_len=256 --set trainer.seq_len=256 --set inference.max_tokens=8 \
    --set orchestrator.max_off_policy_steps=0 --set orchestrator.drop_zero_advantage=false --set eval.problems=0
