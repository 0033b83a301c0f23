"""Checks a finished run's metrics.h5 (Debian's /usr/bin/python3 with python3-h5py).

  check_run.py METRICS MODE K MAX_OFF [LEARN_MARGIN]
    MODE: sync (async_level 0: every trained token has version n), deterministic (version
    max(0, n-k)), async (no token older than n-k-MAX_OFF, none newer than n).
    Also: the logged off_policy_mean/max agree with the rollout table; step times do not
    overlap; with LEARN_MARGIN, the
    mean reward of the last quarter of steps beats the first quarter by at least that margin.
Prints TAP lines.
"""
import sys

import h5py
import numpy as np

from tap import finish, report  # tap.py, beside this script

path, mode, k, max_off = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
margin = float(sys.argv[5]) if len(sys.argv) > 5 else None

f = h5py.File(path, "r", libver="latest", swmr=True)
r = f["rollouts"]
steps, offs, lens = r["step"][:], r["token_offset"][:], r["n_tokens"][:]
tokens_v = r["token_versions"][:]
n_steps = len(f["steps/reward_mean"])
bad, off_sum, off_n, off_max = [], np.zeros(n_steps), np.zeros(n_steps), np.zeros(n_steps)
for i in range(len(steps)):
    n = int(steps[i])
    v = tokens_v[offs[i]:offs[i] + lens[i]]
    v = v[v >= 0]  # completion tokens only (prompt and environment tokens are -1)
    if mode == "sync":
        ok = np.all(v == n)
    elif mode == "deterministic":
        ok = np.all(v == max(0, n - k))
    else:
        ok = np.all(v >= n - k - max_off) and np.all(v <= n)
    if not ok:
        bad.append((i, n, sorted(set(v.tolist()))[:5]))
    if n < n_steps and len(v):
        off = n - v
        off_sum[n] += off.sum()
        off_n[n] += len(v)
        off_max[n] = max(off_max[n], off.max())
report(len(steps) > 0 and not bad, f"{mode} staleness bound holds for every trained token ({len(steps)} rollouts)",
       f"violations (row, step, versions): {bad[:3]}")
logged_mean, logged_max = f["steps/off_policy_mean"][:], f["steps/off_policy_max"][:]
have = off_n > 0
table_mean = np.where(have, off_sum / np.maximum(off_n, 1), 0.0)
ok = np.allclose(logged_mean[have], table_mean[have], atol=1e-9) and np.allclose(logged_max[have], off_max[have])
report(ok, "logged off-policy levels agree with the rollout table",
       f"logged {logged_mean[:5]} / {logged_max[:5]}, table {table_mean[:5]} / {off_max[:5]}")
# Step times are consecutive, not overlapping: after the first, each step's step_s is the
# elapsed time since the step before it ended (one job: no restart in between).
step_s, elapsed = f["steps/timing/step_s"][:], f["steps/timing/elapsed_s"][:]
gaps = np.diff(elapsed)
report(np.all(step_s >= 0) and np.allclose(step_s[1:], gaps, atol=1e-6),
       "step times add up to the run's wall time (no overlap between steps)",
       f"step_s {step_s[1:6]} vs elapsed gaps {gaps[:5]}")
# Inference throughput is measured between engine reports: never a 0 from a window with no
# report, and an engine is never busy more than the whole time (the old per-step differences of
# counters gave both). NaN only until each engine has reported twice.
tps, busy = f["steps/timing/inference_tokens_per_s"][:], f["steps/timing/inference_busy_frac"][:]
measured = np.isfinite(tps)
report(measured[len(tps) // 4:].all() and np.all(tps[measured] > 0) and np.all(busy[measured] <= 1.02),
       "inference tokens/s and busy share are measured, positive and at most the whole time",
       f"tokens/s {tps[:6]}, busy {busy[:6]}, max busy {np.nanmax(busy) if measured.any() else 'none'}")
if margin is not None:
    reward = f["steps/reward_mean"][:]
    q = max(1, len(reward) // 4)
    first, last = float(np.mean(reward[:q])), float(np.mean(reward[-q:]))
    tenths = [f"{x:.3f}" for x in (np.mean(c) for c in np.array_split(reward, 10))]
    report(last >= first + margin, f"reward rises: first quarter {first:.3f}, last quarter {last:.3f}",
           f"expected a gain of at least {margin}; reward by tenths of the run {' '.join(tenths)}; "
           f"mean off-policy level {np.mean(logged_mean):.2f}, entropy {np.mean(f['steps/entropy'][:]):.3f}")
finish()
