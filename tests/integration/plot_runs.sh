# scripts/plot_runs.py on runs made by tests/make_metrics.py (h5py, an independent writer of the
# metrics.h5 layout): a finished run and one still held open by a SWMR writer; the PNG exists
# and has real content; unreadable runs are skipped with a message. `asyncrl report` reads the
# same files, the open one included.
. tests/integration/lib.sh
PY=/usr/bin/python3
if ! $PY -c "import h5py, matplotlib" 2>/dev/null; then
    skip "plot_runs.py" "Debian's python3-h5py / python3-matplotlib missing (make deps installs them)"
    exit 0
fi
D=$TMP_ROOT
$PY tests/make_metrics.py "$D/fast" --steps 60 --skill 0.08 --seed 1 || not_ok "make_metrics.py writes a finished run"
$PY tests/make_metrics.py "$D/slow" --steps 40 --skill 0.02 --seed 2 --hold 30 &
writer=$!
i=0
while [ ! -f "$D/slow/metrics.ready" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -f "$D/slow/metrics.ready" ] || not_ok "the SWMR writer started"

out=$($PY scripts/plot_runs.py "$D/fast" "$D/slow" -o "$D/cmp.png" 2>&1)
rc=$?
slow_steps=$(echo "$out" | sed -n 's/^slow: \([0-9]*\) steps.*/\1/p')
if [ $rc = 0 ] && echo "$out" | grep -q "^fast: 60 steps" && [ "${slow_steps:-0}" -ge 20 ]; then
    ok "plot_runs.py reads a finished run and one being written ($slow_steps steps so far)"
else
    not_ok "plot_runs.py reads a finished run and one being written" "$out"
fi
# Non-trivial: a real figure (size, many colours, the runs' colours present).
check_png() {
    $PY - "$1" "$2" <<'PYEOF'
import sys
import matplotlib.image as mpimg
import numpy as np
img = mpimg.imread(sys.argv[1])
h, w = img.shape[:2]
colors = len(np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0))
c0 = np.array([0x1f, 0x77, 0xb4]) / 255.0   # matplotlib's C0 and C1: the two runs
c1 = np.array([0xff, 0x7f, 0x0e]) / 255.0
near = lambda c: int((np.abs(img[..., :3] - c).max(axis=-1) < 0.02).sum())
ok = h >= int(sys.argv[2]) and colors > 50 and near(c0) > 500 and near(c1) > 500
print(f"{w}x{h}, {colors} colours, {near(c0)} px of run 1, {near(c1)} px of run 2")
sys.exit(0 if ok else 1)
PYEOF
}
if info=$(check_png "$D/cmp.png" 800); then ok "the PNG is a real figure ($info)"; else not_ok "the PNG is a real figure" "$info"; fi

out=$($PY scripts/plot_runs.py "$D/fast" "$D/slow" -o "$D/sep.png" --separate --smooth 5 2>&1)
n=0
for p in reward loss mismatch_kl throughput; do [ -s "$D/sep-$p.png" ] && n=$((n + 1)); done
if [ "$n" = 4 ] && info=$(check_png "$D/sep-reward.png" 400); then
    ok "--separate writes one PNG per panel"
else
    not_ok "--separate writes one PNG per panel" "$n of 4" "$out"
fi

# Unreadable runs: skipped with a message; none readable: an error.
mkdir -p "$D/junk" "$D/empty"
head -c 3000 /dev/urandom >"$D/junk/metrics.h5"
out=$($PY scripts/plot_runs.py "$D/junk" "$D/empty" "$D/fast" -o "$D/some.png" 2>&1)
if [ $? = 0 ] && echo "$out" | grep -q "skipping $D/junk" && echo "$out" | grep -q "skipping $D/empty" && [ -s "$D/some.png" ]; then
    ok "unreadable runs are skipped by name"
else
    not_ok "unreadable runs are skipped by name" "$out"
fi
out=$($PY scripts/plot_runs.py "$D/junk" -o "$D/none.png" 2>&1)
if [ $? != 0 ] && echo "$out" | grep -q "no run could be read" && [ ! -e "$D/none.png" ]; then
    ok "no readable run: an error, no PNG"
else
    not_ok "no readable run: an error, no PNG" "$out"
fi

# asyncrl report reads what h5py wrote, also while h5py still holds it open as a SWMR writer.
if [ -x "$BIN" ]; then
    out=$("$BIN" report "$D/fast" 2>&1)
    if echo "$out" | grep -q "60 of 100 done" && echo "$out" | grep -q "eval (6 evaluations)"; then
        ok "asyncrl report reads an h5py-written run"
    else
        not_ok "asyncrl report reads an h5py-written run" "$out"
    fi
    out=$("$BIN" report "$D/slow" 2>&1)
    if [ $? = 0 ] && echo "$out" | grep -q " of 100 done"; then
        ok "asyncrl report reads a run an h5py SWMR writer holds open"
    else
        not_ok "asyncrl report reads a run an h5py SWMR writer holds open" "$out"
    fi
else
    skip "asyncrl report on h5py-written runs" "no $BIN"
fi
kill "$writer" 2>/dev/null
wait "$writer" 2>/dev/null
exit 0
