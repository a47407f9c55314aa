"""Time to a useful model: minutes of training until the validation motion-region MAE first
reaches 0.5 x and 0.4 x the AVG's, per training variant, with the curve as a picture.

    python benchmarks/time_to_quality.py                       # before / after, side by side
    python benchmarks/time_to_quality.py --variants before recipe --epochs 60 --stop_at 0

The patients are ``benchmarks/quality.py``'s (40 synthetic patients at 64 x 64 x 32, split by
patient; the 6 validation patients score every epoch). Every variant trains with ``train.py`` on
the recipe's flags and schedule (``--epochs``: half at the initial learning rate, half decaying)
and validates after every epoch; ``val_log.jsonl`` gives the validation motion MAE and the
seconds spent training (validation and checkpoints left out) at each epoch. The variants run **at
the same time**, with the cores shared out between them (``--threads`` each), so load on the
machine hits all of them alike; they stop once every one has reached ``--stop_at`` x the AVG's
MAE (0 = train to the end, for the final quality). Prints one Markdown table and writes
``--plot`` (MAE against minutes, the thresholds drawn) and ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cohorts import COMMON, RECIPE, ROOT, add_cohort_arguments, make_cohorts
from benchmarks.machine import cpu_name
from synthetic import SyntheticGrid

#: Variants: label -> flags added to the recipe (``benchmarks/cohorts.py: RECIPE``; the last
#: value of a flag wins). ``before`` is the recipe as it was before the second performance round:
#: float32, pix2pix's learning rate, no average of G. ``recipe`` takes train.py's defaults (bf16
#: on CPUs with bfloat16 matrix units); the others take one change back, to show its share.
VARIANTS: dict[str, list[str]] = {
    "before": ["--amp", "off", "--lr", "0.0002", "--ema_decay", "0"],
    "recipe": [],
    "recipe_fp32": ["--amp", "off"],
    "no_ema": ["--ema_decay", "0"],
    "lr2": ["--lr", "0.0002"],
    "lr8": ["--lr", "0.0008"],
    "batch4": ["--batch_size", "4"],
}
#: Fractions of the AVG's validation motion MAE whose first crossing is timed.
THRESHOLDS = (0.5, 0.4)


def train_command(dataroot: Path, work: Path, label: str, epochs: int) -> list[str]:
    """train.py's command line for one variant (validation every epoch)."""
    return [sys.executable, "train.py", "--dataroot", str(dataroot), "--checkpoints_dir",
            str(work / "checkpoints"), "--name", label, *COMMON, *RECIPE, *VARIANTS[label],
            "--n_epochs", str(epochs - epochs // 2), "--n_epochs_decay", str(epochs // 2),
            "--save_epoch_freq", str(epochs), "--val_freq", "1", "--overwrite"]


def read_curve(run: Path) -> list[dict[str, float]]:
    """[{epoch, seconds, ratio, mae_hu}] from ``run/val_log.jsonl`` (ratio = the model's
    validation motion MAE over the AVG's); [] before the first validation."""
    path = run / "val_log.jsonl"
    if not path.is_file():
        return []
    points = []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        metrics = record["metrics"]
        mae, avg = metrics["val_motion_mae_hu"], metrics["baseline_motion_mae_hu"]
        points.append({"epoch": record["epoch"], "seconds": record["train_seconds"],
                       "mae_hu": mae, "avg_hu": avg, "ratio": mae / avg})
    return points


def first_crossing(curve: list[dict[str, float]], threshold: float) -> dict[str, float] | None:
    """The first point whose ratio is at most ``threshold``; None if none is."""
    return next((p for p in curve if p["ratio"] <= threshold), None)


def run_variants(dataroot: Path, work: Path, args: argparse.Namespace
                 ) -> dict[str, list[dict[str, float]]]:
    """Train every variant at once; stop each at ``--stop_at``; return the curves."""
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for label in args.variants:
        log = (work / f"{label}.train.log").open("wb")
        procs[label] = subprocess.Popen(train_command(dataroot, work, label, args.epochs),
                                        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    curves: dict[str, list[dict[str, float]]] = {}
    while procs:  # all run until every one has reached --stop_at: the load stays the same
        time.sleep(2.0)
        for label, proc in list(procs.items()):
            curves[label] = read_curve(work / "checkpoints" / label)
            if proc.poll() is not None:
                if proc.returncode != 0:
                    raise SystemExit(f"{label}: train.py failed, see {work / label}.train.log")
                del procs[label]
        if args.stop_at > 0 and all(first_crossing(c, args.stop_at) for c in curves.values()):
            for proc in procs.values():
                proc.terminate()
                proc.wait()
            break
    return {label: read_curve(work / "checkpoints" / label) for label in args.variants}


def summary(curves: dict[str, list[dict[str, float]]]) -> list[dict[str, Any]]:
    """One row per variant: epochs and minutes to each threshold, best and last ratio."""
    rows = []
    for label, curve in curves.items():
        row: dict[str, Any] = {"variant": label, "flags": " ".join(VARIANTS[label]),
                               "epochs_run": len(curve),
                               "s_per_epoch": curve[-1]["seconds"] / curve[-1]["epoch"],
                               "best_ratio": min(p["ratio"] for p in curve),
                               "last_ratio": curve[-1]["ratio"],
                               "last_mae_hu": curve[-1]["mae_hu"]}
        for t in THRESHOLDS:
            hit = first_crossing(curve, t)
            row[f"epoch_{t}"] = hit["epoch"] if hit else None
            row[f"minutes_{t}"] = hit["seconds"] / 60 if hit else None
        rows.append(row)
    return rows


def plot(curves: dict[str, list[dict[str, float]]], path: Path, title: str) -> None:
    """MAE (HU) against minutes of training, one line per variant, thresholds dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    avg = next(iter(curves.values()))[0]["avg_hu"]
    for label, curve in curves.items():
        ax.plot([p["seconds"] / 60 for p in curve], [p["mae_hu"] for p in curve], marker=".",
                label=f"{label} ({' '.join(VARIANTS[label]) or 'the recipe as it is'})")
    for t in THRESHOLDS:
        ax.axhline(t * avg, color="grey", linestyle="--", linewidth=0.8)
        ax.text(0.99, t * avg, f"{t} x AVG ", va="bottom", ha="right", fontsize=8, color="grey",
                transform=ax.get_yaxis_transform())
    ax.set_xlabel("minutes of training (validation left out)")
    ax.set_ylabel("validation motion-region MAE (HU)")
    ax.set_ylim(0, 0.7 * avg)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parse_args() -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "ttq_work")
    parser.add_argument("--variants", nargs="+", default=["before", "recipe"],
                        choices=sorted(VARIANTS))
    parser.add_argument("--epochs", type=int, default=60, help="the schedule's length")
    parser.add_argument("--stop_at", type=float, default=min(THRESHOLDS),
                        help="stop a run once its ratio reaches this (0: train to the end)")
    add_cohort_arguments(parser)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads per run (0: the cores shared out)")
    parser.add_argument("--plot", type=Path, help="PNG of the curves")
    parser.add_argument("--json", type=Path, help="write the rows and curves here")
    return parser.parse_args()


def main() -> None:
    """Prepare quality.py's patients, train the variants side by side, report."""
    args = parse_args()
    args.threads = args.threads or max(1, (os.cpu_count() or 1) // len(args.variants))
    args.work.mkdir(parents=True, exist_ok=True)
    dataroot, _ = make_cohorts(args.work, SyntheticGrid(size=args.size, n_slices=args.n_slices),
                               args)
    curves = run_variants(dataroot, args.work, args)
    rows = summary(curves)
    title = (f"{cpu_name()}, {len(args.variants)} runs at once x {args.threads} thread(s); "
             f"recipe, {args.epochs}-epoch schedule")
    print(title)
    print("| variant | flags | s/epoch | epochs to 0.5x | min to 0.5x | epochs to 0.4x "
          "| min to 0.4x | best ratio | epochs run |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        def cell(v: Any, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)
        print(f"| {r['variant']} | {r['flags'] or '(defaults)'} | {r['s_per_epoch']:.1f} | "
              f"{cell(r['epoch_0.5'], 'd')} | {cell(r['minutes_0.5'], '.2f')} | "
              f"{cell(r['epoch_0.4'], 'd')} | {cell(r['minutes_0.4'], '.2f')} | "
              f"{r['best_ratio']:.3f} | {r['epochs_run']} |")
    if args.plot:
        plot(curves, args.plot, title)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "curves": curves}, indent=1))


if __name__ == "__main__":
    main()
