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

The generator is loaded, run and its outputs written by :mod:`inference.pipeline`, the flow
``scripts/predict.py`` runs too, in the layout of :mod:`inference.results_folder`; it is loaded
from the run folder (:func:`models.trained_run.load_generator`) with the architecture and input
settings of its ``opt.json`` (``--model`` is accepted, as in the seed's
command, and the run folder is only read). The prediction is deterministic (eval mode: no dropout,
batch norm running statistics; ``--eval`` is accepted and changes nothing): the same inputs and
checkpoint give the same files. Slices of any size are padded with air to what the generator takes
and cropped back. Before anything is written, two inputs whose safe names coincide (``PT 1`` and
``PT_1``, or names differing only in case) are refused, naming both, and the results folder is
created and checked to be writable. """


from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data import create_dataset
from data.ct_volumes import SliceStack
from data.nifti_aligned_dataset import NiftiAlignedDataset
from data.nifti_io import load_volume
from display.patient_page import PatientPictures
from display.results_page import RunInfo, write_results_pages
from evaluation.metrics import RegionSettings
from evaluation.report import summarize_over_patients, verdict, write_and_describe
from inference.dataset_split import (
    PatientInputs,
    check_dicom_inputs,
    output_names,
    patient_inputs,
    patient_structures,
    phase_truths,
    score_patient,
    score_written_cycle,
)
from inference.pictures import write_cycle_pictures, write_patient_views, write_slice_pictures
from inference.pipeline import (
    InferencePipeline,
    PhaseRequest,
    PredictSettings,
    RunChoice,
    load_pipeline,
)
from inference.results_folder import (
    DICOM_DIR,
    IMAGES_DIR,
    VOLUMES_DIR,
    cycle_file_names,
    patient_paths,
    prepare_results_folder,
    remove_stale_outputs,
    remove_stale_series,
    series_folder_names,
)
from models.base_model import checkpoint_tag
from models.settings import RunSettings
from options.base_options import run_settings
from options.test_options import TestOptions
from util.cli import run_cli
from util.errors import ConfigError
from util.geometry import to_slice_stack
from util.names import PREDICTION_SUFFIX, STD_SUFFIX
from util.speed import configure_backends


@dataclass(frozen=True)
class Results:
    """Where and what this run writes: the results folder ``out_dir``, DICOM series too
    (``dicom``), pictures ``slice_width_px`` wide in the pages (None: ``--no_pictures``), and
    the regions the scores are taken in."""

    out_dir: Path
    dicom: bool
    slice_width_px: int | None
    regions: RegionSettings


@dataclass(frozen=True)
class PatientResult:
    """What :func:`run_patient` wrote for one patient: the volume, its scores (None without a
    truth), its pictures (None with ``--no_pictures``) and its DICOM series folder (None
    without ``--output_format dicom``)."""

    volume: Path
    scores: dict | None
    pictures: PatientPictures | None
    series: Path | None = None


def run_choice(settings: RunSettings) -> RunChoice:
    """The run, checkpoint, device and generator settings of the run's ``settings``."""
    run = settings.run
    return RunChoice(Path(run.checkpoints_dir), run.name, checkpoint_tag(run.epoch, run.load_iter),
                     run.gpu_ids, settings.generator)


def predict_settings(opt: argparse.Namespace, settings: RunSettings) -> PredictSettings:
    """How the options (``--samples``, ``--window_overlap``) and the run's ``settings`` ask
    each patient to be predicted."""
    return PredictSettings(batch_size=settings.data.batch_size, samples=opt.samples,
                           seed=settings.run.seed, amp=settings.speed.amp,
                           window_overlap=opt.window_overlap,
                           cycle=PhaseRequest.parse(settings.data.phases))


def run_patient(pipeline: InferencePipeline, p: PatientInputs, results: Results,
                structures: dict[str, np.ndarray] | None = None,
                truths: dict[float, SliceStack] | None = None,
                phase_structures: dict[float, dict[str, np.ndarray]] | None = None
                ) -> PatientResult:
    """Predict one patient and write its outputs (:func:`inference.results_folder.patient_paths`),
    then its pictures unless ``--no_pictures``, and score the written files."""
    prediction = pipeline.predict(p.source)
    paths = patient_paths(results.out_dir, p.patient_id, pipeline.settings.cycle.phases,
                          dicom=results.dicom, series_description="phase 0" if p.a_to_b
                          else "AVG")
    written = pipeline.write(prediction, p.source, paths)
    saved = load_volume(written.volume_file()).hu  # scored as a user will read it
    image_dir = results.out_dir / IMAGES_DIR
    pictures = None
    if results.slice_width_px is not None:
        saved_stack = to_slice_stack(saved, p.source.info.affine)
        pictures = PatientPictures(
            views=tuple(write_patient_views(image_dir, p, saved_stack, results.regions)),
            slices=tuple(write_slice_pictures(image_dir, p, saved_stack)),
            slice_width_px=results.slice_width_px)
    scores = score_patient(saved, p, results.regions, structures)
    if scores is not None and written.field_figures is not None:
        scores["displacement"] = written.field_figures
    if prediction.cycle is not None:
        cycle, preds = score_written_cycle(
            p, {ph: written.cycle_volumes[ph] for ph in prediction.cycle.phases}, truths or {},
            results.regions, phase_structures or {})
        if scores is not None:
            scores["cycle"] = cycle
        if pictures is not None:
            views = write_cycle_pictures(image_dir, p, cycle, preds, truths or {})
            pictures = dataclasses.replace(pictures, views=(*pictures.views, *views))
    return PatientResult(written.volume_file(), scores, pictures, written.series)


def run_info(opt: argparse.Namespace, pipeline: InferencePipeline,
             dataset: NiftiAlignedDataset) -> RunInfo:
    """What the results page says was run."""
    inputs = str(Path(opt.dataroot) / f"{opt.phase}A")
    if dataset.has_target:
        inputs += f", truth {Path(opt.dataroot) / f'{opt.phase}B'}"
    prediction = (f"mean of {opt.samples} passes with dropout (seed {opt.seed})"
                  if opt.samples > 1 else "one deterministic pass (eval mode)")
    written = (f"; also written as DICOM series ({DICOM_DIR}/<patient>/)"
               if opt.output_format == "dicom" else "")
    return RunInfo(name=opt.name, checkpoint=str(pipeline.generator.weights), inputs=inputs,
                   prediction=f"{prediction}, direction {opt.direction}{written}")


def test(opt: argparse.Namespace) -> Path:
    """Run the test the parsed options ``opt`` describe; return the results folder. Every check
    comes before the first write."""
    settings = run_settings(opt)
    dataset = create_dataset(settings.data)
    if not isinstance(dataset, NiftiAlignedDataset):
        raise ConfigError("test.py writes volumes from --dataset_mode nifti_aligned only")
    output_names(dataset)
    dicom = opt.output_format == "dicom"
    if dicom:
        check_dicom_inputs(dataset)
    dataroot, split = Path(settings.data.dataroot), settings.data.phase
    structures = patient_structures(dataset, dataroot, split)
    out_dir = Path(opt.results_dir) / settings.run.name / f"{split}_{settings.run.epoch}"
    results = Results(out_dir, dicom, None if opt.no_pictures else opt.display_winsize,
                      settings.regions)
    run = run_choice(settings)
    configure_backends(run.device, tf32=not settings.speed.no_tf32,
                       cudnn_benchmark=not settings.speed.no_cudnn_benchmark)
    pipeline = load_pipeline(run, predict_settings(opt, settings))
    phases = pipeline.settings.cycle.phases
    series_names = series_folder_names(dataset.patient_ids, phases) if dicom else set()
    prepare_results_folder(out_dir, pictures=not opt.no_pictures, dicom=dicom)
    patients = {}
    for index in tqdm(range(len(dataset.patient_ids)), desc="predicting", unit="patient"):
        p = patient_inputs(dataset, index)
        truths, phase_structures = phase_truths(dataset, index, dataroot, split, phases)
        patients[p.patient_id] = run_patient(pipeline, p, results,
                                             structures.get(p.patient_id), truths,
                                             phase_structures)
    remove_stale_outputs(out_dir, dataset.patient_ids, keep_std=opt.samples > 1,
                         keep_pictures=not opt.no_pictures,
                         keep_cycle=cycle_file_names(dataset.patient_ids, phases))
    remove_stale_series(out_dir, series_names)
    scores = {pid: r.scores for pid, r in patients.items() if r.scores is not None}
    report = write_and_describe(out_dir, scores) if scores else None
    pictures = {pid: r.pictures for pid, r in patients.items() if r.pictures is not None}
    page = write_results_pages(
        out_dir, run_info(opt, pipeline, dataset), list(patients), scores,
        verdict(summarize_over_patients(scores)) if scores else None,
        None if opt.no_pictures else pictures)
    print_results({pid: r.volume for pid, r in patients.items()}, report, out_dir, page,
                  opt.samples, sum(r.series is not None for r in patients.values()))
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
    print(f"volumes: {out_dir / VOLUMES_DIR} ({count} patients{std})")  # noqa: T201
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
