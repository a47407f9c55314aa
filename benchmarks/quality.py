"""Synthesis quality on the built-in synthetic 4DCT: model vs AVG vs noise floor, per region.

    python benchmarks/quality.py                          # the recommended recipe
    python benchmarks/quality.py --ablation               # one row per option, shorter budget
    python benchmarks/quality.py --variants plain residual --epochs 10 --size 128 --n_slices 48
    python benchmarks/quality.py --variants plan recipe   # train.py with no recipe flag vs RECIPE

Writes a synthetic export with a fixed seed, splits it by patient with ``prepare_dataset.py``
(train / val / test), and writes a second, *shifted* group of patients whose parameters lie
outside the training ranges (larger breathing amplitude, larger lungs and tumours, more noise).
Each variant is trained with ``train.py`` (the ``best`` checkpoint by validation motion MAE) and
run with ``test.py --eval`` on the held-out test patients and on the shifted group; the written
phase-0 volumes are scored here, in HU, with fixed region settings, so every variant is scored
alike whatever HU window it trained with. Printed per region (motion, body, whole): MAE of the
model, of the identity answer (the AVG) and of the noise floor (the noiseless phase 0 the
generator knows, scored against the noisy phase 0 it wrote: no prediction can be expected to
beat it on average), and the body SSIM. Training seconds are wall-clock on this machine.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cohorts import (
    BASE,
    COMMON,
    RECIPE,
    ROOT,
    RUN_FLAGS,
    VOLUME,
    Cohort,
    add_cohort_arguments,
    epoch_flags,
    make_cohorts,
    run,
)
from benchmarks.machine import cpu_name
from data.nifti_io import Volume, load_volume
from evaluation.metrics import REGIONS, RegionSettings, evaluate_volumes
from synthetic import (
    TUMOUR_STRUCTURE,
    SyntheticGrid,
    patient_params,
    synthetic_patient,
    tumour_masks,
)
from util.atomic import atomic_write_json
from util.names import prediction_file_name

#: One row per option: the plain pix2pix, single options, then BASE with one option changed.
VARIANTS: dict[str, list[str]] = {
    "plain": ["--input_nc", "1", "--lambda_L1", "100", "--gan_mode", "vanilla"],
    "residual": ["--input_nc", "1", "--residual", "--lambda_L1", "100", "--gan_mode", "vanilla"],
    "context1": ["--input_nc", "3", "--context_slices", "1", "--lambda_L1", "100",
                 "--gan_mode", "vanilla"],
    "base": BASE,
    "base_window": [*BASE, "--hu_min", "-1024", "--hu_max", "1024"],
    "base_motion_weight": [*BASE, "--motion_weight", "4"],
    "base_l1_50": [*BASE, "--lambda_L1", "50"],
    "base_l1_only": [*BASE, "--lambda_GAN", "0"],
    "base_lsgan": [*BASE, "--gan_mode", "lsgan"],
    "recipe": RECIPE,
    "recipe_fp32": [*RECIPE, "--amp", "off"],  # the recipe in float32 on any CPU
    "unet3d": [*VOLUME, "--netG", "unet3d_4", "--ngf", "16", "--residual"],
    "motion3d": [*VOLUME, "--netG", "motion3d_4", "--ngf", "16"],
    # the plan alone: train.py's recommended recipe, planned from the data, no recipe flag
    "plan": RUN_FLAGS,
}
#: Variants whose flags hold the architecture and batch themselves (not COMMON's).
OWN_FLAGS = frozenset({"unet3d", "motion3d", "plan"})


#: Geometry figures averaged over patients, as :func:`evaluation.metrics.evaluate_volumes`
#: names them in its "geometry" block.
GEOMETRY_KEYS = ("lung_dice", "lung_volume_error_pct", "diaphragm_error_mean_mm",
                 "diaphragm_error_p95_mm", "diaphragm_bias_mm")


def _answer_scores(scores: dict, answer: str) -> dict:
    """One answer's figures of an ``evaluate_volumes`` result: {region: {metric}}, plus
    "geometry" {key: value} and "gtv_com_mm" (the tumour's centre-of-mass error)."""
    geometry = scores["geometry"][answer]
    structures = geometry.get("structures", {})
    return {**{r: scores[answer][r] for r in REGIONS},
            "geometry": {k: geometry[k] for k in GEOMETRY_KEYS},
            "gtv_com_mm": structures.get(TUMOUR_STRUCTURE, {}).get("com_error_mm", float("nan"))}


def _mean_scores(answers: list[dict]) -> dict:
    """Means over patients of :func:`_answer_scores` dicts (NaN-aware)."""
    def mean(values: list[float]) -> float:
        finite = [v for v in values if v is not None and np.isfinite(v)]
        return float(np.mean(finite)) if finite else float("nan")

    out: dict = {r: {m: mean([a[r][m] for a in answers]) for m in answers[0][r]}
                 for r in REGIONS}
    out["geometry"] = {k: mean([a["geometry"][k] for a in answers]) for k in GEOMETRY_KEYS}
    out["gtv_com_mm"] = mean([a["gtv_com_mm"] for a in answers])
    return out


def _score(pred: np.ndarray, truth: Volume, avg: np.ndarray, gtv: np.ndarray) -> dict:
    """``evaluate_volumes`` of ``pred`` against ``truth`` with the AVG baseline and the
    phase-0 tumour mask ``gtv``, fixed default regions; all (I, J, K) on the truth's grid."""
    return evaluate_volumes(pred, truth.hu, avg, truth.info.affine, RegionSettings(),
                            structures={TUMOUR_STRUCTURE: gtv})


def _truth_and_avg(cohort: Cohort, pid: str) -> tuple[Volume, np.ndarray]:
    """The patient's phase 0 (as written) and AVG (HU)."""
    return (load_volume(cohort.dataroot / "testB" / f"{pid}.nii.gz"),
            load_volume(cohort.dataroot / "testA" / f"{pid}.nii.gz").hu)


def _patient(cohort: Cohort, pid: str, grid: SyntheticGrid) -> tuple[np.ndarray, np.ndarray]:
    """(noiseless phase 0 in HU, phase-0 tumour mask) regenerated from the patient's
    parameters, in the written volumes' voxel order."""
    seed, index, ranges = cohort.patients[pid]
    params = patient_params(seed, index, ranges)
    return synthetic_patient(params, grid).noiseless_hu[0], tumour_masks(params, grid)[0]


def reference_scores(cohort: Cohort, grid: SyntheticGrid) -> dict:
    """Mean scores of the answers no model gives: {"identity" (the AVG), "noise_floor" (the
    noiseless phase 0, regenerated from the patient's parameters)}."""
    identity, floor = [], []
    for pid in cohort.patients:
        truth, avg = _truth_and_avg(cohort, pid)
        clean, gtv = _patient(cohort, pid, grid)
        scores = _score(clean, truth, avg, gtv)
        identity.append(_answer_scores(scores, "baseline"))
        floor.append(_answer_scores(scores, "model"))
    return {"identity": _mean_scores(identity), "noise_floor": _mean_scores(floor)}


def model_scores(cohort: Cohort, volumes: Path, grid: SyntheticGrid) -> dict:
    """Mean scores of the predicted volumes ``volumes/<pid>_fake_B.nii.gz`` of the cohort."""
    scores = []
    for pid in cohort.patients:
        truth, avg = _truth_and_avg(cohort, pid)
        pred = load_volume(volumes / prediction_file_name(pid)).hu
        scores.append(_answer_scores(_score(pred, truth, avg, _patient(cohort, pid, grid)[1]),
                                     "model"))
    return _mean_scores(scores)


def run_variant(name: str, flags: list[str], dataroot: Path, cohorts: list[Cohort],
                work: Path, args: argparse.Namespace) -> dict:
    """Train ``name`` with ``flags``, test it on every cohort; scores and training seconds."""
    base = ["--name", name, "--checkpoints_dir", str(work / "checkpoints")]
    common = [] if name in OWN_FLAGS else COMMON
    seconds = run([sys.executable, "train.py", "--dataroot", str(dataroot), *base, *common,
                   *flags, "--overwrite", *epoch_flags(args.epochs),
                   "--save_epoch_freq", str(10 * max(args.epochs, 100)), "--seed",
                   str(args.seed)],
                  work / f"{name}.train.log", args.threads)
    out: dict = {"train_seconds": seconds, "flags": flags}
    for cohort in cohorts:
        results = work / "results" / cohort.name
        run([sys.executable, "test.py", "--dataroot", str(cohort.dataroot), *base,
             "--results_dir", str(results), "--model", "pix2pix", "--dataset_mode",
             "nifti_aligned", "--preprocess", "none", "--axial_slice", "--epoch", "best",
             "--eval", "--no_pictures", "--num_threads", "0"],
            work / f"{name}.{cohort.name}.test.log", args.threads)
        out[cohort.name] = model_scores(cohort, results / name / "test_best" / "volumes",
                                        SyntheticGrid(size=args.size, n_slices=args.n_slices))
    return out


def table(results: dict, references: dict, cohort: str) -> str:
    """Markdown table: one row per answer, MAE (HU) per region, body SSIM, the geometry
    (diaphragm error mean and p95 in mm, lung Dice, tumour centre error in mm), seconds."""
    lines = [f"| {cohort} | motion MAE | body MAE | whole MAE | body SSIM | diaphragm mm | "
             f"p95 mm | lung Dice | GTV mm | train s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rows = [("noise floor", references[cohort]["noise_floor"], None),
            ("identity (AVG)", references[cohort]["identity"], None)]
    rows += [(name, r[cohort], r["train_seconds"]) for name, r in results.items()]
    for name, s, seconds in rows:
        mae = [f"{s[region]['mae_hu']:.1f}" for region in ("motion", "body", "whole")]
        g = s["geometry"]
        geo = [f"{g['diaphragm_error_mean_mm']:.2f}", f"{g['diaphragm_error_p95_mm']:.1f}",
               f"{g['lung_dice']:.3f}", f"{s['gtv_com_mm']:.2f}"]
        secs = "" if seconds is None else f"{seconds:.0f}"
        lines.append(f"| {name} | {' | '.join(mae)} | {s['body']['ssim']:.3f} | "
                     f"{' | '.join(geo)} | {secs} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "quality_work",
                        help="folder for data, checkpoints, results and logs (data made anew)")
    parser.add_argument("--variants", nargs="+", default=["recipe"], choices=sorted(VARIANTS))
    parser.add_argument("--ablation", action="store_true", help="run every variant")
    parser.add_argument("--epochs", type=int, default=60,
                        help="epochs per variant: half at the initial lr, half decaying; 0: "
                             "train.py's (the plan's for the plan variant)")
    add_cohort_arguments(parser)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="CPU threads per training/test process")
    parser.add_argument("--jobs", type=int, default=1,
                        help="variants trained side by side (give each --threads cores)")
    args = parser.parse_args(argv)
    if args.ablation:
        args.variants = list(VARIANTS)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the tables; save ``<work>/quality.json``."""
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    grid = SyntheticGrid(size=args.size, n_slices=args.n_slices)
    dataroot, cohorts = make_cohorts(args.work, grid, args)
    references = {c.name: reference_scores(c, grid) for c in cohorts}
    print(f"training {', '.join(args.variants)} ({args.jobs} at a time) ...", flush=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # each job is a subprocess
        futures = {name: pool.submit(run_variant, name, VARIANTS[name], dataroot, cohorts,
                                     args.work, args) for name in args.variants}
    results = {name: future.result() for name, future in futures.items()}
    counts = ", ".join(f"{c.name} {len(c.patients)}" for c in cohorts)
    print(f"\nmachine: {cpu_name()}, {os.cpu_count()} CPUs, "
          f"{args.jobs} job(s) of {args.threads} thread(s); "
          f"{args.size} x {args.size} x {args.n_slices}, "
          f"{args.epochs} epochs; held-out patients: {counts}")
    for cohort in cohorts:
        print(f"\n{table(results, references, cohort.name)}")
    atomic_write_json(args.work / "quality.json",
                      {"args": {k: str(v) for k, v in vars(args).items()},
                       "references": references, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
