# Shared helpers for the integration tests (sourced). Each test prints TAP lines:
# "ok - name", "not ok - name", "ok - name # SKIP reason".
ASYNCRL_BUILD=${ASYNCRL_BUILD:-build}
BIN=${ASYNCRL_BIN:-$ASYNCRL_BUILD/asyncrl}
MODELS=${ASYNCRL_MODELS:-../shared/models}
TMP_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/asyncrl-test.XXXXXX")
trap 'rm -rf "$TMP_ROOT"' EXIT

ok() { echo "ok - $1"; }
not_ok() { echo "not ok - $1"; shift; for line in "$@"; do echo "# $line"; done; }
skip() { echo "ok - $1 # SKIP $2"; }
# check NAME COMMAND...: ok if the command succeeds.
check() { name=$1; shift; if "$@"; then ok "$name"; else not_ok "$name" "command failed: $*"; fi; }
# A job on NP ranks of this machine (oversubscribed; nothing busy-waits).
job() { np=$1; shift; sh scripts/mpirun.sh "$np" "$BIN" "$@"; }
have_models() { [ -r "$MODELS/stories260K.bin" ] && [ -r "$MODELS/tok512.bin" ]; }
# GPU tests (tests/integration/gpu_*.sh, run by `make CUDA=1 test-gpu`): the number of visible
# GPUs, 0 when there is none or nvidia-smi is missing.
gpu_count() {
    n=0
    if command -v nvidia-smi >/dev/null 2>&1; then n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU'); fi
    echo "${n:-0}"
}
