"""Cross-source quality: train on one family of synthetic 4DCT, score on families never seen.

    python benchmarks/cross_source.py                                  # recipe and motion3d
    python benchmarks/cross_source.py --variants recipe --epochs 20 --train_family phantom_wide

A model designed on the project's own phantom is flattered by it: the figure that decides a
default is the one on data the model was not tuned to. This benchmark writes a training family
(:mod:`synthetic.families`; split train / val / test by ``prepare_dataset.py``, the test split
being the in-distribution figure) and, from other seeds, held-out patients of every test family
(other voxel sizes, other anatomy, motion applied by a smooth deformation of a static volume,
other noise and kernels). Each variant is trained with ``train.py`` (``best`` by validation),
run with ``test.py --epoch best --eval`` on every source, and the written phase-0 volumes are
scored here in HU with fixed region settings (:class:`evaluation.metrics.RegionSettings`):

- motion / body / whole: the mean over patients of the model's MAE divided by the AVG's (the
  identity answer), and the worst patient's ratio;
- static: the body outside the motion region, the model's MAE minus the AVG's in HU (the AVG
  is right there: a model should leave that tissue alone);
- small breathers: patients whose diaphragm moves less than ``--small_mm`` (10 mm), and how many
  of them the model makes worse than the AVG in the body or the motion region;
- diaphragm: the mean lung-base height error (mm) of the model and of the AVG.

In-distribution figures are printed beside the held-out ones, never alone; the JSON has every
patient. Training seconds are wall-clock on this machine.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cohorts import (
    COMMON,
    RECIPE,
    RECIPE_UNGATED,
    ROOT,
    RUN_FLAGS,
    VOLUME,
    copy_as_test_split,
    epoch_flags,
    run,
)
from benchmarks.machine import cpu_name
from data.nifti_io import load_volume
from evaluation.metrics import RegionSettings, evaluate_volumes, mae_hu, region_masks
from synthetic.families import FAMILIES, write_family
from util.atomic import atomic_write_json
from util.geometry import axial_axis, voxel_spacing_mm
from util.names import prediction_file_name

#: Variants: flags, and whether they hold their own architecture and batch (not COMMON's).
#: "recipe" is the recommended one; the others are what it was chosen against.
VARIANTS: dict[str, tuple[list[str], bool]] = {
    "recipe": (RECIPE, False),
    "recipe_ungated": (RECIPE_UNGATED, False),
    "gate25": ([*RECIPE_UNGATED, "--residual_gate_hu", "25"], False),
    "l1_only": ([*RECIPE_UNGATED, "--lambda_GAN", "0"], False),  # no GAN texture
    # the phantom's own spacing as the working grid: other voxel sizes are resampled to it
    "ws_gate25": ([*RECIPE_UNGATED, "--working_spacing_mm", "3", "5.47", "5.47",
                   "--residual_gate_hu", "25"], False),
    # + another scanner's noise, kernel and calibration drawn per training slice
    "gate25_aug": ([*RECIPE_UNGATED, "--residual_gate_hu", "25", "--augment_intensity", "20",
                    "1.0", "20"], False),
    "motion3d": ([*VOLUME, "--netG", "motion3d_4", "--ngf", "16"], True),
    "unet3d": ([*VOLUME, "--netG", "unet3d_4", "--ngf", "16", "--residual"], True),
    # the plan alone: train.py's recommended recipe, planned from the data, no recipe flag
    "plan": (RUN_FLAGS, True),
}
#: Regions whose model/AVG MAE ratio is reported.
RATIO_REGIONS = ("motion", "body", "whole")


@dataclass(frozen=True)
class Source:
    """Held-out patients of one family: ``dataroot`` holds ``testA``/``testB``; ``amplitudes``
    {patient id: diaphragm amplitude, mm}; ``held_out``: False for the training family's own
    test split (the in-distribution figure)."""

    name: str
    dataroot: Path
    amplitudes: dict[str, float]
    held_out: bool


def make_sources(work: Path, args: argparse.Namespace) -> tuple[Path, list[Source]]:
    """Write the training family (split by ``prepare_dataset.py``) and every test family;
    return the training dataroot and the sources to score, the in-distribution one first."""
    export, dataroot = work / "export" / args.train_family, work / "dataset"
    for folder in (work / "export", dataroot, work / "sources"):  # made anew: args may differ
        shutil.rmtree(folder, ignore_errors=True)
    train = write_family(export, args.train_family, args.n_train, seed=args.seed)
    run([sys.executable, "prepare_dataset.py", "--avg_root", str(export / "res_avg"),
         "--phases_root", str(export / "res_phases"), "--output", str(dataroot),
         "--val_fraction", "0.15", "--test_fraction", "0.2", "--seed", str(args.seed),
         "--no_progress"], work / "prepare.log", args.threads)
    test_ids = sorted(p.name.removesuffix(".nii.gz") for p in (dataroot / "testA").iterdir())
    amplitudes = {p.pid: p.amplitude_mm for p in train}
    sources = [Source(f"{args.train_family} (in-distribution)", dataroot,
                      {pid: amplitudes[pid] for pid in test_ids}, held_out=False)]
    for k, family in enumerate(args.test_families, start=1):
        out, root = work / "export" / family, work / "sources" / family
        written = write_family(out, family, args.n_test, seed=args.seed + 100 * k,
                               id_prefix=f"X{k}")
        copy_as_test_split(out, root, [p.pid for p in written])
        sources.append(Source(family, root, {p.pid: p.amplitude_mm for p in written},
                              held_out=True))
    return dataroot, sources


def static_mask(avg: np.ndarray, truth: np.ndarray, affine: np.ndarray,
                settings: RegionSettings) -> np.ndarray:
    """(I, J, K) bool: the body outside the motion region (regions of
    :func:`evaluation.metrics.region_masks`), where the AVG is the right answer."""
    masks = region_masks(avg, truth, axial_axis(affine), voxel_spacing_mm(affine), settings)
    return masks["body"] & ~masks["motion"]


def score_patient(pred: np.ndarray, truth_path: Path, avg_path: Path,
                  settings: RegionSettings) -> dict[str, float]:
    """One patient's figures: ``<region>_model`` / ``<region>_avg`` MAE (HU) for the motion
    region, the body, the whole volume and the static body, and ``diaphragm_model_mm`` /
    ``diaphragm_avg_mm`` (mean lung-base height error). ``pred``: (I, J, K) HU on the truth's
    grid."""
    truth, avg = load_volume(truth_path), load_volume(avg_path)
    affine = truth.info.affine
    scores = evaluate_volumes(pred, truth.hu, avg.hu, affine, settings)
    out = {f"{region}_{who}": float(scores[key][region]["mae_hu"]) for region in RATIO_REGIONS
           for who, key in (("model", "model"), ("avg", "baseline"))}
    static = static_mask(avg.hu, truth.hu, affine, settings)
    out["static_model"] = mae_hu(pred, truth.hu, static)
    out["static_avg"] = mae_hu(avg.hu, truth.hu, static)
    for who, key in (("model", "model"), ("avg", "baseline")):
        out[f"diaphragm_{who}_mm"] = float(scores["geometry"][key]["diaphragm_error_mean_mm"])
    return out


def summarize(patients: dict[str, dict[str, float]], amplitudes: dict[str, float],
              small_mm: float) -> dict[str, float]:
    """A source's figures from its patients' (:func:`score_patient`): mean and worst model/AVG
    ratio per region, the static body's model - AVG MAE (HU), the diaphragm errors (mm), and
    the small breathers (< ``small_mm``) and how many the model makes worse than the AVG in the
    body or the motion region."""
    def ratios(region: str) -> list[float]:
        return [p[f"{region}_model"] / p[f"{region}_avg"] for p in patients.values()
                if math.isfinite(p[f"{region}_model"]) and p[f"{region}_avg"] > 0]

    out: dict[str, float] = {}
    for region in RATIO_REGIONS:
        values = ratios(region)
        out[f"{region}_ratio"] = float(np.mean(values)) if values else math.nan
        out[f"{region}_worst"] = float(np.max(values)) if values else math.nan
    out["static_delta_hu"] = float(np.mean([p["static_model"] - p["static_avg"]
                                            for p in patients.values()]))
    out["static_worst_hu"] = float(np.max([p["static_model"] - p["static_avg"]
                                           for p in patients.values()]))
    for who in ("model", "avg"):
        out[f"diaphragm_{who}_mm"] = float(np.nanmean([p[f"diaphragm_{who}_mm"]
                                                       for p in patients.values()]))
    small = [pid for pid in patients if amplitudes[pid] < small_mm]
    out["small_breathers"] = len(small)
    out["small_worse"] = sum(any(patients[pid][f"{r}_model"] > patients[pid][f"{r}_avg"]
                                 for r in ("body", "motion")) for pid in small)
    out["patients_worse"] = sum(any(p[f"{r}_model"] > p[f"{r}_avg"] for r in ("body", "motion"))
                                for p in patients.values())
    return out


def run_variant(name: str, dataroot: Path, sources: list[Source], work: Path,
                args: argparse.Namespace) -> dict:
    """Train ``name``, test it on every source; per source its patients and summary."""
    flags, own = VARIANTS[name]
    base = ["--name", name, "--checkpoints_dir", str(work / "checkpoints")]
    seconds = run([sys.executable, "train.py", "--dataroot", str(dataroot), *base,
                   *([] if own else COMMON), *flags, "--overwrite", *epoch_flags(args.epochs),
                   "--save_epoch_freq", str(10 * max(args.epochs, 100)), "--seed",
                   str(args.seed)],
                  work / f"{name}.train.log", args.threads)
    out: dict = {"train_seconds": seconds, "flags": flags}
    settings = RegionSettings()
    for k, source in enumerate(sources):
        results = work / "results" / f"source{k}"
        run([sys.executable, "test.py", "--dataroot", str(source.dataroot), *base,
             "--results_dir", str(results), "--model", "pix2pix", "--dataset_mode",
             "nifti_aligned", "--preprocess", "none", "--axial_slice", "--epoch", "best",
             "--eval", "--no_pictures", "--num_threads", "0"],
            work / f"{name}.source{k}.test.log", args.threads)
        volumes = results / name / "test_best" / "volumes"
        patients = {pid: score_patient(load_volume(volumes / prediction_file_name(pid)).hu,
                                       source.dataroot / "testB" / f"{pid}.nii.gz",
                                       source.dataroot / "testA" / f"{pid}.nii.gz", settings)
                    for pid in source.amplitudes}
        out[source.name] = {"patients": patients, "amplitudes_mm": source.amplitudes,
                            "summary": summarize(patients, source.amplitudes, args.small_mm)}
    return out


def table(results: dict, sources: list[Source]) -> str:
    """Markdown: a row per (variant, source), the in-distribution source first and marked."""
    lines = ["| variant | source | motion (worst) | body (worst) | whole | static +HU (worst) "
             "| diaphragm mm (AVG) | small breathers worse | patients worse |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, result in results.items():
        for source in sources:
            s = result[source.name]["summary"]
            lines.append(
                f"| {name} | {source.name} | {s['motion_ratio']:.2f} ({s['motion_worst']:.2f}) "
                f"| {s['body_ratio']:.2f} ({s['body_worst']:.2f}) | {s['whole_ratio']:.2f} "
                f"| {s['static_delta_hu']:+.1f} ({s['static_worst_hu']:+.1f}) "
                f"| {s['diaphragm_model_mm']:.1f} ({s['diaphragm_avg_mm']:.1f}) "
                f"| {s['small_worse']:.0f} of {s['small_breathers']:.0f} "
                f"| {s['patients_worse']:.0f} of {len(source.amplitudes)} |")
    return "\n".join(lines)


def held_out_score(result: dict, sources: list[Source]) -> float:
    """The figure a default is chosen by: the worst held-out source's mean motion ratio."""
    return max(result[s.name]["summary"]["motion_ratio"] for s in sources if s.held_out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "cross_source_work",
                        help="folder for data, checkpoints, results and logs (data made anew)")
    parser.add_argument("--variants", nargs="+", default=["recipe", "motion3d"],
                        choices=sorted(VARIANTS))
    parser.add_argument("--train_family", default="phantom", choices=sorted(FAMILIES))
    parser.add_argument("--test_families", nargs="+", choices=sorted(FAMILIES),
                        help="held-out families (default: every family but the training one)")
    parser.add_argument("--n_train", type=int, default=30,
                        help="patients of the training family, split 65/15/20 %% "
                             "train/val/test")
    parser.add_argument("--n_test", type=int, default=6, help="patients of each held-out family")
    parser.add_argument("--epochs", type=int, default=20,
                        help="epochs per variant: half at the initial lr, half decaying; 0: "
                             "train.py's (the plan's for the plan variant)")
    parser.add_argument("--small_mm", type=float, default=10.0,
                        help="a diaphragm amplitude below this is a small breather (mm)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="CPU threads per training/test process")
    parser.add_argument("--jobs", type=int, default=1,
                        help="variants trained side by side (give each --threads cores)")
    args = parser.parse_args(argv)
    if not args.test_families:
        args.test_families = [f for f in FAMILIES if f != args.train_family]
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table; save ``<work>/cross_source.json``."""
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    dataroot, sources = make_sources(args.work, args)
    print(f"training {', '.join(args.variants)} on {args.train_family} ...", flush=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # each job is a subprocess
        futures = {name: pool.submit(run_variant, name, dataroot, sources, args.work, args)
                   for name in args.variants}
    results = {name: future.result() for name, future in futures.items()}
    counts = ", ".join(f"{s.name} {len(s.amplitudes)}" for s in sources)
    print(f"\nmachine: {cpu_name()}, {os.cpu_count()} CPUs, {args.jobs} job(s) of "
          f"{args.threads} thread(s); trained on {args.train_family}, {args.epochs} epochs; "
          f"patients scored: {counts}")
    print("ratios are model MAE / AVG MAE (below 1: better than the AVG); static: the body "
          "outside the motion region, model MAE - AVG MAE in HU\n")
    print(table(results, sources))
    ranking = sorted(results, key=lambda name: held_out_score(results[name], sources))
    print(f"\nbest on held-out sources (worst source's motion ratio): {ranking[0]}")
    atomic_write_json(args.work / "cross_source.json",
                      {"args": {k: str(v) for k, v in vars(args).items()},
                       "sources": [s.name for s in sources], "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
