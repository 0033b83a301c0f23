#!/bin/sh
# Runs an asyncrl job on this machine: scripts/mpirun.sh NP PROGRAM ARGS...
# Adds --oversubscribe (more ranks than cores is normal here: the orchestrator sleeps while
# it waits) and --allow-run-as-root when needed. Extra mpirun flags: MPIRUN_FLAGS="...".
set -u
np=$1
shift
flags="--oversubscribe --bind-to none"
[ "$(id -u)" = 0 ] && flags="$flags --allow-run-as-root"
# Shared-memory transport without ptrace-based single copy, which containers often forbid.
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
export OMPI_MCA_rmaps_base_oversubscribe=1
# OpenMP threads sleep instead of spinning when idle: several ranks share the cores.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
# shellcheck disable=SC2086
exec mpirun $flags ${MPIRUN_FLAGS:-} -np "$np" "$@"
