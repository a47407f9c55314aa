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
- with ground truth, ``metrics.csv`` and ``metrics.json``: MAE, RMSE, bias, PSNR and SSIM in the
  whole volume, the body and the motion region, for the prediction and for the AVG itself (the
  identity baseline), scored on the written files, plus lung volumes in mL;
- ``index.html``, written after the metrics (:mod:`display.results_page`): what was run, the
  summary and the verdict, a row per patient and the diaphragm error plot, then
  ``patients/<id>.html``: per patient its numbers, the lung base (coronal and sagittal, with the
  lung outlines of truth, prediction and AVG), axial and coronal views (AVG, prediction, truth,
  |error|) in a lung and a soft-tissue window, and every slice; pictures in ``images/``. With
  ``--no_pictures``, ``index.html`` holds the numbers only and no pictures or patient pages.

DICOM: a patient of ``<phase>A/`` may be a folder ``<phase>A/<patient>/`` holding DICOM CT series
instead of ``<id>.nii.gz`` (the two may be mixed): the only CT series is read, or of several the
one whose description matches ``--avg_series`` (default ``*AVG*``). Its truth is
``<phase>B/<patient>/`` (DICOM, phase 0 picked by ``--phase0_series``) or
``<phase>B/<patient>.nii.gz``, on the same grid. A folder whose series cannot be picked or read
is refused in one line naming it, before anything is written. With ``--output_format dicom`` the
prediction is also written as ``dicom/<id>/``, a derived CT series registered with its input
series (:func:`data.dicom_write.write_derived_series`: same patient, study and frame of reference,
new UIDs, every slice at its input slice's position, the input's stored type and rescale); every
input must then be a DICOM series (refused before anything is written otherwise); with
``--phases`` every volume of the cycle is a derived series too (``dicom/<id>_p50/``,
``_mip/``, ``_avg/`` for the whole cycle or ``_mean/`` for fewer phases), each with its own
SeriesNumber (the input's + 1000 + the phase, + 1100 the MIP, + 1101 the mean) and a
description saying what it is. The NIfTI volumes are written as well, and the metrics and
pictures come from them. A motion generator's displacement field stays NIfTI.

Volumes, pictures, patient pages and DICOM series left there by an earlier run for patients not
in this one are removed (all pictures and patient pages with ``--no_pictures``, all DICOM series
without ``--output_format dicom``), and standard deviations from an earlier run when this one
does not sample, and cycle volumes of phases this run does not write. This run's series
replace those of an earlier run for the same patient. Before the first write, temp files and
temp series folders an interrupted earlier run left in the results folders are removed (and
logged).

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
import dataclasses
import logging
import re
import shutil
import sys
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from data import create_dataset
from data.ct_volumes import SliceStack
from data.dicom_write import write_derived_series
from data.displacement_field import stack_field_to_world, write_displacement_field
from data.nifti_aligned_dataset import NiftiAlignedDataset
from data.nifti_io import load_volume, save_volume
from data.structures import load_structures, phase_structures_dir, structures_dir
from display.ct_views import choose_planes, middle_coronal, save_patient_views
from display.cycle_views import save_cycle_strip, save_trajectory_plot
from display.geometry_views import lung_base_planes, save_lung_base_views
from display.patient_page import PATIENT_DIR, PatientPictures, Picture, PictureRow
from display.results_page import RunInfo, write_results_pages
from display.windows import DEFAULT_WINDOW, get_window, save_png, window_to_uint8
from evaluation.cycle_scores import score_cycle
from evaluation.geometry import lung_mask as geometry_lung_mask
from evaluation.metrics import RegionSettings, body_mask, evaluate_volumes, region_masks
from evaluation.report import summarize_over_patients, verdict, write_and_describe
from models.base_model import checkpoint_tag
from models.cycle import CyclePrediction, cycle_volumes, predict_cycle, write_cycle
from models.inference import StackPrediction, check_samples, float32_storage
from models.trained_run import GeneratorSettings, TrainedGenerator, load_generator
from models.volume_inference import field_summary
from options.base_options import region_settings
from options.test_options import TestOptions
from util.atomic import ensure_writable_dir
from util.cli import run_cli
from util.errors import ConfigError, DataError, OutputError
from util.file_set import remove_stale_temp_files
from util.geometry import from_slice_stack, stack_spacing_mm, to_slice_stack
from util.names import (
    DISPLACEMENT_SUFFIX,
    PREDICTION_SUFFIX,
    STD_SUFFIX,
    cycle_file_name,
    cycle_suffix,
    displacement_file_name,
    phase_prediction_file_name,
    prediction_file_name,
    safe_name,
    std_file_name,
    unique_output_names,
)
from util.phases import STANDARD_PHASES, parse_phases
from util.speed import configure_backends, resolve_speed

logger = logging.getLogger("test")

#: Display windows of the per-patient views: lungs, and soft tissue (diaphragm, liver dome).
VIEW_WINDOWS = ("lung", "soft_tissue")
#: The per-patient pictures this script writes: ``<stem>_views_<window>.png``,
#: ``<stem>_views_lung_base.png`` and ``<stem>_slice<NNN>_<visual>.png``.
#: The volumes of a cycle (``--phases``) besides phase 0: phases, MIP, mean, fields of phases.
_CYCLE_NAME = re.compile(r"^(?P<stem>.+)(_fake_B_(p[0-9.]+|mip|avg|mean)|_displacement_p[0-9.]+)"
                         r"\.nii\.gz$")
_PICTURE_NAME = re.compile(r"^(?P<stem>.+)_(views_[a-z_]+|slice\d{3}_(real_A|fake_B|real_B))\.png$")
#: Sub-folder of the results holding one DICOM series folder per patient (``--output_format
#: dicom``): ``dicom/<safe id>/CT_0001.dcm`` ...
DICOM_DIR = "dicom"
#: Slice files of a series this script wrote (:func:`data.dicom_write.write_series`).
_SERIES_FILE = re.compile(r"^CT_\d{4,}\.dcm$")


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


def score_patient(saved_hu: np.ndarray, p: PatientInputs, settings: RegionSettings,
                  structures: dict[str, np.ndarray] | None = None) -> dict | None:
    """Metrics of the written volume (I, J, K) HU and of the AVG, against phase 0; None when
    there is no phase 0 to compare with (no ``<phase>B``, or BtoA). ``structures``: the
    patient's phase-0 masks (I, J, K) bool by name, for their centre-of-mass errors."""
    if p.truth is None or p.source is not p.avg:
        return None
    affine = p.avg.info.affine
    return evaluate_volumes(saved_hu, from_slice_stack(p.truth.hu, affine),
                            from_slice_stack(p.avg.hu, affine), affine, settings,
                            structures=structures)


def lung_mask(stack_hu: np.ndarray, settings: RegionSettings) -> np.ndarray:
    """Lungs of a (S, R, C) HU stack -> (S, R, C) bool, as the geometry scores define them
    (:func:`evaluation.geometry.lung_mask` inside :func:`evaluation.metrics.body_mask`), for
    the lung-base pictures."""
    body = body_mask(stack_hu, 0, settings.body_threshold_hu)
    return geometry_lung_mask(stack_hu, body, settings.lung_threshold_hu)


def write_patient_views(image_dir: Path, p: PatientInputs, pred_stack: np.ndarray,
                        settings: RegionSettings) -> list[Picture]:
    """The lung base (coronal and sagittal, lung outlines of truth, prediction and AVG over the
    prediction), then axial + coronal views of AVG, prediction, truth and |error| in each of
    :data:`VIEW_WINDOWS` through the slice and row with the most motion."""
    truth = p.truth.hu if p.truth is not None else None
    spacing = stack_spacing_mm(p.avg.info.affine)
    stem = safe_name(p.patient_id)
    truth_lung = lung_mask(truth, settings) if truth is not None else None
    pred_lung = lung_mask(pred_stack, settings)
    path = save_lung_base_views(
        image_dir / f"{stem}_views_lung_base.png", pred_stack, truth_lung, pred_lung,
        lung_mask(p.avg.hu, settings), spacing,
        lung_base_planes(truth_lung if truth_lung is not None else pred_lung),
        get_window("lung"), p.patient_id)
    pictures = [Picture(f"images/{path.name}", "lung base: coronal and sagittal")]
    motion = (region_masks(p.avg.hu, truth, 0, p.avg.stack_spacing_mm, settings)["motion"]
              if truth is not None else None)
    planes = choose_planes(pred_stack.shape, motion)
    for window in VIEW_WINDOWS:
        path = image_dir / f"{stem}_views_{window}.png"
        save_patient_views(path, p.avg.hu, pred_stack, truth, spacing, planes,
                           get_window(window), p.patient_id)
        pictures.append(Picture(f"images/{path.name}", f"axial and coronal, {window} window"))
    return pictures


def write_slice_pictures(image_dir: Path, p: PatientInputs,
                         pred_stack: np.ndarray) -> list[PictureRow]:
    """Input, prediction and (when known) truth of every slice, 8-bit in the thorax window,
    as ``<stem>_slice<NNN>_<real_A|fake_B|real_B>.png``; ``pred_stack``: (S, R, C) HU."""
    avg_first = p.source is p.avg
    stacks = {"real_A": ("input (AVG)" if avg_first else "input (phase 0)", p.source.hu),
              "fake_B": ("prediction", pred_stack)}
    if p.truth is not None:
        stacks["real_B"] = ("truth (phase 0)" if avg_first else "truth (AVG)", p.truth.hu)
    window = get_window(DEFAULT_WINDOW)
    stem = safe_name(p.patient_id)
    rows = []
    for s in range(pred_stack.shape[0]):
        pictures = []
        for visual, (caption, stack) in stacks.items():
            name = f"{stem}_slice{s:03d}_{visual}.png"
            save_png(window_to_uint8(stack[s], window), image_dir / name)
            pictures.append(Picture(f"images/{name}", caption))
        rows.append(PictureRow(f"slice {s:03d}", tuple(pictures)))
    return rows


@dataclass(frozen=True)
class PatientResult:
    """What :func:`run_patient` wrote for one patient: the volume, its scores (None without a
    truth), its pictures (None with ``--no_pictures``) and its DICOM series folder (None
    without ``--output_format dicom``)."""

    volume: Path
    scores: dict | None
    pictures: PatientPictures | None
    series: Path | None = None


def model_label(opt: argparse.Namespace) -> str:
    """``<run name> <checkpoint>`` (``ct_phase0 best``): which model a derived series says
    made it."""
    return f"{opt.name} {checkpoint_tag(opt.epoch, opt.load_iter)}"


def write_prediction_series(hu: np.ndarray, p: PatientInputs, opt: argparse.Namespace,
                            out_dir: Path) -> Path:
    """Write ``hu`` ((I, J, K) HU on the input series' grid) as ``dicom/<safe id>/``, a
    derived series registered with the input series (an earlier run's series for the patient
    is replaced); returns the folder."""
    source = p.source.dicom
    if source is None:  # check_dicom_output refuses NIfTI inputs before anything is written
        raise RuntimeError(f"{p.patient_id}: the input is not a DICOM series")
    what = "phase 0" if p.source is p.avg else "AVG"
    return write_derived_series(hu, source, out_dir / DICOM_DIR / series_folder_name(p.patient_id),
                                what, model_label(opt), overwrite=True)


def write_cycle_series(cycle: CyclePrediction, p: PatientInputs, opt: argparse.Namespace,
                       out_dir: Path) -> list[Path]:
    """Write the volumes of ``cycle`` other than phase 0 (each phase, the MIP, the mean) as
    derived series ``dicom/<safe id>_p50/``, ``_mip/``, ``_avg/`` (``_mean/``), each with its
    own series number and description; returns the folders."""
    source = p.source.dicom
    if source is None:  # check_dicom_output refuses NIfTI inputs before anything is written
        raise RuntimeError(f"{p.patient_id}: the input is not a DICOM series")
    affine = p.source.info.affine
    return [write_derived_series(from_slice_stack(cycle.volume_hu(v.kind), affine), source,
                                 out_dir / DICOM_DIR / series_folder_name(p.patient_id, v.kind),
                                 v.description, model_label(opt), overwrite=True,
                                 series_offset=v.series_offset)
            for v in cycle.volumes() if v.kind != 0]


def cycle_file_names(patient_ids: Iterable[str], phases: tuple[float, ...]) -> set[str]:
    """The NIfTI files of ``volumes/`` a run of ``phases`` writes besides phase 0 (each phase,
    its displacement field when the generator makes one, the MIP and the mean)."""
    names = set()
    for pid in patient_ids:
        for kind in (v.kind for v in cycle_volumes(phases) if v.kind != 0):
            if isinstance(kind, str):
                names.add(cycle_file_name(pid, kind))
            else:
                names |= {phase_prediction_file_name(pid, kind), displacement_file_name(pid, kind)}
    return names


def series_folder_name(patient_id: str, kind: float | str = 0.0) -> str:
    """The folder of a patient's derived series in ``dicom/``: ``<safe id>`` for phase 0,
    ``<safe id>_p50``, ``_mip``, ``_avg``/``_mean`` for the rest of a cycle."""
    return f"{safe_name(patient_id)}{cycle_suffix(kind)}"


def series_folder_names(patient_ids: Iterable[str], phases: tuple[float, ...]) -> set[str]:
    """The series folders of ``dicom/`` a run writes for ``patient_ids`` (and, with ``phases``,
    their cycles); DataError naming both patients when two would share a folder (``PT1``'s
    phase 50 and a patient ``PT1_p50``)."""
    kinds = [v.kind for v in cycle_volumes(phases)] if phases else [0.0]
    owner: dict[str, str] = {}
    for pid in patient_ids:
        for kind in kinds:
            name = series_folder_name(pid, kind)
            first = owner.setdefault(name.casefold(), pid)
            if first != pid:
                raise DataError(f"patients {first!r} and {pid!r} would both write the DICOM "
                                f"series folder {DICOM_DIR}/{name}; rename one of them")
    return set(owner)


def cycle_phases(opt: argparse.Namespace, generator: TrainedGenerator) -> tuple[float, ...]:
    """The phases ``--phases`` asks test.py to write: () without it (phase 0, as ever); "all"
    = the ten standard phases. ConfigError for a generator trained on phase 0 alone."""
    text = getattr(opt, "phases", "").strip()
    if not text:
        return ()
    if not generator.settings.phase_input:
        raise ConfigError(f"--phases {text}: {generator.weights} was trained on phase 0 alone "
                          f"(without --phases); it cannot predict other phases")
    return STANDARD_PHASES if text.lower() == "all" else parse_phases(text)


def run_cycle(generator: TrainedGenerator, p: PatientInputs, phase0: StackPrediction,
              opt: argparse.Namespace, out_dir: Path, settings: RegionSettings,
              amp_dtype: torch.dtype | None, truths: dict[float, SliceStack],
              structures: dict[float, dict[str, np.ndarray]]) -> tuple[dict, list[Picture]]:
    """Every phase of :func:`cycle_phases` for one patient (phase 0 given): write them, their
    MIP and mean; score them against ``truths`` (the true phases known, stack frame) with the
    consistency and the trajectories; the trajectory and cycle pictures unless --no_pictures."""
    info = p.source.info
    affine = info.affine
    cycle = predict_cycle(generator, p.source.hu, cycle_phases(opt, generator), {0.0: phase0},
                          spacing_mm=p.source.stack_spacing_mm, batch_size=opt.batch_size,
                          samples=opt.samples, seed=opt.seed,
                          amp_dtype=amp_dtype, overlap=opt.window_overlap)
    paths = write_cycle(cycle, info, out_dir / "volumes", p.patient_id)
    if opt.output_format == "dicom":
        write_cycle_series(cycle, p, opt, out_dir)
    preds = {ph: load_volume(paths[ph]).hu for ph in cycle.phases}  # as a user reads them
    scores = score_cycle(preds, {ph: from_slice_stack(t.hu, affine) for ph, t in truths.items()},
                         from_slice_stack(p.avg.hu, affine), affine, settings, structures)
    if scores["consistency"] is not None:
        body = scores["consistency"]["model"]["body"]
        logger.info("%s: the mean of the %d synthetic phases differs from the AVG by %.1f HU in "
                    "the body (bias %+.1f HU)", p.patient_id, len(preds), body["mae_hu"],
                    body["bias_hu"])
    pictures = [] if opt.no_pictures else write_cycle_pictures(out_dir / "images", p, scores,
                                                               preds, truths)
    return scores, pictures


def write_cycle_pictures(image_dir: Path, p: PatientInputs, scores: dict,
                         preds: dict[float, np.ndarray],
                         truths: dict[float, SliceStack]) -> list[Picture]:
    """The diaphragm's (and structures') trajectory against the truth's, and the coronal
    phases side by side (truth below when known)."""
    stem = safe_name(p.patient_id)
    diaphragm = scores["diaphragm"]
    panels = {"diaphragm height (mm)": {
        "truth": _by_percent(diaphragm["truth_mm"]), "model": _by_percent(diaphragm["model_mm"]),
        "AVG": dict.fromkeys(map(float, diaphragm["model_mm"]), diaphragm["avg_mm"])}}
    for name, found in scores["structures"].items():
        panels[f"{name} superior-inferior (mm)"] = {
            answer: {float(k): v[2] for k, v in found[f"{answer}_mm"].items()}
            for answer in ("truth", "model")}
    plot = save_trajectory_plot(image_dir / f"{stem}_views_trajectory.png", panels,
                                f"{p.patient_id}: over the breathing cycle")
    affine = p.avg.info.affine
    rows = {"synthetic": [middle_coronal(to_slice_stack(preds[ph], affine)) for ph in preds]}
    if set(preds) <= set(truths):
        rows["truth"] = [middle_coronal(truths[ph].hu) for ph in preds]
    spacing = stack_spacing_mm(affine)
    strip = save_cycle_strip(image_dir / f"{stem}_views_cycle.png", rows, list(preds),
                             f"{p.patient_id}: coronal, every phase", spacing_mm=spacing[:2])
    return [Picture(f"images/{plot.name}", "trajectories over the breathing cycle"),
            Picture(f"images/{strip.name}", "the synthetic cycle, coronal (truth below)")]


def _by_percent(values: dict[str, float]) -> dict[float, float]:
    """{label: v} -> {phase %: v}."""
    return {float(k): v for k, v in values.items()}


def run_patient(generator: TrainedGenerator, p: PatientInputs, opt: argparse.Namespace,
                out_dir: Path, settings: RegionSettings, amp_dtype: torch.dtype | None,
                structures: dict[str, np.ndarray] | None = None,
                truths: dict[float, SliceStack] | None = None,
                phase_structures: dict[float, dict[str, np.ndarray]] | None = None
                ) -> PatientResult:
    """Predict one patient, write its volume (HU, the source's geometry), its standard
    deviation with ``--samples`` N > 1, and pictures unless ``--no_pictures``, and score the
    written file."""
    pred = generator.predict(p.source.hu, spacing_mm=p.source.stack_spacing_mm,
                             batch_size=opt.batch_size, samples=opt.samples, seed=opt.seed,
                             amp_dtype=amp_dtype, overlap=opt.window_overlap)
    info = p.source.info
    hu = from_slice_stack(pred.hu, info.affine)
    path = save_volume(hu, info, out_dir / "volumes" / prediction_file_name(p.patient_id))
    series = (write_prediction_series(hu, p, opt, out_dir) if opt.output_format == "dicom"
              else None)
    if pred.std_hu is not None:
        save_volume(from_slice_stack(pred.std_hu, info.affine), float32_storage(info),
                    out_dir / "volumes" / std_file_name(p.patient_id))
    field = None
    if pred.displacement_vox is not None:
        write_displacement_field(out_dir / "volumes" / displacement_file_name(p.patient_id),
                                 stack_field_to_world(pred.displacement_vox, info.affine), info)
        field = field_summary(pred.displacement_vox, p.source.stack_spacing_mm)
        logger.info("%s: displacement up to %.1f mm (p95 %.1f), folding %.3f %% of voxels",
                    p.patient_id, field["max_mm"], field["p95_mm"], field["folding_pct"])
    saved = load_volume(path).hu  # scored as a user will read it, after on-disk rounding
    pictures = None
    if not opt.no_pictures:
        saved_stack = to_slice_stack(saved, info.affine)
        image_dir = out_dir / "images"
        pictures = PatientPictures(
            views=tuple(write_patient_views(image_dir, p, saved_stack, settings)),
            slices=tuple(write_slice_pictures(image_dir, p, saved_stack)),
            slice_width_px=opt.display_winsize)
    scores = score_patient(saved, p, settings, structures)
    if scores is not None and field is not None:
        scores["displacement"] = field
    if cycle_phases(opt, generator):
        cycle, cycle_pictures = run_cycle(generator, p, pred, opt, out_dir, settings,
                                          amp_dtype, truths or {}, phase_structures or {})
        if scores is not None:
            scores["cycle"] = cycle
        if pictures is not None:
            pictures = dataclasses.replace(pictures,
                                           views=(*pictures.views, *cycle_pictures))
    return PatientResult(path, scores, pictures, series)


def remove_stale_outputs(out_dir: Path, patient_ids: Iterable[str], keep_std: bool = False,
                         keep_pictures: bool = True, keep_cycle: Collection[str] = ()
                         ) -> list[Path]:
    """Delete the volumes, pictures and patient pages an earlier run wrote into ``out_dir`` for
    patients that are not in ``patient_ids``, so that the folder holds this run's patients only
    (a changed split or dataset would otherwise leave another model's predictions beside the
    new ones); standard deviations (``--samples``) of every patient too unless ``keep_std``
    (this run wrote them), and pictures and patient pages of every patient unless
    ``keep_pictures`` (this run wrote them), and the other phases, MIPs, means and their fields
    (``--phases``) but those named in ``keep_cycle`` (this run's, :func:`cycle_file_names`).
    Other files are not touched. Returns
    the deleted paths; OutputError naming a file that cannot be deleted."""
    stems = {safe_name(pid) for pid in patient_ids}
    suffix = f"{PREDICTION_SUFFIX}.nii.gz"  # volumes are prediction_file_name(patient id)
    std_suffix = f"{PREDICTION_SUFFIX}{STD_SUFFIX}.nii.gz"  # and std_file_name(patient id)
    field_suffix = f"{DISPLACEMENT_SUFFIX}.nii.gz"  # and displacement_file_name(patient id)
    stale = [path for path in sorted((out_dir / "volumes").glob(f"*{suffix}"))
             if path.name.removesuffix(suffix) not in stems]
    stale += [path for path in sorted((out_dir / "volumes").glob(f"*{field_suffix}"))
              if path.name.removesuffix(field_suffix) not in stems]
    stale += [path for path in sorted((out_dir / "volumes").glob(f"*{std_suffix}"))
              if not keep_std or path.name.removesuffix(std_suffix) not in stems]
    for path in sorted((out_dir / "volumes").glob("*.nii.gz")):
        match = _CYCLE_NAME.match(path.name)
        if match is not None and path.name not in keep_cycle:
            stale.append(path)
    for path in sorted((out_dir / "images").glob("*.png")):
        match = _PICTURE_NAME.match(path.name)
        if match is not None and (not keep_pictures or match["stem"] not in stems):
            stale.append(path)
    stale += [path for path in sorted((out_dir / PATIENT_DIR).glob("*.html"))
              if not keep_pictures or path.stem not in stems]
    for path in stale:
        try:
            path.unlink()
        except OSError as exc:
            raise OutputError(f"{path}: cannot remove this output of an earlier run "
                              f"({exc.strerror or exc})") from exc
    if stale:
        logger.info("removed %d files of an earlier run from %s", len(stale), out_dir)
    return stale


def _is_series_folder(folder: Path) -> bool:
    """True for a folder holding slice files ``CT_NNNN.dcm`` and nothing else (a series this
    script wrote)."""
    names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
    return bool(names) and all(_SERIES_FILE.match(n) for n in names)


def remove_stale_series(out_dir: Path, keep: set[str]) -> list[Path]:
    """Delete the DICOM series folders ``dicom/<name>/`` an earlier run wrote whose names are
    not in ``keep`` (this run's, :func:`series_folder_names`, compared case-insensitively;
    empty: this run wrote none), and the temp folders an interrupted write left in ``dicom/``;
    an emptied ``dicom/`` goes too. Folders holding anything but ``CT_NNNN.dcm`` files are not
    touched. Returns the deleted folders; OutputError naming one that cannot be deleted."""
    folder = out_dir / DICOM_DIR
    if not folder.is_dir():
        return []
    remove_stale_temp_files(folder)
    stale = [p for p in sorted(folder.iterdir()) if p.is_dir() and not p.is_symlink()
             and p.name.casefold() not in keep and _is_series_folder(p)]
    for path in stale:
        try:
            shutil.rmtree(path)
        except OSError as exc:
            raise OutputError(f"{path}: cannot remove this DICOM series of an earlier run "
                              f"({exc.strerror or exc})") from exc
    if stale:
        logger.info("removed %d DICOM series folders of an earlier run from %s", len(stale),
                    folder)
    if not any(folder.iterdir()):
        folder.rmdir()
    return stale


def check_dicom_output(dataset: NiftiAlignedDataset, opt: argparse.Namespace) -> None:
    """With ``--output_format dicom``, refuse (one line, before anything is written) inputs
    a derived series cannot be placed beside: NIfTI files (no patient, study or frame of
    reference), and DICOM series without a FrameOfReferenceUID or StudyInstanceUID."""
    if opt.output_format != "dicom":
        return
    inputs = dataset.paths_a if dataset.a_to_b else dataset.paths_b
    nifti = [str(path) for path in inputs if path is not None and not path.is_dir()]
    if nifti:
        more = " ..." if len(nifti) > 3 else ""
        raise ConfigError(f"--output_format dicom needs DICOM input series, but {len(nifti)} "
                          f"input(s) are NIfTI files ({', '.join(nifti[:3])}{more}), which have "
                          f"no patient, study or frame of reference to place a derived series "
                          f"in; give <phase>A/<patient>/ DICOM folders, or --output_format nifti")
    for index in range(len(dataset.patient_ids)):
        source = patient_inputs(dataset, index).source.dicom
        if source is not None and not (source.frame_of_reference_uid and source.study_uid):
            raise DataError(f"{source.folder}: the input series has no FrameOfReferenceUID or "
                            f"StudyInstanceUID, so a derived series could not be placed beside "
                            f"it; use --output_format nifti")


def output_names(dataset: NiftiAlignedDataset) -> dict[str, str]:
    """{patient id: volume file name}; DataError naming both input files when two patients
    would share a file (their pictures share the same safe name)."""
    sources = {pid: dataset.volume_info(i).path for i, pid in enumerate(dataset.patient_ids)}
    return unique_output_names(sources, prediction_file_name)


def run_info(opt: argparse.Namespace, generator: TrainedGenerator,
             dataset: NiftiAlignedDataset) -> RunInfo:
    """What the results page says was run."""
    inputs = str(Path(opt.dataroot) / f"{opt.phase}A")
    if dataset.has_target:
        inputs += f", truth {Path(opt.dataroot) / f'{opt.phase}B'}"
    prediction = (f"mean of {opt.samples} passes with dropout (seed {opt.seed})"
                  if opt.samples > 1 else "one deterministic pass (eval mode)")
    written = (f"; also written as DICOM series ({DICOM_DIR}/<patient>/)"
               if opt.output_format == "dicom" else "")
    return RunInfo(name=opt.name, checkpoint=str(generator.weights), inputs=inputs,
                   prediction=f"{prediction}, direction {opt.direction}{written}")


def patient_structures(dataset: NiftiAlignedDataset,
                       opt: argparse.Namespace) -> dict[str, dict[str, np.ndarray]]:
    """{patient: {structure: (I, J, K) bool}} of ``<dataroot>/<phase>B_structures/`` (empty
    without that folder, or without truth to score), read and checked against each patient's
    grid before anything is written."""
    folder = structures_dir(Path(opt.dataroot), opt.phase)
    if not dataset.has_target or not dataset.a_to_b or not folder.is_dir():
        return {}
    found = {pid: load_structures(folder, pid, dataset.volume_info(i))
             for i, pid in enumerate(dataset.patient_ids)}
    logger.info("structure masks from %s: %s", folder, ", ".join(
        sorted({name for masks in found.values() for name in masks})) or "none")
    return {pid: masks for pid, masks in found.items() if masks}


def phase_truths(dataset: NiftiAlignedDataset, index: int, opt: argparse.Namespace,
                 phases: tuple[float, ...]
                 ) -> tuple[dict[float, SliceStack], dict[float, dict[str, np.ndarray]]]:
    """The true phases of patient ``index`` among ``phases`` that the dataset holds (AtoB only),
    and their structure masks ({phase: {name: mask}}, from ``<phase>B_p<p>_structures/``)."""
    if not phases or not dataset.has_target or not dataset.a_to_b:
        return {}, {}
    truths = {ph: stack for ph in phases
              if (stack := dataset.phase_stack(index, ph)) is not None}
    pid, info = dataset.patient_ids[index], dataset.volume_info(index)
    masks = {ph: found for ph in truths if (found := load_structures(
        phase_structures_dir(Path(opt.dataroot), opt.phase, ph), pid, info))}
    return truths, masks


def test(opt: argparse.Namespace) -> Path:
    """Run the test; return the results folder. Every check comes before the first write."""
    dataset = create_dataset(opt)
    if not isinstance(dataset, NiftiAlignedDataset):
        raise ConfigError("test.py writes volumes from --dataset_mode nifti_aligned only")
    output_names(dataset)
    check_dicom_output(dataset, opt)
    structures = patient_structures(dataset, opt)
    settings = region_settings(opt)
    run_dir = Path(opt.checkpoints_dir) / opt.name
    device = torch.device(f"cuda:{opt.gpu_ids[0]}" if opt.gpu_ids else "cpu")
    configure_backends(device, tf32=not opt.no_tf32, cudnn_benchmark=not opt.no_cudnn_benchmark)
    generator = load_generator(run_dir, checkpoint_tag(opt.epoch, opt.load_iter), device,
                               GeneratorSettings.from_options(vars(opt)))
    check_samples(generator.net, opt.samples, str(run_dir))
    phases = cycle_phases(opt, generator)  # refused here, before anything is written
    series_names = (series_folder_names(dataset.patient_ids, phases)
                    if opt.output_format == "dicom" else set())
    amp_dtype = resolve_speed(device, amp=opt.amp).amp_dtype
    out_dir = Path(opt.results_dir) / opt.name / f"{opt.phase}_{opt.epoch}"
    folders = ["volumes"] + ([] if opt.no_pictures else ["images", PATIENT_DIR]) \
        + ([DICOM_DIR] if opt.output_format == "dicom" else [])
    for folder in folders:
        ensure_writable_dir(out_dir / folder)
    for folder in ["", "volumes", "images", PATIENT_DIR, DICOM_DIR]:
        remove_stale_temp_files(out_dir / folder)  # left by an interrupted earlier run
    results = {}
    for index in tqdm(range(len(dataset.patient_ids)), desc="predicting", unit="patient"):
        p = patient_inputs(dataset, index)
        truths, phase_structures = phase_truths(dataset, index, opt, phases)
        results[p.patient_id] = run_patient(generator, p, opt, out_dir, settings, amp_dtype,
                                            structures.get(p.patient_id), truths,
                                            phase_structures)
    remove_stale_outputs(out_dir, dataset.patient_ids, keep_std=opt.samples > 1,
                         keep_pictures=not opt.no_pictures,
                         keep_cycle=cycle_file_names(dataset.patient_ids, phases))
    remove_stale_series(out_dir, series_names)
    scores = {pid: r.scores for pid, r in results.items() if r.scores is not None}
    report = write_and_describe(out_dir, scores) if scores else None
    pictures = {pid: r.pictures for pid, r in results.items() if r.pictures is not None}
    page = write_results_pages(
        out_dir, run_info(opt, generator, dataset), list(results), scores,
        verdict(summarize_over_patients(scores)) if scores else None,
        None if opt.no_pictures else pictures)
    print_results({pid: r.volume for pid, r in results.items()}, report, out_dir, page,
                  opt.samples, sum(r.series is not None for r in results.values()))
    return out_dir


def print_results(volumes: dict[str, Path], report: str | None, out_dir: Path, page: Path,
                  samples: int = 1, n_series: int = 0) -> None:
    """Print the metric tables (``report``, None without truth) and where things are; the
    count is that of the distinct volume files written; ``n_series``: DICOM series written."""
    if report is not None:
        print(report)  # noqa: T201 - the command's summary
    else:
        print("no ground truth (<phase>B): volumes written, nothing scored")  # noqa: T201
    std = (f", each the mean of {samples} dropout passes with its *{PREDICTION_SUFFIX}"
           f"{STD_SUFFIX}.nii.gz" if samples > 1 else "")
    count = len(set(volumes.values()))
    print(f"volumes: {out_dir / 'volumes'} ({count} patients{std})")  # noqa: T201
    if n_series:
        print(f"DICOM series: {out_dir / DICOM_DIR} ({n_series} patients, one folder each; "  # noqa: T201
              f"metrics are those of the volumes)")
    print(f"results page: {page}")  # noqa: T201


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
