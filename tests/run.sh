#!/bin/sh
# Runs every test: the cmocka unit binaries in BUILD/tests and the integration scripts in
# tests/integration (which run real MPI jobs). Both speak TAP ("ok", "not ok", "# SKIP").
# Usage: tests/run.sh BUILD [gpu]. Ends with "N passed, N failed, N skipped".
set -u
BUILD=${1:-build}
MODE=${2:-cpu}
LOGS=$BUILD/test-logs
mkdir -p "$LOGS"
export ASYNCRL_BIN="$BUILD/asyncrl"
export ASYNCRL_BUILD="$BUILD"
export CMOCKA_MESSAGE_OUTPUT=TAP
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
passed=0; failed=0; skipped=0; failed_names=""

run_one() {  # name, command...
    name=$1; shift
    log="$LOGS/$name.log"
    start=$(date +%s)
    timeout "${TEST_TIMEOUT:-600}" "$@" >"$log" 2>&1
    rc=$?
    p=$(grep '^ok ' "$log" | grep -vc '# SKIP')
    s=$(grep -E '^(not )?ok ' "$log" | grep -c '# SKIP')
    f=$(grep '^not ok ' "$log" | grep -vc '# SKIP')
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
        f=1
        echo "not ok - $name exited with status $rc without reporting a failure" >>"$log"
    fi
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    secs=$(( $(date +%s) - start ))
    if [ "$f" != 0 ]; then
        failed_names="$failed_names $name"
        printf '%-40s %3d passed %3d failed %3d skipped  %4ds  FAILED (log: %s)\n' "$name" "$p" "$f" "$s" "$secs" "$log"
        grep -E '^not ok |^# ' "$log" | grep -v '^# not ok - ' | head -20 | sed 's/^/    /'
    else
        printf '%-40s %3d passed %3d failed %3d skipped  %4ds\n' "$name" "$p" "$f" "$s" "$secs"
    fi
}

for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    case "$name" in
        test_gpu_*) [ "$MODE" = gpu ] || continue ;;
        *) [ "$MODE" = gpu ] && continue ;;
    esac
    run_one "$name" "$t"
done
for s in tests/integration/*.sh; do
    [ -f "$s" ] || continue
    name=$(basename "$s" .sh)
    [ "$name" = lib ] && continue
    case "$name" in
        gpu_*) [ "$MODE" = gpu ] || continue ;;
        *) [ "$MODE" = gpu ] && continue ;;
    esac
    run_one "$name" sh "$s"
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
