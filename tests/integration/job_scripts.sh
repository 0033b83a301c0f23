# The Slurm job scripts' shared logic without Slurm (the real-Slurm test is make test-slurm):
# shell syntax, the rank placement of the multi-node script, the checks before launch (world
# size against the tasks, a bad config), and a stop signal passed on to the ranks of a real
# job (mpirun on this machine), which checkpoint and exit 0.
. tests/integration/lib.sh
for f in jobs/*.sbatch jobs/lib/asyncrl_job.sh; do
    check "bash -n $f" bash -n "$f"
done

place() { bash -c '. jobs/lib/asyncrl_job.sh; asyncrl_place_ranks "$@"' place "$@" 2>&1 | tr '\n' ' '; }
got=$(place 3 5 2 a b c d e)
check "placement: orchestrator + trainers first, PER_NODE a node, inference after ($got)" \
    test "$got" = "a a a b c c d d e "
got=$(place 16 16 8 n1 n2 n3 n4 | tr ' ' '\n' | sort | uniq -c | tr -s ' ' | tr '\n' ',')
check "placement: 16 + 16 ranks on 4 nodes of 8 GPUs ($got)" test "$got" = " 9 n1, 8 n2, 8 n3, 8 n4,"
got=$(place 1 1 8 n1 n2 n3)
check "placement: 1 + 1 ranks, one node each, a warning names the idle node ($got)" test "$got" = \
    "[asyncrl-job] warning: the placement uses 2 of the job's 3 nodes (n3 would idle): submit with --nodes=2 n1 n1 n2 "
launch() {  # MPIRUN_FLAGS: the mpirun command line for a host list of 3 ranks
    ASYNCRL_LAUNCHER=mpirun ASYNCRL_MPIRUN_FLAGS="$1" ASYNCRL_RANK_HOSTS="$TMP_ROOT/hosts" ASYNCRL_WORLD=3 bash -c '
        . jobs/lib/asyncrl_job.sh; asyncrl_launcher_cmd; echo "${ASYNCRL_LAUNCH[*]}"'
}
printf 'n1\nn1\nn2\n' >"$TMP_ROOT/hosts"
plain=$(launch "--bind-to core") pe=$(launch "--map-by slot:PE=6 --bind-to core")
if echo "$plain" | grep -q -- "--hostfile .* --map-by slot$" && echo "$pe" | grep -q -- "--map-by slot:PE=6" &&
    [ "$(echo "$pe" | grep -o -- "--map-by" | wc -l)" = 1 ] && grep -q 'MPIRUN_FLAGS:---map-by slot:PE=$cpus' jobs/multi_node.sbatch &&
    grep -q "^n1 slots=2$" "$TMP_ROOT/hosts.ompi"; then
    ok "mpirun with a host list: the hostfile's slots in order, one --map-by (PE=N in the multi-node script)"
else
    not_ok "mpirun with a host list" "plain: $plain" "PE: $pe" "$(cat "$TMP_ROOT/hosts.ompi" 2>&1)"
fi
got=$(place 3 5 2 a b c)
case "$got" in
    *"need 2 + 3 = 5 nodes, the job has 3"*"--nodes=5"*) ok "placement: too few nodes is an error naming --nodes" ;;
    *) not_ok "placement: too few nodes is an error naming --nodes" "$got" ;;
esac

# Checks before launch: the world size against the tasks, and the config itself.
export ASYNCRL_BIN="$BIN" OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1
out=$(SLURM_NTASKS=4 bash jobs/debug_cpu.sbatch inputs/slurm_debug.cfg 2>&1)
rc=$?
if [ $rc = 2 ] && echo "$out" | grep -q "the config needs 3 ranks (1 orchestrator + 1 trainers + 1 inference) but the job has 4 tasks: submit with --ntasks=3"; then
    ok "a task count that does not match the config stops the job before launch"
else
    not_ok "a task count that does not match the config stops the job before launch" "rc $rc" "$out"
fi
out=$(bash jobs/debug_cpu.sbatch inputs/slurm_debug.cfg --set ranks.nonsense=1 2>&1)
rc=$?
if [ $rc = 2 ] && echo "$out" | grep -q "nonsense" && echo "$out" | grep -q "does not pass \`asyncrl check\`"; then
    ok "a bad config stops the job before launch, with asyncrl check's message"
else
    not_ok "a bad config stops the job before launch, with asyncrl check's message" "rc $rc" "$out"
fi
out=$(ASYNCRL_BIN=build/nonexistent bash jobs/debug_cpu.sbatch inputs/slurm_debug.cfg 2>&1)
echo "$out" | grep -q "no binary build/nonexistent.*make" && ok "a missing binary is named, with how to build it" ||
    not_ok "a missing binary is named, with how to build it" "$out"

# A stop signal to the job script reaches the ranks through mpirun: they finish their step,
# checkpoint and exit 0; outside Slurm the script says to rerun to resume.
run=$TMP_ROOT/run
ASYNCRL_LAUNCHER=mpirun ASYNCRL_MPIRUN_FLAGS="--oversubscribe --bind-to none" ASYNCRL_SIGNAL_DELAY_S=2 \
    bash jobs/debug_cpu.sbatch inputs/slurm_debug.cfg --set run.output_dir="$run" --set run.max_steps=200 \
    >"$TMP_ROOT/job.out" 2>&1 &
pid=$!
i=0
while [ ! -f "$run/checkpoints/step_000001.h5" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
kill -USR1 $pid
wait $pid
rc=$?
if [ $rc = 0 ] && grep -q "passing SIGUSR1 to the ranks (through mpirun" "$TMP_ROOT/job.out" &&
    grep -q "stopped; not under Slurm: run the same command again to resume" "$TMP_ROOT/job.out" &&
    ! grep -q "step  199 " "$TMP_ROOT/job.out"; then
    ok "a stop signal reaches the ranks; they checkpoint and the job exits 0"
else
    not_ok "a stop signal reaches the ranks; they checkpoint and the job exits 0" "rc $rc" "$(tail -15 "$TMP_ROOT/job.out")"
fi

# Whether a stopped run still has steps to go (no requeue of a finished run).
finished() { bash -c '. jobs/lib/asyncrl_job.sh; asyncrl_run_finished "$@"' finished "$@"; }
if ! finished "$run" 200 && finished "$run" 1 && ! finished "$TMP_ROOT/nonexistent" 1; then
    ok "a stopped run is finished only when it reached run.max_steps"
else
    not_ok "a stopped run is finished only when it reached run.max_steps" \
        "$("$BIN" report "$run" 2>&1 | tail -4)"
fi

# The requeue decision after a clean stop, under a pretend Slurm (scontrol only prints): SIGUSR1
# (the time-limit warning) requeues; SIGTERM alone (scancel) does not, or a cancel would be
# undone; nor does a job at ASYNCRL_MAX_REQUEUES.
mkdir -p "$TMP_ROOT/fakebin"
printf '#!/bin/sh\necho "FAKE scontrol $*"\n' >"$TMP_ROOT/fakebin/scontrol"
chmod +x "$TMP_ROOT/fakebin/scontrol"
decide() {  # STOP WARNED RESTARTS
    PATH="$TMP_ROOT/fakebin:$PATH" SLURM_JOB_ID=77 SLURM_RESTART_COUNT=$3 ASYNCRL_MAX_REQUEUES=5 bash -c '
        . jobs/lib/asyncrl_job.sh
        asyncrl_config_value() { echo 200; }
        ASYNCRL_RC=0 ASYNCRL_STOP=$1 ASYNCRL_WARNED=$2 ASYNCRL_OUTPUT_DIR=$4
        asyncrl_job_finish' decide "$1" "$2" "$3" "$run" 2>&1
}
usr1=$(decide USR1 1 0) term=$(decide TERM 0 0) last=$(decide USR1 1 5)
if echo "$usr1" | grep -q "FAKE scontrol requeue 77" && ! echo "$term" | grep -q "FAKE scontrol" &&
    echo "$term" | grep -q "stopped by SIGTERM (scancel?): not requeued" && ! echo "$last" | grep -q "FAKE scontrol" &&
    echo "$last" | grep -q "giving up: requeued 5 times already"; then
    ok "requeue after SIGUSR1 only: not after a scancel's SIGTERM, not past ASYNCRL_MAX_REQUEUES"
else
    not_ok "requeue after SIGUSR1 only" "USR1: $usr1" "TERM: $term" "limit: $last"
fi

# Config values as the scripts read them from asyncrl check: a run.output_dir with a space.
"$BIN" check inputs/slurm_debug.cfg --set 'run.output_dir="/tmp/a b/out"' >"$TMP_ROOT/check.out" 2>&1
got=$(ASYNCRL_CHECK_OUT="$TMP_ROOT/check.out" bash -c '. jobs/lib/asyncrl_job.sh; asyncrl_config_value run.output_dir')
check "config values keep their spaces ($got)" test "$got" = "/tmp/a b/out"

# A run that trained all its steps is finished even without a final checkpoint (a stop signal
# during its last evaluation must not requeue it: the next allocation would start it over).
nock=$TMP_ROOT/no_end_checkpoint
job 3 rl inputs/test_reverse.cfg --set run.output_dir="$nock" --set run.max_steps=3 --set checkpoint.interval=0 \
    --set checkpoint.at_end=false >"$nock.log" 2>&1
if [ ! -d "$nock/checkpoints" ] && finished "$nock" 3 && ! finished "$nock" 4; then
    ok "a run that trained run.max_steps steps is finished without a checkpoint"
else
    not_ok "a run that trained run.max_steps steps is finished without a checkpoint" "$(ls "$nock" 2>&1)" \
        "$("$BIN" report "$nock" 2>&1 | head -4)"
fi
