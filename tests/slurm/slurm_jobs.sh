# The Slurm job scripts under a real Slurm on this machine (make test-slurm; needs root to
# install and start slurmctld, slurmd and munge, else it skips). Two submissions of
# jobs/debug_cpu.sbatch run side by side:
#   - a debug run launched with srun (PMIx) that goes to run.max_steps in one allocation;
#   - a run that needs longer than its 1-minute limit (--time=1 --signal=B:USR1@30), launched
#     with mpirun: Slurm's warning signal reaches the ranks, they checkpoint and exit 0, the
#     job requeues itself and the next allocations resume until run.max_steps.
# The job is `asyncrl rl` when the binary has it, else the stand-in tests/mpi/fake_rl, which
# keeps the same contract (checkpoints, resume = latest, SIGUSR1 handling, metrics.h5).
. tests/integration/lib.sh
. tests/slurm/cluster.sh

trap 'cluster_stop; rm -rf "$TMP_ROOT"' EXIT INT TERM
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
ok "local slurm cluster up ($(sinfo -h -N -o '%N %c CPUs %t'))"

# The job command: the real one when it exists.
if "$BIN" --help 2>/dev/null | grep -q '^  rl '; then
    unset ASYNCRL_CMD
    export OMP_NUM_THREADS=1
    steps_debug=4
    steps_long=${SLURM_TEST_LONG_STEPS:-40}
else
    export ASYNCRL_CMD="$ROOT/$ASYNCRL_BUILD/tests/mpi/fake_rl"
    echo "# $BIN has no 'rl' command yet: the jobs run the stand-in $ASYNCRL_CMD"
    steps_debug=8
    steps_long=70
    export ASYNCRL_FAKE_STEP_MS=1000
fi
export ASYNCRL_ROOT="$ROOT" ASYNCRL_BIN="$ROOT/$BIN"
# Containers often forbid the ptrace-based single-copy shared-memory transport.
export OMPI_MCA_btl_vader_single_copy_mechanism=none

debug_id=$(ASYNCRL_LAUNCHER=srun sbatch --parsable --output="$D/debug.out" jobs/debug_cpu.sbatch \
    inputs/slurm_debug.cfg --set run.output_dir="$D/debug" --set run.max_steps=$steps_debug 2>&1)
long_id=$(ASYNCRL_LAUNCHER=mpirun sbatch --parsable --time=1 --signal=B:USR1@30 --output="$D/long.out" \
    jobs/debug_cpu.sbatch inputs/slurm_debug.cfg --set run.output_dir="$D/long" --set run.max_steps=$steps_long 2>&1)
case "$debug_id$long_id" in
    *[!0-9]*) not_ok "sbatch submits both jobs" "debug: $debug_id" "long: $long_id"; exit 1 ;;
esac
ok "sbatch submits the debug job ($debug_id) and the time-limited job ($long_id)"

if ! cluster_wait_jobs 330 "$debug_id" "$long_id"; then
    not_ok "both jobs finish within 330 s" "debug: $(cluster_job_field "$debug_id" JobState)" \
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

# The jobs' outputs stay for reading afterwards.
mkdir -p "$ASYNCRL_BUILD/test-logs/slurm"
cp "$D/debug.out" "$D/long.out" "$D/cluster/slurmctld.log" "$D/cluster/slurmd.log" "$ASYNCRL_BUILD/test-logs/slurm/" 2>/dev/null
echo "# job outputs: $ASYNCRL_BUILD/test-logs/slurm/"
