#!/usr/bin/python3
"""Plots asyncrl runs side by side: reward, loss, mismatch_kl and throughput against the step,
one colour per run (the legend names each by its directory), from each run's metrics.h5: the
per-step values faintly, their trailing mean on top, and the greedy eval reward as dots.

    scripts/plot_runs.py RUN_DIR [RUN_DIR...] [-o runs.png] [--smooth N] [--separate]

Works on runs still being written (metrics.h5 is opened as an HDF5 SWMR reader) and on
finished ones. Without a display (the Agg backend). Needs Debian's python3-h5py and
python3-matplotlib (`make deps` installs them); run it with /usr/bin/python3.
--separate writes one PNG per panel (runs-reward.png, ...) instead of one with four panels.
"""
import argparse
import os
import sys

try:
    import h5py
    import matplotlib
    import numpy as np
except ImportError as e:
    sys.exit(f"plot_runs.py needs h5py, numpy and matplotlib ({e}): apt-get install python3-h5py python3-matplotlib "
             "(or make deps), and run it with /usr/bin/python3")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# (file name suffix, title, y label, [(dataset under /steps, line label, line style)], log scale)
PANELS = [
    ("reward", "reward", "reward_mean", [("reward_mean", "", "-")], False),
    ("loss", "loss", "loss", [("loss", "", "-")], False),
    ("mismatch_kl", "trainer/inference mismatch", "mismatch_kl", [("mismatch_kl", "", "-")], True),
    ("throughput", "throughput", "tokens/s", [("timing/inference_tokens_per_s", "inference", "-"),
                                               ("timing/trainer_tokens_per_s", "trainer", "--")], False),
]


def open_metrics(path):
    """Opens metrics.h5 as a SWMR reader (a running job may be writing it), else plainly."""
    try:
        return h5py.File(path, "r", libver="latest", swmr=True)
    except (OSError, ValueError):
        return h5py.File(path, "r")


def read_run(run_dir):
    """{dataset name: float64 array} for the datasets the panels need, and the eval table."""
    path = run_dir if run_dir.endswith(".h5") else os.path.join(run_dir, "metrics.h5")
    with open_metrics(path) as f:
        if "steps" not in f:
            raise ValueError(f"{path} has no /steps group: not an asyncrl metrics file")
        series = {}
        for _, _, _, lines, _ in PANELS:
            for name, _, _ in lines:
                if "steps/" + name in f:
                    series[name] = np.asarray(f["steps/" + name][:], dtype=np.float64)
        evals = {}
        for name in ("step", "greedy_reward"):
            if "eval/" + name in f:
                evals[name] = np.asarray(f["eval/" + name][:], dtype=np.float64)
    return series, evals


def smooth(y, window):
    """Trailing mean over `window` finite points (NaN steps are skipped, not zeroed)."""
    if window <= 1:
        return y
    out = np.full_like(y, np.nan)
    ok = np.isfinite(y)
    idx = np.flatnonzero(ok)
    vals = y[ok]
    csum = np.concatenate([[0.0], np.cumsum(vals)])
    for k, i in enumerate(idx):
        lo = max(0, k + 1 - window)
        out[i] = (csum[k + 1] - csum[lo]) / (k + 1 - lo)
    return out


def run_labels(run_dirs):
    """Legend names: each run's directory name, with its parent when two names clash."""
    names = [os.path.basename(os.path.normpath(d if not d.endswith(".h5") else os.path.dirname(d) or ".")) for d in run_dirs]
    if len(set(names)) < len(names):
        names = [os.path.normpath(d) for d in run_dirs]
    return names


def draw_panel(ax, panel, runs, window):
    _, title, ylabel, lines, log = panel
    drawn = False
    for i, (label, series, evals) in enumerate(runs):
        color = f"C{i % 10}"
        for name, line_label, style in lines:
            y = series.get(name)
            if y is None or not np.isfinite(y).any():
                continue
            x = np.arange(len(y))
            y_plot = np.where(y > 0, y, np.nan) if log else y
            if window > 1:  # the raw values faintly, the trailing mean on top
                ax.plot(x, y_plot, style, color=color, alpha=0.2, linewidth=0.8)
                y_plot = smooth(y_plot, window)
            ax.plot(x, y_plot, style, color=color, linewidth=1.5,
                    label=label + (f" ({line_label})" if line_label else ""))
            drawn = True
        if panel[0] == "reward" and "greedy_reward" in evals and "step" in evals and len(evals["step"]):
            ax.plot(evals["step"], evals["greedy_reward"], "o", color=color, markersize=4,
                    label=f"{label} (eval, greedy)")
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if log and drawn:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories (run.output_dir) or metrics.h5 files")
    parser.add_argument("-o", "--output", default="runs.png", help="PNG to write (default runs.png)")
    parser.add_argument("--smooth", type=int, default=0,
                        help="trailing moving average over this many steps, drawn over the raw values "
                             "(default: a tenth of the longest run; 1 = raw only)")
    parser.add_argument("--separate", action="store_true", help="one PNG per panel: OUTPUT-reward.png, ...")
    args = parser.parse_args()

    runs = []
    for run_dir, label in zip(args.runs, run_labels(args.runs)):
        try:
            series, evals = read_run(run_dir)
        except (OSError, ValueError, KeyError) as e:
            print(f"plot_runs.py: skipping {run_dir}: {e}", file=sys.stderr)
            continue
        runs.append((label, series, evals))
        reward = series.get("reward_mean", np.array([]))
        last = reward[np.isfinite(reward)][-1:] if len(reward) else []
        print(f"{label}: {len(reward)} steps" + (f", reward_mean last {last[0]:.4f}" if len(last) else ""))
    if not runs:
        sys.exit("plot_runs.py: no run could be read")
    longest = max((len(s.get("reward_mean", [])) for _, s, _ in runs), default=0)
    window = args.smooth if args.smooth > 0 else max(1, longest // 10)

    if args.separate:
        stem = args.output[:-4] if args.output.endswith(".png") else args.output
        for panel in PANELS:
            fig, ax = plt.subplots(figsize=(7, 4.5))
            draw_panel(ax, panel, runs, window)
            fig.tight_layout()
            out = f"{stem}-{panel[0]}.png"
            fig.savefig(out, dpi=110)
            plt.close(fig)
            print(f"wrote {out}")
    else:
        fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
        for ax, panel in zip(axes.flat, PANELS):
            draw_panel(ax, panel, runs, window)
        fig.suptitle(f"asyncrl runs ({len(runs)}); faint: per step, solid: mean of the last {window} steps", fontsize=11)
        fig.tight_layout()
        fig.savefig(args.output, dpi=110)
        plt.close(fig)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
