# GPU: the unit tests written for any backend, as built by the CUDA build: test_ops (every op
# against double-precision references and finite differences; its GEMM weights are never
# registered, so they run in fp32 on the GPU), test_infer_ops (paged attention, KV cache writes,
# sampling statistics and the draw rule) and test_infer_engine (the engine end to end; its
# KV-cache-vs-full-forward check compares two bf16 paths). A failure here that test_gpu_ops
# does not show points at a tolerance written for fp32 CPU arithmetic: judge it on the GPU.
. tests/integration/lib.sh
if [ "$(gpu_count)" = 0 ]; then
    skip "backend-generic unit tests on GPU" "no GPU visible (nvidia-smi -L)"
    exit 0
fi
for t in test_ops test_infer_ops test_infer_engine; do
    bin="$ASYNCRL_BUILD/tests/$t"
    if [ ! -x "$bin" ]; then
        skip "$t on GPU" "$bin not built (make CUDA=1 tests-build)"
        continue
    fi
    "$bin" >"$TMP_ROOT/$t.log" 2>&1
    rc=$?
    grep -E '^(not )?ok |^# [^o]' "$TMP_ROOT/$t.log" | sed "s/\$/ [$t]/"
    [ "$rc" = 0 ] || grep -q '^not ok ' "$TMP_ROOT/$t.log" || not_ok "$t exited with status $rc" "$(tail -5 "$TMP_ROOT/$t.log")"
done
