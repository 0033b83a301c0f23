"""Compares two runs bit for bit (Debian's /usr/bin/python3 with python3-h5py).

  compare_runs.py RUN_A RUN_B STEP
    metrics.h5: every dataset except the timing ones (/steps/timing/...) identical, bit for bit;
    checkpoints/step_STEP.h5: every dataset identical.
Prints TAP lines.
"""
import sys

import h5py
import numpy as np

from tap import finish, report  # tap.py, beside this script

a, b, step = sys.argv[1], sys.argv[2], int(sys.argv[3])


def datasets(f):
    out = {}
    f.visititems(lambda name, obj: out.__setitem__(name, obj) if isinstance(obj, h5py.Dataset) else None)
    return out


def compare(fa, fb, skip_prefix=None):
    da, db = datasets(fa), datasets(fb)
    names = sorted(n for n in da if not (skip_prefix and n.startswith(skip_prefix)))
    missing = [n for n in names if n not in db]
    differ = []
    for n in names:
        if n in db:
            x, y = da[n][()], db[n][()]
            if x.shape != y.shape or x.tobytes() != y.tobytes():
                differ.append(n)
    return names, missing, differ


with h5py.File(f"{a}/metrics.h5", "r") as fa, h5py.File(f"{b}/metrics.h5", "r") as fb:
    names, missing, differ = compare(fa, fb, "steps/timing")
    report(len(names) > 20 and not missing and not differ,
           f"metrics.h5: {len(names)} datasets identical bit for bit (timing excluded)",
           f"missing {missing[:5]}, different {differ[:5]}")
ckpt = f"checkpoints/step_{step:06d}.h5"
with h5py.File(f"{a}/{ckpt}", "r") as fa, h5py.File(f"{b}/{ckpt}", "r") as fb:
    names, missing, differ = compare(fa, fb)
    report(len(names) > 10 and not missing and not differ,
           f"{ckpt}: {len(names)} tensors identical bit for bit", f"missing {missing[:5]}, different {differ[:5]}")
finish()
