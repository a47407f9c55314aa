"""The whole breathing cycle from one AVG: a phase-conditioned generator run for every phase.

What a radiotherapy physicist derives from a 4DCT comes from its phases together: the
maximum-intensity projection (MIP, the voxelwise maximum over the phases, used to outline the
internal target volume), and the mean over the phases, which for a real 4DCT is the AVG itself
(:mod:`evaluation.consistency` checks the synthetic one against the input).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from data.phases import STANDARD_PHASES
from models.inference import StackPrediction
from models.trained_run import TrainedGenerator


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
                  **predict_options: object) -> CyclePrediction:
    """``generator.predict`` of ``stack_hu`` (S, H, W) HU for each phase (%), in order; the other
    keyword arguments go to :meth:`TrainedGenerator.predict` (batch size, samples, ...)."""
    return CyclePrediction({float(p): generator.predict(stack_hu, phase_pct=float(p),
                                                        **predict_options)  # type: ignore[arg-type]
                            for p in phases})
