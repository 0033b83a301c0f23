# A throwaway Slurm cluster on this machine, for testing the job scripts (sourced by
# tests/slurm/*.sh). Installs Debian's slurmctld, slurmd and munge when missing (as root),
# writes a minimal slurm.conf for one node named after `hostname` with more CPUs than the
# machine has (ranks sleep while they wait; SlurmdParameters=config_overrides lets the node
# claim them), no cgroups (containers have none to give), and starts munged, slurmctld and
# slurmd as daemons whose files all live in one directory. Clients find it through SLURM_CONF.
#
#   cluster_install          0, or 1 with CLUSTER_WHY set (not root, apt-get failed)
#   cluster_start DIR        0, or 1 with CLUSTER_WHY set; exports SLURM_CONF
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

cluster_start() {
    CLUSTER_DIR=$1
    if [ "$(id -u)" != 0 ]; then
        CLUSTER_WHY="the daemons run as root here (slurmd starts jobs as their user); run as root"
        return 1
    fi
    mkdir -p "$CLUSTER_DIR/state" "$CLUSTER_DIR/spool" "$CLUSTER_DIR/munge"
    chmod 700 "$CLUSTER_DIR/munge"
    node=$(hostname -s)
    # Ports away from Slurm's defaults so that a real Slurm on this machine is not disturbed.
    base=$((20000 + $$ % 20000))
    # A fresh munge key for this cluster only.
    dd if=/dev/urandom of="$CLUSTER_DIR/munge/munge.key" bs=1024 count=1 2>/dev/null
    chmod 400 "$CLUSTER_DIR/munge/munge.key"
    sock=$CLUSTER_DIR/munge/munge.socket
    cat >"$CLUSTER_DIR/slurm.conf" <<EOF
# Written by tests/slurm/cluster.sh: one node, everything in $CLUSTER_DIR.
ClusterName=asyncrltest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$base
SlurmdPort=$((base + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start again.
AuthInfo=socket=$sock,cred_expire=5
StateSaveLocation=$CLUSTER_DIR/state
SlurmdSpoolDir=$CLUSTER_DIR/spool
SlurmctldPidFile=$CLUSTER_DIR/slurmctld.pid
SlurmdPidFile=$CLUSTER_DIR/slurmd.pid
SlurmctldLogFile=$CLUSTER_DIR/slurmctld.log
SlurmdLogFile=$CLUSTER_DIR/slurmd.log
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
KillWait=30
MinJobAge=3600
NodeName=$node NodeAddr=127.0.0.1 CPUs=8 RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
    export SLURM_CONF="$CLUSTER_DIR/slurm.conf"
    if ! munged --force -S "$sock" --key-file="$CLUSTER_DIR/munge/munge.key" --log-file="$CLUSTER_DIR/munged.log" \
        --pid-file="$CLUSTER_DIR/munged.pid" --seed-file="$CLUSTER_DIR/munge/seed" 2>"$CLUSTER_DIR/munged.err"; then
        CLUSTER_WHY="munged did not start: $(cat "$CLUSTER_DIR/munged.err")"
        return 1
    fi
    if ! slurmctld -i -f "$SLURM_CONF" 2>"$CLUSTER_DIR/slurmctld.err"; then
        CLUSTER_WHY="slurmctld did not start: $(tail -3 "$CLUSTER_DIR/slurmctld.err" "$CLUSTER_DIR/slurmctld.log" 2>/dev/null)"
        return 1
    fi
    if ! slurmd -f "$SLURM_CONF" 2>"$CLUSTER_DIR/slurmd.err"; then
        CLUSTER_WHY="slurmd did not start: $(tail -3 "$CLUSTER_DIR/slurmd.err" "$CLUSTER_DIR/slurmd.log" 2>/dev/null)"
        return 1
    fi
    if ! cluster_wait_for "sinfo -h -N -o %t | grep -q idle" 30; then
        CLUSTER_WHY="the node did not become idle: $(sinfo -N 2>&1 | tail -1); $(tail -3 "$CLUSTER_DIR/slurmd.log")"
        return 1
    fi
    return 0
}

# Job state from scontrol (PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, ...).
cluster_job_field() { scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }

# Waits until every job given is finished or $1 seconds passed: 0 if all finished.
cluster_wait_jobs() {
    deadline=$(($(date +%s) + $1))
    shift
    while [ "$(date +%s)" -lt "$deadline" ]; do
        busy=0
        for j in "$@"; do
            case "$(cluster_job_field "$j" JobState)" in
                PENDING | RUNNING | REQUEUED | COMPLETING | CONFIGURING | SUSPENDED | RESIZING | REQUEUE_FED | REQUEUE_HOLD | "") busy=1 ;;
            esac
        done
        [ "$busy" = 0 ] && return 0
        sleep 2
    done
    return 1
}

# Stops only what cluster_start started, by the pids in its pid files.
cluster_stop() {
    [ -n "${CLUSTER_DIR:-}" ] || return 0
    if [ -n "${SLURM_CONF:-}" ] && [ -f "$CLUSTER_DIR/slurmctld.pid" ]; then
        scancel --full --quiet --user=root 2>/dev/null
        sleep 1
    fi
    for d in slurmd slurmctld munged; do
        pidfile=$CLUSTER_DIR/$d.pid
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
    CLUSTER_DIR=""
}
