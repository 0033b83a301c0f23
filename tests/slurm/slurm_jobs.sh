# The Slurm job scripts under a real Slurm on this machine (make test-slurm; needs root to
# install and start slurmctld, slurmd and munge, else it skips; tests/slurm/cluster.sh makes
# the cluster: two nodes on this host with 2 pretend GPUs each). Submitted side by side:
#   - jobs/debug_cpu.sbatch, launched with srun (PMIx): goes to run.max_steps in one allocation;
#   - jobs/debug_cpu.sbatch needing longer than its 1-minute limit (--time=1
#     --signal=B:USR1@30), launched with mpirun: Slurm's warning signal reaches the ranks, they
#     checkpoint and exit 0, the job requeues itself and the next allocations resume until
#     run.max_steps;
#   - jobs/gpu_node.sbatch with the CPU binary on the pretend GPUs: every rank sees every GPU;
#   - jobs/multi_node.sbatch on both nodes, with srun and with mpirun: rank 0 and the trainer
#     on the first node, the inference rank on the second;
#   - a job whose task count does not match the config: it fails at once, saying so.
# Every job runs `asyncrl rl` on inputs/slurm_debug.cfg (3 ranks, a checkpoint every step)
# through tests/slurm/where.sh, which has each rank print its node and GPUs first.
. tests/integration/lib.sh
. tests/slurm/cluster.sh

cleanup() { cluster_stop; rm -rf "$TMP_ROOT"; }
trap cleanup EXIT
trap 'exit 1' INT TERM
ROOT=$(pwd)
D=$TMP_ROOT

if ! cluster_install; then
    skip "slurm cluster" "$CLUSTER_WHY"
    exit 0
fi
if ! cluster_start "$D/cluster"; then
    skip "slurm cluster" "$CLUSTER_WHY"
    exit 0
fi
ok "local slurm cluster up: $(sinfo -h -N -o '%N (%c CPUs, %G) %t' | tr '\n' ' ')"

# The real job, each rank first saying where it runs (tests/slurm/where.sh).
if ! "$BIN" --help 2>/dev/null | grep -q '^  rl '; then
    not_ok "$BIN has an rl command" "$("$BIN" --help 2>&1 | head -5)"
    exit 1
fi
export ASYNCRL_CMD="sh $ROOT/tests/slurm/where.sh $ROOT/$BIN"
export OMP_NUM_THREADS=1
steps_debug=4
steps_long=${SLURM_TEST_LONG_STEPS:-20}
export ASYNCRL_ROOT="$ROOT" ASYNCRL_BIN="$ROOT/$BIN"
# Containers often forbid the ptrace-based single-copy shared-memory transport.
export OMPI_MCA_btl_vader_single_copy_mechanism=none

# submit NAME LAUNCHER SBATCH_OPTIONS... -- SCRIPT ARGS...: the job id (or sbatch's error).
submit() {
    name=$1 launcher=$2
    shift 2
    ASYNCRL_LAUNCHER=$launcher sbatch --parsable --output="$D/$name.out" "$@" 2>&1
}
cfg="inputs/slurm_debug.cfg"
# (The GPU and multi-node scripts ask for a signal 300 s before the limit: these short jobs
# get a longer limit and a later signal, so that no signal comes.)
later="--time=10 --signal=B:USR1@30"
two_nodes="--nodes=2 --ntasks-per-node=3 --gpus-per-node=2 --oversubscribe $later"
debug_id=$(submit debug srun jobs/debug_cpu.sbatch $cfg --set run.output_dir="$D/debug" --set run.max_steps=$steps_debug)
long_id=$(submit long mpirun --time=1 --signal=B:USR1@30 jobs/debug_cpu.sbatch $cfg \
    --set run.output_dir="$D/long" --set run.max_steps=$steps_long)
# shellcheck disable=SC2086
gpu_id=$(submit gpu auto --ntasks=3 --gpus-per-node=2 --cpus-per-task=1 $later \
    jobs/gpu_node.sbatch $cfg --set run.output_dir="$D/gpu" --set run.max_steps=$steps_debug)
multi_id="" multi2_id=""
if [ "$(echo $CLUSTER_NODES | wc -w)" = 2 ]; then
    # shellcheck disable=SC2086
    multi_id=$(ASYNCRL_GPUS_PER_NODE=2 ASYNCRL_CPUS_PER_TASK=1 submit multi srun $two_nodes jobs/multi_node.sbatch $cfg \
        --set run.output_dir="$D/multi" --set run.max_steps=$steps_debug)
    # shellcheck disable=SC2086
    multi2_id=$(ASYNCRL_GPUS_PER_NODE=2 ASYNCRL_CPUS_PER_TASK=1 submit multi2 mpirun $two_nodes jobs/multi_node.sbatch $cfg \
        --set run.output_dir="$D/multi2" --set run.max_steps=$steps_debug)
fi
bad_id=$(submit bad srun --ntasks=4 jobs/debug_cpu.sbatch $cfg --set run.output_dir="$D/bad")
all=$(echo $debug_id $long_id $gpu_id $multi_id $multi2_id $bad_id)
case "$all" in
    *[!0-9\ ]*) not_ok "sbatch submits every job" "$all"; exit 1 ;;
esac
ok "sbatch submits the jobs ($all)"

# The long job requeues itself. Between two allocations Slurm can show it in a finished state
# for a moment (a CI run's wait ended while the job went on to its third allocation), so it has
# ended only once its last allocation decided not to requeue it (the job script's last word on
# it, jobs/lib/asyncrl_job.sh), or once it has looked finished for 20 s (an allocation killed
# before it could say).
decisions='requeueing job|run finished|finished, not requeued|run failed|requeue failed|not under Slurm|giving up'
long_decision() { grep -E "^\[asyncrl-job.*($decisions)" "$D/long.out" 2>/dev/null | tail -1; }
long_idle_since=""
long_ended() {
    if cluster_job_busy "$long_id"; then
        long_idle_since=""
        return 1
    fi
    case "$(long_decision)" in
        *"requeueing job"*) ;;
        *) return 0 ;;
    esac
    [ -n "$long_idle_since" ] || long_idle_since=$(date +%s)
    [ $(($(date +%s) - long_idle_since)) -ge 20 ]
}
wait_started=$(date +%s)
# shellcheck disable=SC2086
if ! cluster_wait_jobs 330 $all || ! cluster_wait_for long_ended $((330 - ($(date +%s) - wait_started))); then
    not_ok "every job ends within 330 s" "$(squeue 2>&1)" \
        "long: $(cluster_job_field "$long_id" JobState) after $(cluster_job_field "$long_id" Restarts) restarts" \
        "$(tail -5 "$D/long.out")"
fi

# Steps recorded in metrics.h5 and the newest complete checkpoint, as "ROWS NANS LAST_CKPT".
run_state() {
    /usr/bin/python3 - "$1" <<'EOF'
import glob, math, os, sys
import h5py
run = sys.argv[1]
with h5py.File(os.path.join(run, "metrics.h5"), "r", libver="latest", swmr=True) as f:
    r = f["steps/reward_mean"][:]
last = 0
for p in glob.glob(os.path.join(run, "checkpoints", "step_*.h5")):
    with h5py.File(p, "r") as c:
        if "complete" in c.attrs:
            last = max(last, int(os.path.basename(p)[5:11]))
print(len(r), sum(1 for x in r if math.isnan(x)), last)
EOF
}

show_log() { sed 's/^/  /' "$1" | tail -"${2:-15}"; }

# The debug job: one allocation, srun, every step done, a checkpoint at the end.
state=$(cluster_job_field "$debug_id" JobState)
if [ "$state" = COMPLETED ] && grep -q "launch: srun --mpi=pmix" "$D/debug.out"; then
    ok "debug job completed under srun"
else
    not_ok "debug job completed under srun" "state $state" "$(show_log "$D/debug.out")"
fi
got=$(run_state "$D/debug" 2>&1)
check "debug run: $steps_debug steps in metrics.h5, no gaps, checkpoint step $steps_debug" test "$got" = "$steps_debug 0 $steps_debug"
[ "$got" = "$steps_debug 0 $steps_debug" ] || echo "# got: $got"

# The time-limited job: signalled, checkpointed, requeued, resumed, finished.
state=$(cluster_job_field "$long_id" JobState)
restarts=$(cluster_job_field "$long_id" Restarts)
if [ "$state" = COMPLETED ] && [ "${restarts:-0}" -ge 1 ]; then
    ok "time-limited job completed after $restarts requeue(s)"
else
    not_ok "time-limited job completed after requeues" "state $state, restarts $restarts" "$(show_log "$D/long.out" 30)"
fi
signals=$(grep -c "received SIGUSR1" "$D/long.out")
requeues=$(grep -c "requeueing job $long_id" "$D/long.out")
resumes=$(grep -c "resuming from .*step_" "$D/long.out")
if [ "$signals" -ge 1 ] && [ "$requeues" = "$restarts" ] && [ "$resumes" -ge 1 ] && grep -q "launch: mpirun" "$D/long.out"; then
    ok "each allocation got the warning signal, passed it to the ranks (mpirun) and requeued; later ones resumed"
else
    not_ok "signal, requeue, resume" "signals $signals, requeues $requeues, restarts $restarts, resumes $resumes" "$(show_log "$D/long.out" 30)"
fi
if grep -q "exited with status [1-9]" "$D/long.out"; then
    not_ok "every allocation's job exited 0" "$(grep "exited with status" "$D/long.out")"
else
    ok "every allocation's job exited 0"
fi
got=$(run_state "$D/long" 2>&1)
check "long run: $steps_long steps in metrics.h5 across allocations, no gaps, checkpoint step $steps_long" test "$got" = "$steps_long 0 $steps_long"
[ "$got" = "$steps_long 0 $steps_long" ] || echo "# got: $got"

# The GPU node script: every rank of the job sees both GPUs of the node (asyncrl picks by
# local rank), srun with the script's CPU and GPU binding flags.
node1=${CLUSTER_NODES%% *}
node2=${CLUSTER_NODES##* }
state=$(cluster_job_field "$gpu_id" JobState)
seen=$(grep -c "^placement: rank [0-2] on .* gpus 0,1$" "$D/gpu.out")
if [ "$state" = COMPLETED ] && [ "$seen" = 3 ] && grep -q -- "--gpus-per-node=2" "$D/gpu.out"; then
    ok "gpu node job: 3 ranks, each sees GPUs 0,1"
else
    not_ok "gpu node job: 3 ranks, each sees GPUs 0,1" "state $state, $seen ranks saw both" "$(show_log "$D/gpu.out")"
fi

# The multi-node script: the generated host list puts rank 0 and the trainer on the first
# node, the inference rank on the second, with srun and with mpirun.
[ -n "$multi_id" ] || skip "multi-node job" "a second node needs unshare -u (a UTS namespace), not allowed here"
for name in ${multi_id:+multi multi2}; do
    eval "id=\$${name}_id"
    state=$(cluster_job_field "$id" JobState)
    placed=$(grep "^placement:" "$D/$name.out" | sort | tr '\n' ' ')
    want="placement: rank 0 on $node1 gpus 0,1 placement: rank 1 on $node1 gpus 0,1 placement: rank 2 on $node2 gpus 0,1 "
    launcher=$(sed -n 's/.*launch: \([a-z]*\) .*/\1/p' "$D/$name.out" | head -1)
    if [ "$state" = COMPLETED ] && [ "$placed" = "$want" ]; then
        ok "multi-node job ($launcher): ranks 0-1 on $node1, rank 2 on $node2, each sees the GPUs of its node"
    else
        not_ok "multi-node job ($launcher): ranks 0-1 on $node1, rank 2 on $node2, each sees the GPUs of its node" "state $state" "placement: $placed" "$(show_log "$D/$name.out")"
    fi
    got=$(run_state "$D/$name" 2>&1)
    check "multi-node run ($launcher): $steps_debug steps, checkpoint step $steps_debug" test "$got" = "$steps_debug 0 $steps_debug"
done

# A task count that does not match the config: fails before any MPI start, naming both.
state=$(cluster_job_field "$bad_id" JobState)
if [ "$state" = FAILED ] && grep -q "the config needs 3 ranks .* but the job has 4 tasks: submit with --ntasks=3" "$D/bad.out"; then
    ok "world-size mismatch: the job fails at once and says --ntasks=3"
else
    not_ok "world-size mismatch: the job fails at once and says --ntasks=3" "state $state" "$(show_log "$D/bad.out")"
fi

# The jobs' outputs stay for reading afterwards.
mkdir -p "$ASYNCRL_BUILD/test-logs/slurm"
for f in "$D"/*.out "$D"/cluster/*.log; do cp "$f" "$ASYNCRL_BUILD/test-logs/slurm/"; done 2>/dev/null
echo "# job outputs: $ASYNCRL_BUILD/test-logs/slurm/"
