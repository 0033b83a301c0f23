#!/bin/sh
# Runs an asyncrl job on this machine: scripts/mpirun.sh NP PROGRAM ARGS...
# Adds --oversubscribe (more ranks than cores is normal here: the orchestrator sleeps while
# it waits) and --allow-run-as-root when needed. Extra mpirun flags: MPIRUN_FLAGS="...".
set -u
np=$1
shift
flags="--oversubscribe --bind-to none"
[ "$(id -u)" = 0 ] && flags="$flags --allow-run-as-root"
# Shared memory moves large messages (the weight broadcast) in one copy with CMA, which needs
# ptrace rights between sibling processes; where Yama restricts ptrace (scope >= 1), fall back to
# copying through the shared-memory FIFO (much slower for large messages).
if [ -z "${OMPI_MCA_btl_vader_single_copy_mechanism:-}" ]; then
    scope=$(cat /proc/sys/kernel/yama/ptrace_scope 2>/dev/null || echo 0)
    if [ "$scope" = 0 ]; then
        export OMPI_MCA_btl_vader_single_copy_mechanism=cma
    else
        export OMPI_MCA_btl_vader_single_copy_mechanism=none
    fi
fi
export OMPI_MCA_rmaps_base_oversubscribe=1
# OpenMP threads wait for the next parallel region by spinning briefly (1000 rounds, some tens
# of microseconds) and then sleep: the back-to-back regions of a decode step hand over at full
# speed (passive waiting, a futex wake per region, made decode 1.4-2.5x slower), while an idle
# rank, or one whose cores are shared, gives them up soon. A user's OMP_WAIT_POLICY or
# GOMP_SPINCOUNT (GCC's OpenMP) wins.
[ -n "${OMP_WAIT_POLICY:-}" ] || export GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-1000}
# shellcheck disable=SC2086
exec mpirun $flags ${MPIRUN_FLAGS:-} -np "$np" "$@"
