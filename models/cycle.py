"""The whole breathing cycle from one AVG: a phase-conditioned generator run for every phase.

What a radiotherapy physicist derives from a 4DCT comes from its phases together: the
maximum-intensity projection (MIP, the voxelwise maximum over the phases, used to outline the
internal target volume), and the mean over the phases, which for a real 4DCT is the AVG itself
(:mod:`evaluation.consistency` checks the synthetic one against the input). Of fewer phases
than the whole cycle, the MIP and the mean are those of the phases asked, and are named so
(the mean is then ``mean``, not ``avg``: it is not comparable with the AVG).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from data.dicom_write import DERIVED_SERIES_OFFSET
from models.inference import StackPrediction
from models.trained_run import TrainedGenerator
from util.phases import STANDARD_PHASES, phase_label

#: DICOM SeriesNumber offsets (from the source's) of a cycle's MIP and mean; phase p is at
#: ``DERIVED_SERIES_OFFSET + p`` (phase 0 at the offset of a phase-0 prediction).
MIP_SERIES_OFFSET, MEAN_SERIES_OFFSET = DERIVED_SERIES_OFFSET + 100, DERIVED_SERIES_OFFSET + 101


@dataclass(frozen=True)
class CycleVolume:
    """One volume a cycle writes: ``kind``, a phase (%) or one of
    :data:`util.names.CYCLE_KINDS`; ``description``, what it is in words (the log, the DICOM
    SeriesDescription: ``"phase 40 %"``, ``"MIP of phases 0, 50 %"``); ``series_offset``, its
    DICOM SeriesNumber minus the source's, distinct within the cycle."""

    kind: float | str
    description: str
    series_offset: int


def is_whole_cycle(phases: Iterable[float]) -> bool:
    """Whether ``phases`` (%) hold every phase of a standard ten-phase cycle."""
    return set(STANDARD_PHASES) <= {float(p) for p in phases}


def cycle_volumes(phases: Sequence[float]) -> tuple[CycleVolume, ...]:
    """The volumes a prediction of ``phases`` (%, in the order asked) writes: each phase, then,
    for more than one phase, their MIP and their mean: ``avg`` (the synthetic AVG) for the
    whole cycle, ``mean`` ("mean of phases 0, 50 %") for fewer phases."""
    volumes: list[CycleVolume] = []
    used = {MIP_SERIES_OFFSET, MEAN_SERIES_OFFSET}
    for percent in phases:
        offset = DERIVED_SERIES_OFFSET + round(percent)
        while offset in used:  # two phases within 1 % of each other, or one of 99.5 % or more
            offset += 1
        used.add(offset)
        volumes.append(CycleVolume(float(percent), f"phase {phase_label(percent)} %", offset))
    if len(phases) > 1:
        whole = is_whole_cycle(phases)
        listed = ", ".join(phase_label(p) for p in phases)
        volumes += [CycleVolume("mip", "MIP of the cycle" if whole else f"MIP of phases {listed} %",
                                MIP_SERIES_OFFSET),
                    CycleVolume("avg", "mean of the cycle", MEAN_SERIES_OFFSET)
                    if whole else CycleVolume("mean", f"mean of phases {listed} %",
                                              MEAN_SERIES_OFFSET)]
    return tuple(volumes)


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
        return is_whole_cycle(self.phases)

    def volumes(self) -> tuple[CycleVolume, ...]:
        """The volumes this cycle writes (:func:`cycle_volumes` of its phases)."""
        return cycle_volumes(list(self.phases))

    def volume_hu(self, kind: float | str) -> np.ndarray:
        """(S, H, W) float32 HU of one of :meth:`volumes`: a phase, the MIP, or the mean."""
        if kind == "mip":
            return self.mip_hu()
        if kind in ("avg", "mean"):
            return self.mean_hu()
        return self.phases[float(kind)].hu


def predict_cycle(generator: TrainedGenerator, stack_hu: np.ndarray, phases: Iterable[float],
                  known: Mapping[float, StackPrediction] | None = None, *,
                  spacing_mm: Sequence[float] | None = None,
                  **predict_options: object) -> CyclePrediction:
    """``generator.predict`` of ``stack_hu`` (S, H, W) HU, spaced ``spacing_mm`` (slice, row,
    column mm; needed for a generator run at a working spacing), for each phase (%), in order,
    but for the phases whose prediction is ``known`` already; the other keyword arguments go to
    :meth:`TrainedGenerator.predict` (batch size, samples, ...)."""
    known = known or {}
    return CyclePrediction({float(p): known[p] if p in known else generator.predict(
        stack_hu, spacing_mm=spacing_mm, phase_pct=float(p),
        **predict_options)  # type: ignore[arg-type]
        for p in phases})

