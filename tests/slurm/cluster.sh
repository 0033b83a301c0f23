# A throwaway Slurm cluster on this machine, for testing the job scripts (sourced by
# tests/slurm/*.sh). Installs Debian's slurmctld, slurmd and munge when missing (as root),
# writes a minimal slurm.conf for a node named after `hostname` with more CPUs than the
# machine has (ranks sleep while they wait; SlurmdParameters=config_overrides lets the node
# claim them), no cgroups (containers have none to give), and starts munged, slurmctld and
# slurmd as daemons whose files all live in one directory. Clients find it through SLURM_CONF.
# A second node, `hostname`-b, is a second slurmd on this same machine (slurmd -N) in its own
# UTS namespace (unshare -u) so that it and its jobs have their own host name, as MPI
# libraries tell nodes apart by host name: then the multi-node script's rank placement runs
# for real. Without unshare there is one node (CLUSTER_NODES says which). Each node has 2
# pretend GPUs (gres gpu backed by /dev/null and /dev/zero: Slurm hands them out and sets
# CUDA_VISIBLE_DEVICES, nothing touches them). Each slurmd reads its own copy of the config
# directory, only so that each has its own PMIx temporary directory (mpi.conf).
#
#   cluster_install          0, or 1 with CLUSTER_WHY set (not root, apt-get failed)
#   cluster_start DIR        0, or 1 with CLUSTER_WHY set; exports SLURM_CONF, sets CLUSTER_NODES
#   cluster_job_field ID KEY a field of `scontrol show job` (JobState, Restarts, ...)
#   cluster_job_busy ID      0 while the job is queued, running or between allocations
#   cluster_wait_jobs SECS ID...   0 when every job has ended
#   cluster_stop             cancels the jobs, stops the daemons it started

CLUSTER_PACKAGES="slurmctld slurmd slurm-client munge"

cluster_install() {
    missing=""
    for p in $CLUSTER_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" != 0 ]; then
        CLUSTER_WHY="needs root to install$missing (or install them: apt-get install$missing)"
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing; } >/tmp/asyncrl-slurm-apt.log 2>&1; then
        CLUSTER_WHY="apt-get install$missing failed (log: /tmp/asyncrl-slurm-apt.log)"
        return 1
    fi
    return 0
}

# Waits up to $2 seconds for command $1 (a string) to succeed.
cluster_wait_for() {
    t=0
    while ! eval "$1" >/dev/null 2>&1; do
        t=$((t + 1))
        [ "$t" -ge "$2" ] && return 1
        sleep 1
    done
    return 0
}

cluster_write_conf() {  # DIR NODE PORT_BASE NODES
    cat >"$1/slurm.conf" <<EOF
# Written by tests/slurm/cluster.sh: two nodes on this machine, everything in $1.
ClusterName=asyncrltest
SlurmctldHost=$2(127.0.0.1)
SlurmctldPort=$3
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start again.
AuthInfo=socket=$1/munge/munge.socket,cred_expire=5
StateSaveLocation=$1/state
SlurmdSpoolDir=$1/spool-%n
SlurmctldPidFile=$1/slurmctld.pid
SlurmdPidFile=$1/slurmd-%n.pid
SlurmctldLogFile=$1/slurmctld.log
SlurmdLogFile=$1/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
MpiDefault=none
SlurmdParameters=config_overrides
ReturnToService=2
# Job ids differ from run to run: MPI libraries name shared-memory segments after them.
FirstJobId=$((1000 + $$ % 50000))
KillWait=30
MinJobAge=3600
GresTypes=gpu
EOF
    port=$(($3 + 1))
    for n in $4; do
        echo "NodeName=$n NodeHostname=$n NodeAddr=127.0.0.1 Port=$port CPUs=8 RealMemory=8000 Gres=gpu:2 State=UNKNOWN" >>"$1/slurm.conf"
        port=$((port + 1))
    done
    echo "PartitionName=debug Nodes=$(echo $4 | tr ' ' ',') Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES" >>"$1/slurm.conf"
    printf 'Name=gpu File=/dev/null\nName=gpu File=/dev/zero\n' >"$1/gres.conf"
}

cluster_start() {
    CLUSTER_DIR=$1
    if [ "$(id -u)" != 0 ]; then
        CLUSTER_WHY="the daemons run as root here (slurmd starts jobs as their user); run as root"
        return 1
    fi
    mkdir -p "$CLUSTER_DIR/state" "$CLUSTER_DIR/munge"
    chmod 700 "$CLUSTER_DIR/munge"
    node=$(hostname -s)
    CLUSTER_NODES=$node
    unshare -u true 2>/dev/null && CLUSTER_NODES="$node $node-b"
    # Ports away from Slurm's defaults so that a real Slurm on this machine is not disturbed.
    cluster_write_conf "$CLUSTER_DIR" "$node" $((20000 + $$ % 20000)) "$CLUSTER_NODES"
    export SLURM_CONF="$CLUSTER_DIR/slurm.conf"
    # A fresh munge key for this cluster only.
    dd if=/dev/urandom of="$CLUSTER_DIR/munge/munge.key" bs=1024 count=1 2>/dev/null
    chmod 400 "$CLUSTER_DIR/munge/munge.key"
    if ! munged --force -S "$CLUSTER_DIR/munge/munge.socket" --key-file="$CLUSTER_DIR/munge/munge.key" \
        --log-file="$CLUSTER_DIR/munged.log" --pid-file="$CLUSTER_DIR/munged.pid" \
        --seed-file="$CLUSTER_DIR/munge/seed" 2>"$CLUSTER_DIR/munged.err"; then
        CLUSTER_WHY="munged did not start: $(cat "$CLUSTER_DIR/munged.err")"
        return 1
    fi
    if ! slurmctld -i -f "$SLURM_CONF" 2>"$CLUSTER_DIR/slurmctld.err"; then
        CLUSTER_WHY="slurmctld did not start: $(tail -3 "$CLUSTER_DIR/slurmctld.err" "$CLUSTER_DIR/slurmctld.log" 2>/dev/null)"
        return 1
    fi
    for n in $CLUSTER_NODES; do
        mkdir -p "$CLUSTER_DIR/spool-$n" "$CLUSTER_DIR/etc-$n" "$CLUSTER_DIR/pmix-$n"
        cp "$SLURM_CONF" "$CLUSTER_DIR/gres.conf" "$CLUSTER_DIR/etc-$n/"
        echo "PMIxCliTmpDirBase=$CLUSTER_DIR/pmix-$n" >"$CLUSTER_DIR/etc-$n/mpi.conf"
        uts=""
        [ "$n" != "$node" ] && uts="unshare -u sh -c 'hostname \"\$0\" && exec \"\$@\"' $n"
        if ! eval "$uts slurmd -f \"$CLUSTER_DIR/etc-$n/slurm.conf\" -N $n" 2>"$CLUSTER_DIR/slurmd-$n.err"; then
            CLUSTER_WHY="slurmd $n did not start: $(tail -3 "$CLUSTER_DIR/slurmd-$n.err" "$CLUSTER_DIR/slurmd-$n.log" 2>/dev/null)"
            return 1
        fi
    done
    if ! cluster_wait_for '[ "$(sinfo -h -N -o %t | grep -c idle)" = "$(echo $CLUSTER_NODES | wc -w)" ]' 30; then
        CLUSTER_WHY="the nodes did not become idle: $(sinfo -N 2>&1 | tail -2 | tr '\n' ' '); $(tail -3 "$CLUSTER_DIR/slurmctld.log")"
        return 1
    fi
    return 0
}

cluster_job_field() { scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }

# 0 while job $1 is queued, running or between allocations (or scontrol cannot say).
cluster_job_busy() {
    case "$(cluster_job_field "$1" JobState)" in
        PENDING | RUNNING | REQUEUED | COMPLETING | CONFIGURING | SUSPENDED | RESIZING | REQUEUE_FED | REQUEUE_HOLD | "") return 0 ;;
    esac
    return 1
}

cluster_wait_jobs() {
    deadline=$(($(date +%s) + $1))
    shift
    while [ "$(date +%s)" -lt "$deadline" ]; do
        busy=0
        for j in "$@"; do
            cluster_job_busy "$j" && busy=1
        done
        [ "$busy" = 0 ] && return 0
        sleep 2
    done
    return 1
}

# The pids of PID and all its descendants.
cluster_tree() {
    echo "$1"
    for c in $(ps -eo pid=,ppid= | awk -v p="$1" '$2 == p { print $1 }'); do cluster_tree "$c"; done
}

# Stops only what cluster_start started: cancels the jobs and waits for them, stops the daemons
# by the pids in their pid files, and ends any job step left behind (slurmstepd processes
# working in CLUSTER_DIR, and what they started).
cluster_stop() {
    [ -n "${CLUSTER_DIR:-}" ] || return 0
    if [ -f "$CLUSTER_DIR/slurmctld.pid" ] && kill -0 "$(cat "$CLUSTER_DIR/slurmctld.pid")" 2>/dev/null; then
        scancel --quiet --user=root 2>/dev/null
        cluster_wait_for '[ -z "$(squeue -h 2>/dev/null)" ]' 40
    fi
    for pidfile in "$CLUSTER_DIR"/slurmd-*.pid "$CLUSTER_DIR/slurmctld.pid" "$CLUSTER_DIR/munged.pid"; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        [ -n "$pid" ] && kill "$pid" 2>/dev/null
        i=0
        while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$i" -lt 20 ]; do
            sleep 0.5
            i=$((i + 1))
        done
        [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
        rm -f "$pidfile"
    done
    for d in /proc/[0-9]*; do
        case "$(readlink "$d/exe" 2>/dev/null)" in */slurmstepd) ;; *) continue ;; esac
        [ "$(readlink "$d/cwd" 2>/dev/null)" = "$CLUSTER_DIR" ] || continue
        # shellcheck disable=SC2046
        kill -9 $(cluster_tree "${d#/proc/}") 2>/dev/null
    done
    CLUSTER_DIR=""
}
