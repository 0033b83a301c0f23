# Shared part of the Slurm job scripts in jobs/ (sourced by bash, not run). It checks the config
# against the allocation, launches the MPI job with srun or mpirun, forwards Slurm's warning
# signal to the ranks, waits for their checkpoint and clean exit, and requeues the job so that a
# long run goes on in the next allocation until it reaches run.max_steps.
#
# A job script does:
#   . "${ASYNCRL_ROOT:-$SLURM_SUBMIT_DIR}/jobs/lib/asyncrl_job.sh"
#   asyncrl_job_start "$@"        # CONFIG [--set k=v]... from the sbatch command line
#   asyncrl_job_run               # the `rl` job on every task of the allocation
#   asyncrl_job_finish            # exit status, or requeue after a stop signal
#
# Environment (read at submission: sbatch exports it, and a requeued job keeps it):
#   ASYNCRL_ROOT           the asyncrl checkout (default: the directory sbatch was run from)
#   ASYNCRL_BIN            the binary (default: what the script names, build/asyncrl or
#                          build/cuda/asyncrl)
#   ASYNCRL_CMD            the job's program instead of "$ASYNCRL_BIN" (a wrapper, e.g. a
#                          profiler: ASYNCRL_CMD="nsys profile -o prof build/cuda/asyncrl");
#                          the job runs "$ASYNCRL_CMD rl CONFIG ..."
#   ASYNCRL_LAUNCHER       srun | mpirun | auto (default auto: srun when it offers PMIx, else
#                          mpirun)
#   ASYNCRL_SRUN_MPI       srun's --mpi plugin (default pmix; pmi2 for an MPI built with PMI2)
#   ASYNCRL_SRUN_FLAGS     extra srun flags;  ASYNCRL_MPIRUN_FLAGS: extra mpirun flags
#   ASYNCRL_MAX_REQUEUES   stop requeueing after this many restarts (default 100)
#   ASYNCRL_NTASKS_CHECK   0: do not compare the world size with SLURM_NTASKS (the multi-node
#                          script places ranks itself)
#   ASYNCRL_SIGNAL_DELAY_S a stop signal that comes sooner than this after the launch is
#                          passed on only then, so the ranks have set up their handlers and
#                          make at least one step of progress (default 15)

asyncrl_log() { echo "[asyncrl-job $(date +%H:%M:%S)] $*"; }
asyncrl_die() { echo "[asyncrl-job] error: $*" >&2; exit 2; }

# Whether Slurm's srun offers PMIx (Open MPI 4.x and 5.x start under srun through PMIx).
asyncrl_srun_has_pmix() { command -v srun >/dev/null 2>&1 && srun --mpi=list 2>&1 | grep -q pmix; }

asyncrl_pick_launcher() {
    case "${ASYNCRL_LAUNCHER:-auto}" in
        srun | mpirun) echo "${ASYNCRL_LAUNCHER}" ;;
        auto) if [ -n "${ASYNCRL_SRUN_MPI:-}" ] || asyncrl_srun_has_pmix; then echo srun; else echo mpirun; fi ;;
        *) asyncrl_die "ASYNCRL_LAUNCHER must be srun, mpirun or auto (got '${ASYNCRL_LAUNCHER}')" ;;
    esac
}

# asyncrl_config_value KEY: a key of the resolved config (group.key, e.g. ranks.trainers),
# from `asyncrl check` output saved in ASYNCRL_CHECK_OUT.
asyncrl_config_value() {
    awk -v group="${1%%.*}" -v key="${1#*.}" '
        $1 == group && $2 == "=" && $3 == "{" { inside = 1; next }
        inside && $1 == "};" { inside = 0 }
        inside && $1 == key && $2 == "=" { v = $0; sub(/^[^=]*= */, "", v); sub(/; *$/, "", v); gsub(/"/, "", v); print v; exit }
    ' "$ASYNCRL_CHECK_OUT"
}

# asyncrl_job_start CONFIG [--set k=v]...: goes to the checkout, validates the config with
# `asyncrl check`, compares its world size with the allocation and sets up the signal traps.
asyncrl_job_start() {
    [ $# -ge 1 ] || asyncrl_die "no config given: sbatch $0 CONFIG [--set group.key=value]..."
    ASYNCRL_ROOT=${ASYNCRL_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}
    # OpenMP threads spin briefly between parallel regions, then sleep (see scripts/mpirun.sh:
    # passive waiting made decode 1.4-2.5x slower); a user's OMP_WAIT_POLICY / GOMP_SPINCOUNT wins.
    [ -n "${OMP_WAIT_POLICY:-}" ] || export GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-1000}
    cd "$ASYNCRL_ROOT" || asyncrl_die "cannot enter ASYNCRL_ROOT=$ASYNCRL_ROOT"
    ASYNCRL_CONFIG=$1
    shift
    ASYNCRL_ARGS=("$@" --set checkpoint.resume=latest)
    ASYNCRL_BIN=${ASYNCRL_BIN:-build/asyncrl}
    local restarts=${SLURM_RESTART_COUNT:-0}
    asyncrl_log "job ${SLURM_JOB_ID:-?} (${SLURM_JOB_NAME:-?}), allocation $((restarts + 1)), ${SLURM_NTASKS:-?} tasks on ${SLURM_JOB_NODELIST:-?}"
    asyncrl_log "config $ASYNCRL_CONFIG ${ASYNCRL_ARGS[*]}"
    if [ "$restarts" -gt "${ASYNCRL_MAX_REQUEUES:-100}" ]; then
        asyncrl_die "requeued $restarts times (ASYNCRL_MAX_REQUEUES=${ASYNCRL_MAX_REQUEUES:-100}); giving up: read the earlier allocations' output above"
    fi
    [ -x "$ASYNCRL_BIN" ] || asyncrl_die "no binary $ASYNCRL_BIN in $ASYNCRL_ROOT: build it first (make, or make CUDA=1), or set ASYNCRL_BIN"
    [ -r "$ASYNCRL_CONFIG" ] || asyncrl_die "cannot read config $ASYNCRL_CONFIG (relative paths are relative to $ASYNCRL_ROOT)"

    # The config is checked before any MPI start, and its world size against the allocation.
    ASYNCRL_CHECK_OUT=$(mktemp "${TMPDIR:-/tmp}/asyncrl-check.XXXXXX")
    trap 'rm -f "$ASYNCRL_CHECK_OUT" ${ASYNCRL_RANK_HOSTS:+"$ASYNCRL_RANK_HOSTS" "$ASYNCRL_RANK_HOSTS.ompi"}' EXIT
    if ! "$ASYNCRL_BIN" check "$ASYNCRL_CONFIG" "${ASYNCRL_ARGS[@]}" >"$ASYNCRL_CHECK_OUT" 2>&1; then
        cat "$ASYNCRL_CHECK_OUT" >&2
        asyncrl_die "the config does not pass \`asyncrl check\` (above)"
    fi
    ASYNCRL_WORLD=$(sed -n 's/.*(world size \([0-9]*\).*/\1/p' "$ASYNCRL_CHECK_OUT" | head -1)
    ASYNCRL_TRAINERS=$(asyncrl_config_value ranks.trainers)
    ASYNCRL_INFERENCE=$(asyncrl_config_value ranks.inference)
    ASYNCRL_OUTPUT_DIR=$(asyncrl_config_value run.output_dir)
    if [ "${ASYNCRL_NTASKS_CHECK:-1}" = 1 ] && [ -n "${SLURM_NTASKS:-}" ] && [ "$ASYNCRL_WORLD" != "$SLURM_NTASKS" ]; then
        asyncrl_die "the config needs $ASYNCRL_WORLD ranks (1 orchestrator + $ASYNCRL_TRAINERS trainers + $ASYNCRL_INFERENCE inference) but the job has $SLURM_NTASKS tasks: submit with --ntasks=$ASYNCRL_WORLD or change ranks.trainers / ranks.inference"
    fi
    asyncrl_log "world size $ASYNCRL_WORLD: rank 0 orchestrator, ranks 1..$ASYNCRL_TRAINERS trainers, the rest inference; output in $ASYNCRL_OUTPUT_DIR"

    ASYNCRL_STOP=""
    ASYNCRL_WARNED=0
    ASYNCRL_FORWARDED=0
    ASYNCRL_PID=""
    trap 'asyncrl_on_signal USR1' USR1
    trap 'asyncrl_on_signal TERM' TERM
}

# A stop signal, remembered here and passed on to the ranks by the wait loop. SIGUSR1 (Slurm's
# warning before the time limit, or scancel --signal=USR1 -b) requeues the job afterwards;
# SIGTERM alone (scancel, or the limit reached without the warning) does not: a cancelled job
# must stay cancelled.
asyncrl_on_signal() {
    if [ "$1" = USR1 ]; then
        [ "$ASYNCRL_WARNED" = 1 ] || asyncrl_log "received SIGUSR1: the ranks finish their step, write a checkpoint and exit; then the job requeues itself"
        ASYNCRL_WARNED=1
    else
        [ -n "$ASYNCRL_STOP" ] || asyncrl_log "received SIG$1: the ranks finish their step, write a checkpoint and exit (not requeued: scancel stays a cancel)"
    fi
    ASYNCRL_STOP=$1
}

asyncrl_forward_stop() {
    [ -n "$ASYNCRL_PID" ] || return 0
    asyncrl_log "passing SIGUSR1 to the ranks (through $ASYNCRL_LAUNCHER, pid $ASYNCRL_PID)"
    kill -USR1 "$ASYNCRL_PID" 2>/dev/null
    ASYNCRL_FORWARDED=1
}

# The launcher command for ASYNCRL_WORLD ranks: srun or mpirun with their flags.
# ASYNCRL_RANK_HOSTS (one host per rank, in rank order) places ranks explicitly.
asyncrl_launcher_cmd() {
    ASYNCRL_LAUNCHER=$(asyncrl_pick_launcher)
    if [ "$ASYNCRL_LAUNCHER" = srun ]; then
        # shellcheck disable=SC2206
        ASYNCRL_LAUNCH=(srun --mpi="${ASYNCRL_SRUN_MPI:-pmix}" --ntasks="$ASYNCRL_WORLD" --kill-on-bad-exit=1 ${ASYNCRL_SRUN_FLAGS:-})
        if [ -n "${ASYNCRL_RANK_HOSTS:-}" ]; then
            export SLURM_HOSTFILE=$ASYNCRL_RANK_HOSTS
            ASYNCRL_LAUNCH+=(--distribution=arbitrary)
        fi
    else
        command -v mpirun >/dev/null 2>&1 || asyncrl_die "mpirun not found: load your MPI module, or use ASYNCRL_LAUNCHER=srun"
        # shellcheck disable=SC2206
        ASYNCRL_LAUNCH=(mpirun -np "$ASYNCRL_WORLD" ${ASYNCRL_MPIRUN_FLAGS:-})
        [ "$(id -u)" = 0 ] && ASYNCRL_LAUNCH+=(--allow-run-as-root)
        if [ -n "${ASYNCRL_RANK_HOSTS:-}" ]; then
            # Open MPI hostfile: each host with as many slots as ranks it gets, filled in order.
            local hostfile=${ASYNCRL_RANK_HOSTS}.ompi
            uniq -c "$ASYNCRL_RANK_HOSTS" | awk '{ print $2 " slots=" $1 }' >"$hostfile"
            # The slots fill in host-list order; a --map-by of the flags (slot:PE=N, which gives
            # each rank N cores to bind its threads to) replaces the plain one.
            ASYNCRL_LAUNCH+=(--hostfile "$hostfile")
            case " ${ASYNCRL_MPIRUN_FLAGS:-} " in
                *" --map-by "*) ;;
                *) ASYNCRL_LAUNCH+=(--map-by slot) ;;
            esac
        fi
    fi
}

# asyncrl_job_run: runs the job on ASYNCRL_WORLD ranks in the background and waits for it,
# passing a stop signal on; sets ASYNCRL_RC to the launcher's exit status.
asyncrl_job_run() {
    asyncrl_launcher_cmd
    local cmd
    if [ -n "${ASYNCRL_CMD:-}" ]; then
        # shellcheck disable=SC2206
        cmd=($ASYNCRL_CMD rl)
    else
        cmd=("$ASYNCRL_BIN" rl)
    fi
    asyncrl_log "launch: ${ASYNCRL_LAUNCH[*]} ${cmd[*]} $ASYNCRL_CONFIG ${ASYNCRL_ARGS[*]}"
    "${ASYNCRL_LAUNCH[@]}" "${cmd[@]}" "$ASYNCRL_CONFIG" "${ASYNCRL_ARGS[@]}" &
    ASYNCRL_PID=$!
    local started=$SECONDS delay=${ASYNCRL_SIGNAL_DELAY_S:-15}
    # Poll once a second; a trapped signal interrupts the sleep at once.
    while kill -0 "$ASYNCRL_PID" 2>/dev/null; do
        if [ -n "$ASYNCRL_STOP" ] && [ "$ASYNCRL_FORWARDED" = 0 ]; then
            if [ "$ASYNCRL_STOP" = TERM ] || [ $((SECONDS - started)) -ge "$delay" ]; then asyncrl_forward_stop; fi
        fi
        sleep 1 &
        wait $! 2>/dev/null
    done
    wait "$ASYNCRL_PID"
    ASYNCRL_RC=$?
    ASYNCRL_PID=""
    asyncrl_log "the job exited with status $ASYNCRL_RC after $((SECONDS - started)) s"
}

# asyncrl_run_finished OUTPUT_DIR MAX_STEPS: 0 when the run trained MAX_STEPS steps (its
# metrics say so: a stop signal during the final evaluation ends a finished run too, whose
# checkpoints may end earlier with checkpoint.at_end = false) or its newest complete checkpoint
# (as `asyncrl report` finds them) is at MAX_STEPS or beyond: nothing is left to resume.
asyncrl_run_finished() {
    local report newest done
    report=$("$ASYNCRL_BIN" report "$1" 2>/dev/null)
    newest=$(printf '%s\n' "$report" | sed -n 's/.*newest complete: step \([0-9]*\).*/\1/p')
    done=$(printf '%s\n' "$report" | sed -n 's/^  steps *\([0-9]*\) .*done.*/\1/p')
    [ -n "$2" ] && { { [ -n "$newest" ] && [ "$newest" -ge "$2" ]; } || { [ -n "$done" ] && [ "$done" -ge "$2" ]; }; }
}

# asyncrl_job_finish: after a stop signal and a clean exit (the ranks wrote their checkpoint)
# requeues the job, which resumes from that checkpoint; otherwise exits with the job's status.
# A job that failed is never requeued (no crash loops): resubmitting the same sbatch command
# resumes from the newest complete checkpoint.
asyncrl_job_finish() {
    if [ "$ASYNCRL_RC" != 0 ]; then
        asyncrl_log "run failed (status $ASYNCRL_RC)${ASYNCRL_STOP:+ after SIG$ASYNCRL_STOP}; not requeued. Read the errors above; the same sbatch command resumes from the newest complete checkpoint in $ASYNCRL_OUTPUT_DIR/checkpoints"
        exit "$ASYNCRL_RC"
    fi
    if [ -z "$ASYNCRL_STOP" ]; then
        asyncrl_log "run finished"
        exit 0
    fi
    if [ "$ASYNCRL_WARNED" != 1 ]; then
        asyncrl_log "stopped by SIG$ASYNCRL_STOP (scancel?): not requeued; the same sbatch command resumes from the newest checkpoint in $ASYNCRL_OUTPUT_DIR/checkpoints"
        exit 0
    fi
    if asyncrl_run_finished "$ASYNCRL_OUTPUT_DIR" "$(asyncrl_config_value run.max_steps)"; then
        asyncrl_log "the run reached run.max_steps as it stopped: finished, not requeued"
        exit 0
    fi
    if [ -z "${SLURM_JOB_ID:-}" ]; then
        asyncrl_log "stopped; not under Slurm: run the same command again to resume"
        exit 0
    fi
    if [ $((${SLURM_RESTART_COUNT:-0} + 1)) -gt "${ASYNCRL_MAX_REQUEUES:-100}" ]; then
        asyncrl_log "giving up: requeued ${SLURM_RESTART_COUNT:-0} times already (ASYNCRL_MAX_REQUEUES=${ASYNCRL_MAX_REQUEUES:-100}); the same sbatch command resumes from the newest checkpoint in $ASYNCRL_OUTPUT_DIR/checkpoints"
        exit 0
    fi
    asyncrl_log "requeueing job $SLURM_JOB_ID (it continues from the newest checkpoint in $ASYNCRL_OUTPUT_DIR/checkpoints)"
    if ! scontrol requeue "$SLURM_JOB_ID"; then
        asyncrl_log "scontrol requeue failed (is requeueing allowed here? the job needs --requeue); resubmit by hand: the same sbatch command resumes the run"
        exit 1
    fi
    exit 0
}

# asyncrl_place_ranks TRAINERS INFERENCE PER_NODE NODE...: prints one host per rank, in rank
# order: rank 0 (the orchestrator, which needs no GPU) and the trainers fill the first nodes,
# PER_NODE trainers to a node, and the inference ranks fill the nodes after them, PER_NODE to
# a node. Fails (status 2, message on stderr) when the nodes are too few; warns when some
# would stay idle.
asyncrl_place_ranks() {
    local trainers=$1 inference=$2 per_node=$3
    shift 3
    local nodes=("$@")
    local trainer_nodes=$(((trainers + per_node - 1) / per_node))
    local inference_nodes=$(((inference + per_node - 1) / per_node))
    local need=$((trainer_nodes + inference_nodes))
    if [ "${#nodes[@]}" -lt "$need" ]; then
        echo "[asyncrl-job] error: $trainers trainers and $inference inference ranks at $per_node per node need $trainer_nodes + $inference_nodes = $need nodes, the job has ${#nodes[@]} (${nodes[*]}): submit with --nodes=$need" >&2
        return 2
    fi
    if [ "${#nodes[@]}" -gt "$need" ]; then
        echo "[asyncrl-job] warning: the placement uses $need of the job's ${#nodes[@]} nodes (${nodes[*]:$need} would idle): submit with --nodes=$need" >&2
    fi
    echo "${nodes[0]}"
    local i
    for ((i = 0; i < trainers; i++)); do echo "${nodes[$((i / per_node))]}"; done
    for ((i = 0; i < inference; i++)); do echo "${nodes[$((trainer_nodes + i / per_node))]}"; done
}

# asyncrl_describe_placement FILE: one line per node: its ranks and their roles.
asyncrl_describe_placement() {
    awk -v t="$ASYNCRL_TRAINERS" '
        function role(r) { return r == 0 ? "orchestrator" : (r <= t ? "trainer" : "inference") }
        { if ($1 != host) { if (host != "") print host ": ranks " first ".." NR - 2 " (" roles ")"; host = $1; first = NR - 1; roles = ""; seen = "" }
          r = role(NR - 1); if (index(seen, r) == 0) { roles = roles (roles == "" ? "" : ", ") r; seen = seen r } }
        END { if (host != "") print host ": ranks " first ".." NR - 1 " (" roles ")" }
    ' "$1"
}
