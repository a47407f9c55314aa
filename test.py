"""Run a trained generator over a dataset split and write HU volumes, pictures and a summary.

    python test.py --dataroot ./datasets/ct_phases_dataset --name ct_phase0_generator \
        --model pix2pix --dataset_mode nifti_aligned --preprocess none --input_nc 1 \
        --output_nc 1 --axial_slice

Reads ``<dataroot>/<phase>A`` (and ``<phase>B`` when present) and writes, under
``<results_dir>/<name>/<phase>_<epoch>/``:

- ``volumes/<id>_fake_B.nii.gz``: HU, the source AVG's shape, affine and on-disk type (``<id>``
  is the file name made safe: characters other than letters, digits, ``.``, ``_``, ``-`` become
  ``_``); with ``--samples N`` (N > 1) it is the mean of N passes with dropout on, seeded by
  ``--seed``, and ``volumes/<id>_fake_B_std.nii.gz`` holds their voxelwise standard deviation
  (HU, float32, the same geometry);
- ``index.html`` with per-patient axial and coronal views (AVG, prediction, truth, |error|) in a
  lung and a soft-tissue window, and per-slice pictures;
- with ground truth, ``metrics.csv`` and ``metrics.json``: MAE, RMSE, bias, PSNR and SSIM in the
  whole volume, the body and the motion region, for the prediction and for the AVG itself (the
  identity baseline), scored on the written files, plus lung volumes in mL.

Volumes and pictures left there by an earlier run for patients not in this one are removed,
and standard deviations from an earlier run when this one does not sample.

The generator is loaded from the run folder by :func:`models.trained_run.load_generator`, with the
architecture and input settings of its ``opt.json`` (``--model`` is accepted, as in the seed's
command, and the run folder is only read). The prediction is deterministic (eval mode: no dropout,
batch norm running statistics; ``--eval`` is accepted and changes nothing): the same inputs and
checkpoint give the same files. Slices of any size are padded with air to what the generator takes
and cropped back. Before anything is written, two inputs whose safe names coincide (``PT 1`` and
``PT_1``, or names differing only in case) are refused, naming both, and the results folder is
created and checked to be writable. """

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from data import create_dataset
from data.ct_volumes import SliceStack, slice_to_unit
from data.nifti_aligned_dataset import NiftiAlignedDataset
from data.nifti_io import load_volume, save_volume
from display.ct_views import choose_planes, save_patient_views
from display.visualizer import save_test_images
from display.windows import get_window
from evaluation.metrics import RegionSettings, evaluate_volumes, region_masks
from evaluation.report import write_and_describe
from models.base_model import checkpoint_tag
from models.inference import check_samples, float32_storage
from models.trained_run import GeneratorSettings, TrainedGenerator, load_generator
from options.base_options import region_settings
from options.test_options import TestOptions
from util.atomic import ensure_writable_dir
from util.cli import run_cli
from util.errors import ConfigError, OutputError
from util.file_set import remove_stale_temp_files
from util.geometry import from_slice_stack, stack_spacing_mm, to_slice_stack
from util.html import HTMLPage
from util.hu_window import hu_to_unit
from util.names import (
    PREDICTION_SUFFIX,
    STD_SUFFIX,
    prediction_file_name,
    safe_name,
    std_file_name,
    unique_output_names,
)
from util.speed import configure_backends, resolve_speed

logger = logging.getLogger("test")

#: Display windows of the per-patient views: lungs, and soft tissue (diaphragm, liver dome).
VIEW_WINDOWS = ("lung", "soft_tissue")
#: The per-patient pictures this script writes: ``<stem>_views_<window>.png`` and
#: ``<stem>_slice<NNN>_<visual>.png``.
_PICTURE_NAME = re.compile(r"^(?P<stem>.+)_(views_[a-z_]+|slice\d{3}_(real_A|fake_B|real_B))\.png$")


@dataclass(frozen=True)
class PatientInputs:
    """One patient's network input stack and, when known, its truth; ``avg`` is the AVG stack
    (the input for AtoB, the target for BtoA). Arrays: (S, H, W) HU in stack order."""

    patient_id: str
    source: SliceStack
    truth: SliceStack | None
    avg: SliceStack


def patient_inputs(dataset: NiftiAlignedDataset, index: int) -> PatientInputs:
    """The stacks of patient ``index``, sorted by ``--direction``."""
    a = dataset.stacks_a[index]
    b = dataset.stacks_b[index] if dataset.has_target else None
    if dataset.a_to_b:
        return PatientInputs(dataset.patient_ids[index], a, b, a)
    if b is None:  # the dataset refuses BtoA without a phase-0 folder
        raise RuntimeError(f"{dataset.patient_ids[index]}: --direction BtoA, but the dataset "
                           f"holds no phase-0 volume to use as input")
    return PatientInputs(dataset.patient_ids[index], b, a, a)


def score_patient(saved_hu: np.ndarray, p: PatientInputs,
                  settings: RegionSettings) -> dict | None:
    """Metrics of the written volume (I, J, K) HU and of the AVG, against phase 0; None when
    there is no phase 0 to compare with (no ``<phase>B``, or BtoA)."""
    if p.truth is None or p.source is not p.avg:
        return None
    affine = p.avg.info.affine
    return evaluate_volumes(saved_hu, from_slice_stack(p.truth.hu, affine),
                            from_slice_stack(p.avg.hu, affine), affine, settings)


def add_patient_views(page: HTMLPage, p: PatientInputs, pred_stack: np.ndarray,
                      settings: RegionSettings, width: int) -> None:
    """Axial + coronal views of AVG, prediction, truth and |error| in each of
    :data:`VIEW_WINDOWS`, through the slice and row with the most motion."""
    truth = p.truth.hu if p.truth is not None else None
    motion = (region_masks(p.avg.hu, truth, 0, p.avg.stack_spacing_mm, settings)["motion"]
              if truth is not None else None)
    planes = choose_planes(pred_stack.shape, motion)
    spacing = stack_spacing_mm(p.avg.info.affine)
    stem = safe_name(p.patient_id)
    names = []
    for window in VIEW_WINDOWS:
        path = page.image_dir / f"{stem}_views_{window}.png"
        save_patient_views(path, p.avg.hu, pred_stack, truth, spacing, planes,
                           get_window(window), p.patient_id)
        names.append(f"images/{path.name}")
    page.add_header(f"{p.patient_id}: axial and coronal views")
    page.add_images(names, list(VIEW_WINDOWS), width)


def add_slice_pictures(page: HTMLPage, p: PatientInputs, pred: torch.Tensor,
                       opt: argparse.Namespace) -> None:
    """real_A / fake_B / real_B pictures of every slice; ``pred``: (S, 1, h, w) in [-1, 1]."""
    for s in range(pred.shape[0]):
        visuals = {"real_A": slice_to_unit(p.source.hu[s], opt.hu_min, opt.hu_max)[None],
                   "fake_B": pred[s:s + 1]}
        if p.truth is not None:
            visuals["real_B"] = slice_to_unit(p.truth.hu[s], opt.hu_min, opt.hu_max)[None]
        save_test_images(page, visuals, f"{p.patient_id}_slice{s:03d}",
                         width=opt.display_winsize, hu_min=opt.hu_min, hu_max=opt.hu_max)


def run_patient(generator: TrainedGenerator, p: PatientInputs, opt: argparse.Namespace,
                out_dir: Path, page: HTMLPage | None, settings: RegionSettings,
                amp_dtype: torch.dtype | None) -> tuple[Path, dict | None]:
    """Predict one patient, write its volume (HU, the source's geometry), its standard
    deviation with ``--samples`` N > 1, and pictures, and score the written file. Returns
    (volume path, scores or None)."""
    pred = generator.predict(p.source.hu, batch_size=opt.batch_size, samples=opt.samples,
                             seed=opt.seed, amp_dtype=amp_dtype)
    info = p.source.info
    path = save_volume(from_slice_stack(pred.hu, info.affine), info,
                       out_dir / "volumes" / prediction_file_name(p.patient_id))
    if pred.std_hu is not None:
        save_volume(from_slice_stack(pred.std_hu, info.affine), float32_storage(info),
                    out_dir / "volumes" / std_file_name(p.patient_id))
    saved = load_volume(path).hu  # scored as a user will read it, after on-disk rounding
    if page is not None:
        add_patient_views(page, p, to_slice_stack(saved, info.affine), settings,
                          opt.display_winsize * 2)
        unit = hu_to_unit(torch.from_numpy(pred.hu), opt.hu_min, opt.hu_max)[:, None]
        add_slice_pictures(page, p, unit, opt)
    return path, score_patient(saved, p, settings)


def remove_stale_outputs(out_dir: Path, patient_ids: Iterable[str],
                         keep_std: bool = False) -> list[Path]:
    """Delete the volumes and pictures an earlier run wrote into ``out_dir`` for patients that
    are not in ``patient_ids``, so that the folder holds this run's patients only (a changed
    split or dataset would otherwise leave another model's predictions beside the new ones);
    standard deviations (``--samples``) of every patient too unless ``keep_std`` (this run
    wrote them). Other files are not touched. Returns the deleted paths; OutputError naming a
    file that cannot be deleted."""
    stems = {safe_name(pid) for pid in patient_ids}
    suffix = f"{PREDICTION_SUFFIX}.nii.gz"  # volumes are prediction_file_name(patient id)
    std_suffix = f"{PREDICTION_SUFFIX}{STD_SUFFIX}.nii.gz"  # and std_file_name(patient id)
    stale = [path for path in sorted((out_dir / "volumes").glob(f"*{suffix}"))
             if path.name.removesuffix(suffix) not in stems]
    stale += [path for path in sorted((out_dir / "volumes").glob(f"*{std_suffix}"))
              if not keep_std or path.name.removesuffix(std_suffix) not in stems]
    for path in sorted((out_dir / "images").glob("*.png")):
        match = _PICTURE_NAME.match(path.name)
        if match is not None and match["stem"] not in stems:
            stale.append(path)
    for path in stale:
        try:
            path.unlink()
        except OSError as exc:
            raise OutputError(f"{path}: cannot remove this output of an earlier run "
                              f"({exc.strerror or exc})") from exc
    if stale:
        logger.info("removed %d files of an earlier run from %s", len(stale), out_dir)
    return stale


def output_names(dataset: NiftiAlignedDataset) -> dict[str, str]:
    """{patient id: volume file name}; DataError naming both input files when two patients
    would share a file (their pictures share the same safe name)."""
    sources = {pid: dataset.volume_info(i).path for i, pid in enumerate(dataset.patient_ids)}
    return unique_output_names(sources, prediction_file_name)


def test(opt: argparse.Namespace) -> Path:
    """Run the test; return the results folder. Every check comes before the first write."""
    dataset = create_dataset(opt)
    if not isinstance(dataset, NiftiAlignedDataset):
        raise ConfigError("test.py writes volumes from --dataset_mode nifti_aligned only")
    output_names(dataset)
    settings = region_settings(opt)
    run_dir = Path(opt.checkpoints_dir) / opt.name
    device = torch.device(f"cuda:{opt.gpu_ids[0]}" if opt.gpu_ids else "cpu")
    configure_backends(device, tf32=not opt.no_tf32, cudnn_benchmark=not opt.no_cudnn_benchmark)
    generator = load_generator(run_dir, checkpoint_tag(opt.epoch, opt.load_iter), device,
                               GeneratorSettings.from_options(vars(opt)))
    check_samples(generator.net, opt.samples, str(run_dir))
    amp_dtype = resolve_speed(device, amp=opt.amp).amp_dtype
    out_dir = Path(opt.results_dir) / opt.name / f"{opt.phase}_{opt.epoch}"
    for folder in ("volumes",) if opt.no_pictures else ("volumes", "images"):
        ensure_writable_dir(out_dir / folder)
        remove_stale_temp_files(out_dir / folder)  # left by an interrupted earlier run
    remove_stale_temp_files(out_dir)
    page = None if opt.no_pictures else HTMLPage(
        out_dir, f"{opt.name}: {opt.phase}, epoch {opt.epoch}")
    volumes, scores = {}, {}
    for index in tqdm(range(len(dataset.patient_ids)), desc="predicting", unit="patient"):
        p = patient_inputs(dataset, index)
        volumes[p.patient_id], score = run_patient(generator, p, opt, out_dir, page, settings,
                                                   amp_dtype)
        if score is not None:
            scores[p.patient_id] = score
    remove_stale_outputs(out_dir, dataset.patient_ids, keep_std=opt.samples > 1)
    if page is not None:
        page.save()
    print_results(volumes, scores, out_dir, page is not None, opt.samples)
    return out_dir


def print_results(volumes: dict[str, Path], scores: dict[str, dict], out_dir: Path,
                  pictures: bool, samples: int = 1) -> None:
    """Write the metric files (when there is truth) and print the tables and where things are;
    the count is that of the distinct volume files written."""
    if scores:
        print(write_and_describe(out_dir, scores))  # noqa: T201 - the command's summary
    else:
        print("no ground truth (<phase>B): volumes written, nothing scored")  # noqa: T201
    std = (f", each the mean of {samples} dropout passes with its *{PREDICTION_SUFFIX}"
           f"{STD_SUFFIX}.nii.gz" if samples > 1 else "")
    count = len(set(volumes.values()))
    print(f"volumes: {out_dir / 'volumes'} ({count} patients{std})")  # noqa: T201
    if pictures:
        print(f"pictures: {out_dir / 'index.html'}")  # noqa: T201


def main(argv: list[str] | None = None) -> int:
    """Parse options and test; exit status 0 on success, 1 on a reported error."""
    def go() -> int:
        options = TestOptions()
        opt = options.parse(argv)
        test(opt)
        options.record(opt)
        return 0

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
