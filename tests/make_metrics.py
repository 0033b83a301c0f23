#!/usr/bin/python3
"""Writes a metrics.h5 with the layout of src/io/metrics.h and made-up but plausible values, for
testing the offline tools (scripts/plot_runs.py) without running a job.

    make_metrics.py RUN_DIR [--steps N] [--seed S] [--hold SECONDS]

--hold keeps the file open as an HDF5 SWMR writer: it writes half the steps, creates
RUN_DIR/metrics.ready, writes the rest one step at a time (flushing each) and stays open for
SECONDS, as a running job does. Needs h5py and numpy (Debian: python3-h5py).
"""
import argparse
import os
import time

import h5py
import numpy as np

STEP_NAMES = [
    "reward_mean", "samples", "groups_dropped", "groups_rescheduled", "completion_len_mean", "seq_len_mean",
    "seq_len_max", "truncated_frac", "off_policy_mean", "off_policy_max", "loss", "entropy", "mismatch_kl",
    "masked_low", "masked_high", "masked_seq", "grad_norm", "lr", "skipped", "trainer_tokens",
    "timing/step_s", "timing/trainer_s", "timing/trainer_wait_s", "timing/rollout_wait_s",
    "timing/inference_tokens_per_s", "timing/trainer_tokens_per_s", "timing/weights_broadcast_s",
    "timing/elapsed_s", "reward/reverse",
]
EVAL_NAMES = ["step", "version", "greedy_reward", "greedy_pass", "sampled_reward", "sampled_pass", "completion_len"]
ROLLOUT_COLUMNS = {"step": "i4", "group": "i8", "problem": "i8", "env": "i4", "sample": "i4", "reward": "f8",
                   "advantage": "f8", "prompt_len": "i4", "completion_len": "i4", "version_min": "i4",
                   "version_max": "i4", "finish": "i4", "token_offset": "i8", "n_tokens": "i4"}


def step_values(step, rng, skill):
    """The per-step metrics of step `step` for a run that learns at rate `skill`."""
    reward = min(1.0, 0.1 + 0.8 * (1 - np.exp(-skill * step)) + 0.03 * rng.standard_normal())
    v = {name: float(rng.uniform(0, 1)) for name in STEP_NAMES}
    v.update({
        "reward_mean": reward, "reward/reverse": reward, "samples": 64.0,
        "loss": 0.05 * np.exp(-0.05 * step) + 0.01 * rng.standard_normal(),
        "mismatch_kl": 1e-3 * np.exp(0.5 * rng.standard_normal()),
        "skipped": 0.0, "lr": 3e-4, "off_policy_max": float(step % 3),
        "timing/step_s": 2.0 + 0.2 * rng.standard_normal(),
        "timing/inference_tokens_per_s": 900 + 100 * rng.standard_normal(),
        "timing/trainer_tokens_per_s": 3000 + 200 * rng.standard_normal(),
        "timing/elapsed_s": 2.0 * (step + 1),
    })
    return v


def create(path):
    f = h5py.File(path, "w", libver="latest")
    for name in STEP_NAMES:
        f.create_dataset("steps/" + name, shape=(0,), maxshape=(None,), chunks=(256,), dtype="f8")
    for name in EVAL_NAMES:
        f.create_dataset("eval/" + name, shape=(0,), maxshape=(None,), chunks=(64,), dtype="f8")
    for name, dtype in ROLLOUT_COLUMNS.items():
        f.create_dataset("rollouts/" + name, shape=(0,), maxshape=(None,), chunks=(1024,), dtype=dtype)
    f.attrs["config"] = "run = { max_steps = 100; };"
    f.attrs["env_names"] = "reverse"
    f.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return f


def append(ds, value):
    ds.resize((ds.shape[0] + 1,))
    ds[-1] = value


def write_step(f, step, rng, skill):
    for name, value in step_values(step, rng, skill).items():
        append(f["steps/" + name], value)
    if step % 10 == 0:
        greedy = 0.8 * (1 - np.exp(-skill * step))
        for name, value in zip(EVAL_NAMES, [step, step, greedy, greedy / 2, greedy * 0.9, greedy / 3, 12.0]):
            append(f["eval/" + name], value)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skill", type=float, default=0.05, help="how fast the made-up reward rises")
    parser.add_argument("--hold", type=float, default=0, help="stay open as a SWMR writer this many seconds")
    args = parser.parse_args()
    os.makedirs(args.run_dir, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    f = create(os.path.join(args.run_dir, "metrics.h5"))
    if args.hold <= 0:
        for step in range(args.steps):
            write_step(f, step, rng, args.skill)
        f.close()
        return
    f.swmr_mode = True
    half = args.steps // 2
    for step in range(half):
        write_step(f, step, rng, args.skill)
    f.flush()
    open(os.path.join(args.run_dir, "metrics.ready"), "w").close()
    for step in range(half, args.steps):
        write_step(f, step, rng, args.skill)
        f.flush()
    time.sleep(args.hold)
    f.close()


if __name__ == "__main__":
    main()
