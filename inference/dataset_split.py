"""A dataset split through the pipeline (``test.py``): each patient's input, truth and
structure masks, the checks made before anything is written, and the scores of what was written.

The patients come from ``<dataroot>/<phase>A`` (and ``<phase>B``, the truth) through
:class:`data.nifti_aligned_dataset.NiftiAlignedDataset`; ``--direction BtoA`` swaps input and
truth. Scores are those of the written files, read back as a user will read them (after the
on-disk rounding), against phase 0 (:func:`evaluation.metrics.evaluate_volumes`) and, for a
cycle, against the true phases known (:func:`evaluation.cycle_scores.score_cycle`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data.ct_volumes import SliceStack
from data.nifti_aligned_dataset import NiftiAlignedDataset
from data.nifti_io import load_volume
from data.structures import load_structures, phase_structures_dir, structures_dir
from evaluation.cycle_scores import score_cycle
from evaluation.metrics import RegionSettings, evaluate_volumes
from inference.pipeline import check_series_source, refuse_nifti_inputs
from util.geometry import from_slice_stack
from util.names import prediction_file_name, unique_output_names

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PatientInputs:
    """One patient's network input stack and, when known, its truth; ``avg`` is the AVG stack
    (the input for AtoB, the target for BtoA). Arrays: (S, H, W) HU in stack order."""

    patient_id: str
    source: SliceStack
    truth: SliceStack | None
    avg: SliceStack

    @property
    def a_to_b(self) -> bool:
        """Whether the input is the AVG (the prediction is then phase 0)."""
        return self.source is self.avg


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


def output_names(dataset: NiftiAlignedDataset) -> dict[str, str]:
    """{patient id: volume file name}; DataError naming both input files when two patients
    would share a file (their pictures share the same safe name)."""
    sources = {pid: dataset.volume_info(i).path for i, pid in enumerate(dataset.patient_ids)}
    return unique_output_names(sources, prediction_file_name)


def check_dicom_inputs(dataset: NiftiAlignedDataset) -> None:
    """For DICOM output, refuse inputs a derived series cannot be placed beside: NIfTI files
    (no patient, study or frame of reference), and DICOM series without a FrameOfReferenceUID
    or StudyInstanceUID."""
    inputs = dataset.paths_a if dataset.a_to_b else dataset.paths_b
    refuse_nifti_inputs([path for path in inputs if path is not None and not path.is_dir()],
                        "<phase>A/<patient>/ DICOM folders")
    for index in range(len(dataset.patient_ids)):
        check_series_source(patient_inputs(dataset, index).source.dicom)


def patient_structures(dataset: NiftiAlignedDataset, dataroot: Path,
                       phase: str) -> dict[str, dict[str, np.ndarray]]:
    """{patient: {structure: (I, J, K) bool}} of ``<dataroot>/<phase>B_structures/`` (empty
    without that folder, or without truth to score), read and checked against each patient's
    grid before anything is written."""
    folder = structures_dir(dataroot, phase)
    if not dataset.has_target or not dataset.a_to_b or not folder.is_dir():
        return {}
    found = {pid: load_structures(folder, pid, dataset.volume_info(i))
             for i, pid in enumerate(dataset.patient_ids)}
    logger.info("structure masks from %s: %s", folder, ", ".join(
        sorted({name for masks in found.values() for name in masks})) or "none")
    return {pid: masks for pid, masks in found.items() if masks}


def phase_truths(dataset: NiftiAlignedDataset, index: int, dataroot: Path, phase: str,
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
        phase_structures_dir(dataroot, phase, ph), pid, info))}
    return truths, masks


def score_patient(saved_hu: np.ndarray, p: PatientInputs, settings: RegionSettings,
                  structures: dict[str, np.ndarray] | None = None) -> dict | None:
    """Metrics of the written volume (I, J, K) HU and of the AVG, against phase 0; None when
    there is no phase 0 to compare with (no ``<phase>B``, or BtoA). ``structures``: the
    patient's phase-0 masks (I, J, K) bool by name, for their centre-of-mass errors."""
    if p.truth is None or not p.a_to_b:
        return None
    affine = p.avg.info.affine
    return evaluate_volumes(saved_hu, from_slice_stack(p.truth.hu, affine),
                            from_slice_stack(p.avg.hu, affine), affine, settings,
                            structures=structures)


def score_written_cycle(p: PatientInputs, written: Mapping[float, Path],
                        truths: Mapping[float, SliceStack], settings: RegionSettings,
                        structures: Mapping[float, Mapping[str, np.ndarray]]
                        ) -> tuple[dict[str, Any], dict[float, np.ndarray]]:
    """Scores of the written phases (``written``: {phase %: NIfTI file}) against ``truths``
    (the true phases known, stack frame), with the consistency of their mean and the
    trajectories (:func:`evaluation.cycle_scores.score_cycle`); and the phases as read,
    {phase: (I, J, K) HU}."""
    affine = p.avg.info.affine
    preds = {ph: load_volume(path).hu for ph, path in written.items()}
    scores = score_cycle(preds, {ph: from_slice_stack(t.hu, affine) for ph, t in truths.items()},
                         from_slice_stack(p.avg.hu, affine), affine, settings, structures)
    if scores["consistency"] is not None:
        body = scores["consistency"]["model"]["body"]
        logger.info("%s: the mean of the %d synthetic phases differs from the AVG by %.1f HU in "
                    "the body (bias %+.1f HU)", p.patient_id, len(preds), body["mae_hu"],
                    body["bias_hu"])
    return scores, preds
