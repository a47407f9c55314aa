"""The synthetic cohorts the quality benchmarks share, and how they run the project's scripts.

A helper of ``benchmarks/quality.py`` and ``benchmarks/quality_phases.py`` (no ``main``): the
training and test patients (split by ``prepare_dataset.py``) and a *shifted* group drawn outside
the training ranges, all from a fixed seed, so both benchmarks score the same patients; the flags
of the recipe and of the volumetric variants.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from synthetic import (
    N_PHASES,
    ParamRanges,
    SyntheticGrid,
    avg_file_name,
    patient_id,
    phase_file_name,
    write_synthetic_4dct,
)
from util.phases import phase_folder

ROOT = Path(__file__).resolve().parents[1]
def cohort_ranges(amplitude_mm: tuple[float, float]) -> tuple[ParamRanges, ParamRanges]:
    """(ranges of the training, validation and test patients, ranges of the shifted group).

    The training patients breathe with ``amplitude_mm`` (low, high) and the generator's default
    anatomy; every range of the shifted group lies outside the training one: amplitude up to
    5 mm beyond ``high``, larger lungs and tumours, more noise.
    """
    low, high = amplitude_mm
    train = ParamRanges(amplitude_mm=(low, high), lung_scale=(0.85, 1.05),
                        tumour_radius_mm=(5.0, 10.0), noise_hu=(15.0, 15.0))
    shifted = ParamRanges(amplitude_mm=(high, high + 5.0), lung_scale=(1.05, 1.15),
                          tumour_radius_mm=(10.0, 12.0), noise_hu=(20.0, 20.0))
    return train, shifted


SHIFTED_PREFIX = "SH"

#: How a benchmark runs train.py (data loading in the process, no page, no periodic logs), not
#: what it trains: all the ``plan`` variant is given besides the epochs, the recommended recipe
#: and the plan choose the rest.
RUN_FLAGS = ["--num_threads", "0", "--no_html", "--display_freq", "1000000000", "--print_freq",
             "1000000000"]
#: Flags every variant but ``plan`` shares (epochs are set apart): pix2pix's defaults
#: (``--recipe pix2pix``), so a variant trains its own flags and nothing else.
SHARED = ["--recipe", "pix2pix", "--model", "pix2pix", "--preprocess", "none", "--output_nc",
          "1", "--norm", "instance", *RUN_FLAGS]
#: Flags of every slice (2-D) variant: the architecture and the batch.
COMMON = [*SHARED, "--dataset_mode", "nifti_aligned", "--axial_slice", "--netG", "unet_64",
          "--ngf", "32", "--batch_size", "8"]
#: 2.5-D input with 2 neighbours each side and residual output: what the ablation varies.
BASE = ["--input_nc", "5", "--context_slices", "2", "--residual", "--lambda_L1", "100",
        "--gan_mode", "vanilla"]
#: Flags of every volumetric variant: 3-D patches of whole volumes' depth (D x 64 x 64; the
#: whole volume at the default 64 x 64 grid, windows on a larger grid), the recipe's HU window
#: and motion-weighted L1, one patch per batch.
VOLUME = [*SHARED, "--dataset_mode", "nifti_volume", "--input_nc", "1", "--batch_size", "1",
          "--patch_size", "0", "64", "64", "--hu_min", "-1024", "--hu_max", "1024",
          "--motion_weight", "4", "--no_dropout", "--lambda_L1", "100", "--gan_mode", "vanilla"]
#: The recipe before the residual gate: BASE with the lung/soft-tissue HU window, the
#: motion-weighted L1, no dropout, twice pix2pix's learning rate and a moving average of G.
RECIPE_UNGATED = [*BASE, "--hu_min", "-1024", "--hu_max", "1024", "--motion_weight", "4",
                  "--no_dropout", "--lr", "0.0004", "--ema_decay", "0.99"]
#: The recommended recipe (README): RECIPE_UNGATED with changes from the AVG below 150 HU
#: dropped (linear up to 300 HU), chosen by benchmarks/cross_source.py on sources the model
#: was not trained on: no held-out patient is made worse than the AVG, and the static body
#: stays within ~2.5 HU of the AVG's error, at the same motion-region ratio.
RECIPE = [*RECIPE_UNGATED, "--residual_gate_hu", "150"]


def epoch_flags(epochs: int) -> list[str]:
    """train.py's flags for ``epochs`` epochs, half at the initial learning rate (the odd one
    there) and half decaying; none for 0 (train.py's own: the plan's for the ``plan``
    variant)."""
    if epochs <= 0:
        return []
    half = epochs // 2
    return ["--n_epochs", str(epochs - half), "--n_epochs_decay", str(half)]


@dataclass(frozen=True)
class Cohort:
    """Held-out patients to score: the dataset folder (``testA``/``testB``) and, per patient id,
    how to regenerate it (seed, index, ranges) for the noise floor."""

    name: str
    dataroot: Path
    patients: dict[str, tuple[int, int, ParamRanges]]


def run(cmd: list[str], log: Path, threads: int) -> float:
    """Run ``cmd`` (a project script) from the project root, output to ``log``; seconds taken.
    Raises SystemExit with the log's tail when it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    with log.open("w") as out:
        result = subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                check=False)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise SystemExit(f"{' '.join(cmd[:2])} failed ({log}):\n{tail}")
    return time.perf_counter() - start


def add_cohort_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that draw the cohorts (what :func:`make_cohorts` reads), quality.py's
    defaults: 40 patients at 64 x 64 x 32, 4 shifted, breathing 5-25 mm, seed 0."""
    parser.add_argument("--n_patients", type=int, default=40,
                        help="synthetic patients split train/val/test (60/15/25 %%)")
    parser.add_argument("--n_shifted", type=int, default=4,
                        help="held-out patients drawn outside the training ranges")
    parser.add_argument("--amplitude_range_mm", type=float, nargs=2, default=(5.0, 25.0),
                        metavar=("LOW", "HIGH"),
                        help="breathing amplitudes of the training and test patients; the "
                             "shifted group breathes HIGH..HIGH+5 mm")
    parser.add_argument("--size", type=int, default=64, help="in-plane voxels")
    parser.add_argument("--n_slices", type=int, default=32, help="axial slices per volume")
    parser.add_argument("--seed", type=int, default=0)


def copy_as_test_split(export: Path, dataroot: Path, ids: list[str],
                       phases: range = range(1)) -> None:
    """Copy each patient's AVG and phases ``phases`` (indices, 0 = phase 0) of an export tree
    into ``dataroot/testA``, ``testB`` (``testB_p<p>``): every patient of a held-out group is a
    test patient, no split to make."""
    for pid in ids:
        sources: list[tuple[str, Path]] = [("testA", export / "res_avg" / pid / avg_file_name(pid))]
        sources += [(phase_folder("test", 10.0 * k),
                     export / "res_phases" / pid / phase_file_name(pid, k)) for k in phases]
        for split_folder, src in sources:
            (dataroot / split_folder).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dataroot / split_folder / f"{pid}.nii.gz")


def make_cohorts(work: Path, grid: SyntheticGrid, args: argparse.Namespace,
                 phases: bool = False) -> tuple[Path, list[Cohort]]:
    """Write the two synthetic groups on ``grid``; return the training dataroot and the scored
    cohorts. With ``phases`` every gated phase is prepared (``--phases all``), not phase 0
    alone."""
    train_ranges, shifted_ranges = cohort_ranges(tuple(args.amplitude_range_mm))
    export, shifted = work / "export", work / "shifted"
    dataroot, shifted_root = work / "dataset", work / "shifted_dataset"
    for folder in (export, shifted, dataroot, shifted_root):  # made anew: args may differ
        shutil.rmtree(folder, ignore_errors=True)
    write_synthetic_4dct(export, args.n_patients, grid=grid, seed=args.seed,
                         ranges=train_ranges, progress=False)
    run([sys.executable, "prepare_dataset.py", "--avg_root", str(export / "res_avg"),
         "--phases_root", str(export / "res_phases"), "--output", str(dataroot),
         "--val_fraction", "0.15", "--test_fraction", "0.25", "--seed", str(args.seed),
         "--no_progress", *(["--phases", "all"] if phases else [])], work / "prepare.log",
        args.threads)
    ids = write_synthetic_4dct(shifted, args.n_shifted, grid=grid, seed=args.seed + 1,
                               ranges=shifted_ranges, id_prefix=SHIFTED_PREFIX, progress=False)
    copy_as_test_split(shifted, shifted_root, ids, range(N_PHASES) if phases else range(1))
    index = {patient_id(k): k for k in range(args.n_patients)}
    test_ids = sorted(p.name.split(".")[0] for p in (dataroot / "testA").glob("*.nii.gz"))
    return dataroot, [
        Cohort("test", dataroot, {pid: (args.seed, index[pid], train_ranges)
                                  for pid in test_ids}),
        Cohort("shifted", shifted_root, {pid: (args.seed + 1, k, shifted_ranges)
                                         for k, pid in enumerate(ids)})]
