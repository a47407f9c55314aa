"""The whole breathing cycle from one AVG: a phase-conditioned generator run for every phase.

What a radiotherapy physicist derives from a 4DCT comes from its phases together: the
maximum-intensity projection (MIP, the voxelwise maximum over the phases, used to outline the
internal target volume), and the mean over the phases, which for a real 4DCT is the AVG itself
(:mod:`evaluation.consistency` checks the synthetic one against the input).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.displacement_field import stack_field_to_world, write_displacement_field
from data.nifti_io import VolumeInfo, save_volume
from models.inference import StackPrediction
from models.trained_run import TrainedGenerator
from util.geometry import from_slice_stack
from util.names import cycle_file_name, displacement_file_name, phase_prediction_file_name
from util.phases import STANDARD_PHASES


@dataclass(frozen=True)
class CyclePrediction:
    """Predictions of several phases of one patient, in the slice-stack frame: ``phases``
    {phase %: :class:`StackPrediction`}, (S, H, W) float32 HU each."""

    phases: dict[float, StackPrediction]

    def mip_hu(self) -> np.ndarray:
        """(S, H, W) float32: the voxelwise maximum over the phases (HU)."""
        return np.max(np.stack([p.hu for p in self.phases.values()]), axis=0)

    def mean_hu(self) -> np.ndarray:
        """(S, H, W) float32: the voxelwise mean over the phases (HU), the synthetic AVG."""
        total = np.zeros(next(iter(self.phases.values())).hu.shape, dtype=np.float64)
        for prediction in self.phases.values():
            total += prediction.hu
        return (total / len(self.phases)).astype(np.float32)

    @property
    def whole_cycle(self) -> bool:
        """Whether every phase of a standard ten-phase cycle is here (the mean is then
        comparable with the AVG)."""
        return set(STANDARD_PHASES) <= set(self.phases)


def predict_cycle(generator: TrainedGenerator, stack_hu: np.ndarray, phases: Iterable[float],
                  known: Mapping[float, StackPrediction] | None = None,
                  **predict_options: object) -> CyclePrediction:
    """``generator.predict`` of ``stack_hu`` (S, H, W) HU for each phase (%), in order, but for
    the phases whose prediction is ``known`` already; the other keyword arguments go to
    :meth:`TrainedGenerator.predict` (batch size, samples, ...)."""
    known = known or {}
    return CyclePrediction({float(p): known[p] if p in known else generator.predict(
        stack_hu, phase_pct=float(p), **predict_options)  # type: ignore[arg-type]
        for p in phases})


def write_cycle(cycle: CyclePrediction, info: VolumeInfo, folder: Path, patient_id: str
                ) -> dict[float | str, Path]:
    """Write every phase of ``cycle`` (phase 0 too) with the AVG's geometry and storage
    (``info``), and the MIP and mean ("mip", "avg") of a cycle of more than one phase, into
    ``folder``; a motion generator's fields of the phases other than 0 as well. Returns
    {phase % or "mip"/"avg": path}."""
    affine = info.affine
    paths: dict[float | str, Path] = {}
    for percent, prediction in cycle.phases.items():
        paths[percent] = save_volume(from_slice_stack(prediction.hu, affine), info,
                                     folder / phase_prediction_file_name(patient_id, percent))
        if percent != 0 and prediction.displacement_vox is not None:
            write_displacement_field(folder / displacement_file_name(patient_id, percent),
                                     stack_field_to_world(prediction.displacement_vox, affine),
                                     info)
    if len(cycle.phases) > 1:
        for kind, stack in (("mip", cycle.mip_hu()), ("avg", cycle.mean_hu())):
            paths[kind] = save_volume(from_slice_stack(stack, affine), info,
                                      folder / cycle_file_name(patient_id, kind))
    return paths
