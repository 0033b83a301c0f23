# The GPU op tests (tests/unit/test_gpu_*.c) built against the CPU backend, so the CPU ops
# are compared with their renamed reference copies through the GPU test harness: the harness
# keeps compiling and its checks keep holding on machines without a GPU. On a GPU the same
# file tests the CUDA backend (make CUDA=1 test-gpu).
. tests/integration/lib.sh
found=0
for t in "$ASYNCRL_BUILD"/gpu-on-cpu/test_gpu_*; do
    [ -x "$t" ] || continue
    found=1
    log="$TMP_ROOT/$(basename "$t").log"
    "$t" >"$log" 2>&1
    rc=$?
    grep -E '^(not )?ok |^# [^o]' "$log"
    [ "$rc" = 0 ] || grep -q '^not ok ' "$log" || not_ok "$(basename "$t") exited with status $rc" "$(tail -5 "$log")"
done
[ "$found" = 1 ] || skip "GPU test harness on CPU" "no $ASYNCRL_BUILD/gpu-on-cpu/test_gpu_* (make tests-build)"
