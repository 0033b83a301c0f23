#!/bin/sh
# make test-slurm: the Slurm job scripts under a throwaway local Slurm (tests/slurm/slurm_jobs.sh).
# Usage: tests/slurm/run.sh BUILD. Prints the TAP lines and ends with "N passed, N failed, N skipped".
set -u
BUILD=${1:-build}
mkdir -p "$BUILD/test-logs"
log=$BUILD/test-logs/slurm_jobs.log
ASYNCRL_BUILD=$BUILD ASYNCRL_BIN=$BUILD/asyncrl OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} \
    timeout "${TEST_TIMEOUT:-600}" sh tests/slurm/slurm_jobs.sh >"$log" 2>&1
rc=$?
cat "$log"
p=$(grep '^ok ' "$log" | grep -vc '# SKIP')
s=$(grep -E '^(not )?ok ' "$log" | grep -c '# SKIP')
f=$(grep -c '^not ok ' "$log")
if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
    echo "not ok - slurm_jobs exited with status $rc without reporting a failure"
    f=1
fi
echo "$p passed, $f failed, $s skipped"
[ "$f" = 0 ]
