"""The whole cycle on held-out synthetic patients: every phase against the AVG, per phase.

    python benchmarks/quality_phases.py                 # the README's per-phase table and picture
    python benchmarks/quality_phases.py --epochs 2 --n_patients 8 --work /tmp/qp   # a smoke run

Writes the synthetic cohorts of ``benchmarks/quality.py`` (same seed, same patients), prepared
with ``prepare_dataset.py --phases all``, trains the recommended recipe phase-conditioned on every
phase of the training patients (``--phases all --input_nc 7``; ``--epochs`` passes over the ten
times larger set of pairs, so 6 epochs take about as many steps as 60 of phase 0 alone), and runs
``test.py --phases all`` on the test patients. Scored here, from the written volumes, in HU with
fixed regions, for every phase p: the motion-region MAE of the model and of the AVG against the
true phase p (the motion region of phase p: where it differs from the AVG), and the mean lung-base
(diaphragm) position error in mm of each; then the mean-of-phases consistency error (HU) of the
synthetic cycle against the input AVG, and of the true cycle (the noise level). With
``--phase0_run NAME`` the phase-0 model of that run (trained by ``quality.py`` in the same
``--work``) is tested and scored beside it at phase 0. ``--picture`` writes one patient's cycle:
coronal planes through the diaphragm, the ten synthetic phases above the ten true ones.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cohorts import (
    COMMON,
    RECIPE,
    ROOT,
    Cohort,
    add_cohort_arguments,
    make_cohorts,
    run,
)
from benchmarks.machine import cpu_name
from data.nifti_io import load_volume
from display.ct_views import middle_coronal
from display.cycle_views import save_cycle_strip
from evaluation.consistency import consistency_error
from evaluation.metrics import RegionSettings, body_mask, evaluate_volumes
from synthetic import SyntheticGrid
from util.atomic import atomic_write_json
from util.geometry import axial_axis, to_slice_stack
from util.names import phase_prediction_file_name
from util.phases import STANDARD_PHASES, phase_folder

#: The recipe, phase-conditioned: two more input channels carry the target phase.
PHASE_RECIPE = [*[f for f in RECIPE if f not in ("--input_nc", "5")], "--input_nc", "7",
                "--phases", "all"]


def train_and_test(name: str, flags: list[str], dataroot: Path, cohort: Cohort,
                   args: argparse.Namespace, test_flags: list[str]) -> tuple[float, Path]:
    """Train ``name`` (unless ``flags`` is empty: an existing run) and test it on the cohort;
    (training seconds, the folder of the written volumes)."""
    base = ["--name", name, "--checkpoints_dir", str(args.work / "checkpoints")]
    seconds = float("nan")
    if flags:
        half = args.epochs // 2
        seconds = run([sys.executable, "train.py", "--dataroot", str(dataroot), *base, *COMMON,
                       *flags, "--overwrite", "--n_epochs", str(args.epochs - half),
                       "--n_epochs_decay", str(half), "--save_epoch_freq",
                       str(10 * args.epochs), "--seed", str(args.seed)],
                      args.work / f"{name}.train.log", args.threads)
    results = args.work / "results_phases" / cohort.name
    run([sys.executable, "test.py", "--dataroot", str(cohort.dataroot), *base, "--results_dir",
         str(results), "--model", "pix2pix", "--dataset_mode", "nifti_aligned", "--preprocess",
         "none", "--axial_slice", "--epoch", "best", "--no_pictures", "--num_threads", "0",
         *test_flags], args.work / f"{name}.{cohort.name}.test.log", args.threads)
    return seconds, results / name / "test_best" / "volumes"


def phase_scores(cohort: Cohort, volumes: Path, phases: tuple[float, ...]) -> dict:
    """{phase label: {"model"|"avg": {"motion_mae_hu", "diaphragm_mm"}}} means over the
    cohort's patients, and "consistency": {"model"|"truth": body MAE (HU) of the mean of the
    phases against the AVG}."""
    per_phase: dict[str, dict[str, list[float]]] = {}
    consistency: dict[str, list[float]] = {"model": [], "truth": []}
    for pid in cohort.patients:
        avg = load_volume(cohort.dataroot / "testA" / f"{pid}.nii.gz")
        truths, preds = {}, {}
        for p in phases:
            truth = load_volume(cohort.dataroot / phase_folder("test", p) / f"{pid}.nii.gz")
            pred = load_volume(volumes / phase_prediction_file_name(pid, p)).hu
            truths[p], preds[p] = truth.hu, pred
            scores = evaluate_volumes(pred, truth.hu, avg.hu, avg.info.affine, RegionSettings())
            row = per_phase.setdefault(f"{p:g}", {k: [] for k in
                                                  ("model_mae", "avg_mae", "model_mm", "avg_mm")})
            row["model_mae"].append(scores["model"]["motion"]["mae_hu"])
            row["avg_mae"].append(scores["baseline"]["motion"]["mae_hu"])
            row["model_mm"].append(scores["geometry"]["model"]["diaphragm_error_mean_mm"])
            row["avg_mm"].append(scores["geometry"]["baseline"]["diaphragm_error_mean_mm"])
        if set(STANDARD_PHASES) <= set(phases):
            body = {"body": body_mask(avg.hu, axial_axis(avg.info.affine))}
            consistency["model"].append(consistency_error(list(preds.values()), avg.hu,
                                                          body)["body"]["mae_hu"])
            consistency["truth"].append(consistency_error(list(truths.values()), avg.hu,
                                                          body)["body"]["mae_hu"])

    def mean(values: list[float]) -> float:
        finite = [v for v in values if np.isfinite(v)]
        return float(np.mean(finite)) if finite else float("nan")

    return {"phases": {label: {k: mean(v) for k, v in row.items()}
                       for label, row in per_phase.items()},
            "consistency": {k: mean(v) for k, v in consistency.items()}}


def phase_table(scores: dict, title: str) -> str:
    """Markdown: one row per phase (model and AVG motion MAE, their ratio, diaphragm errors)."""
    lines = [f"| {title} phase | motion MAE model | AVG | model / AVG | diaphragm mm model | AVG |",
             "|---:|---:|---:|---:|---:|---:|"]
    for label, row in scores["phases"].items():
        ratio = row["model_mae"] / row["avg_mae"] if row["avg_mae"] else float("nan")
        lines.append(f"| {label} % | {row['model_mae']:.1f} | {row['avg_mae']:.1f} | "
                     f"{ratio:.2f} | {row['model_mm']:.2f} | {row['avg_mm']:.2f} |")
    c = scores["consistency"]
    lines.append(f"\nmean-of-phases consistency error, body MAE against the input AVG: "
                 f"synthetic cycle {c['model']:.1f} HU, true cycle {c['truth']:.1f} HU")
    return "\n".join(lines)


def write_picture(path: Path, cohort: Cohort, volumes: Path, pid: str) -> Path:
    """One patient's cycle as a picture: coronal planes through the middle of the lung base,
    synthetic phases above the true ones."""
    avg = load_volume(cohort.dataroot / "testA" / f"{pid}.nii.gz")
    affine = avg.info.affine
    rows: dict[str, list[np.ndarray]] = {"synthetic": [], "truth": []}
    for p in STANDARD_PHASES:
        truth = load_volume(cohort.dataroot / phase_folder("test", p) / f"{pid}.nii.gz").hu
        pred = load_volume(volumes / phase_prediction_file_name(pid, p)).hu
        for name, hu in (("synthetic", pred), ("truth", truth)):
            stack = to_slice_stack(hu, affine)  # (S, H, W): S inferior -> superior
            rows[name].append(middle_coronal(stack))
    spacing = load_volume(cohort.dataroot / "testA" / f"{pid}.nii.gz").spacing_mm
    return save_cycle_strip(path, rows, STANDARD_PHASES, f"{pid}: coronal, the breathing cycle "
                            f"synthesised from the AVG (top) and the true 4DCT (bottom)",
                            spacing_mm=(max(spacing), min(spacing)))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "quality_work")
    parser.add_argument("--epochs", type=int, default=6,
                        help="epochs over every phase's pairs: half at the initial lr")
    add_cohort_arguments(parser)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--phase0_run", default="",
                        help="an existing phase-0 run in <work>/checkpoints to compare at phase 0")
    parser.add_argument("--picture", type=Path, default=None,
                        help="write one test patient's synthetic and true cycle here (PNG)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the tables; save ``<work>/quality_phases.json``."""
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    grid = SyntheticGrid(size=args.size, n_slices=args.n_slices)
    dataroot, cohorts = make_cohorts(args.work, grid, args, phases=True)
    test = cohorts[0]
    seconds, volumes = train_and_test("phases", PHASE_RECIPE, dataroot, test, args,
                                      ["--phases", "all"])
    scores = phase_scores(test, volumes, STANDARD_PHASES)
    print(f"\nmachine: {cpu_name()}, {os.cpu_count()} CPUs, {args.threads} threads; "
          f"{args.size} x {args.size} x {args.n_slices}; {args.epochs} epochs over all phases "
          f"({seconds:.0f} s); test patients: {len(test.patients)}")
    print(phase_table(scores, "test"))
    out: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "train_seconds": seconds,
                 "test": scores}
    if args.phase0_run:
        _, phase0 = train_and_test(args.phase0_run, [], dataroot, test, args, [])
        out["phase0_model"] = phase_scores(test, phase0, (0.0,))
        row = out["phase0_model"]["phases"]["0"]
        print(f"\nphase 0 by the phase-0 model {args.phase0_run}: motion MAE "
              f"{row['model_mae']:.1f} HU (AVG {row['avg_mae']:.1f}), diaphragm "
              f"{row['model_mm']:.2f} mm; by the phase-conditioned model: "
              f"{scores['phases']['0']['model_mae']:.1f} HU, "
              f"{scores['phases']['0']['model_mm']:.2f} mm")
    if args.picture is not None:
        pid = sorted(test.patients)[0]
        print(f"picture: {write_picture(args.picture, test, volumes, pid)}")
    atomic_write_json(args.work / "quality_phases.json", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
