"""The physical check of a synthesised breathing cycle: the AVG is the mean of the phases.

A 4DCT's average CT is (up to the scanner's reconstruction) the voxelwise mean of its gated
phases, so the mean of the ten synthesised phases should give back the AVG the model was given.
The consistency error is the MAE in HU between that mean and the input AVG, per region: it needs
no ground truth, so it is a quality signal on new patients without a 4DCT. A model that moves
anatomy in one phase without taking it back in another, or brightens every phase, shows here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from evaluation.metrics import bias_hu, mae_hu


def mean_of_phases(phases_hu: Sequence[np.ndarray]) -> np.ndarray:
    """The voxelwise mean of the phases: each (I, J, K) HU -> (I, J, K) float32 HU (accumulated
    in float64, one phase at a time)."""
    if not phases_hu:
        raise ValueError("no phases to average")
    total = np.zeros(phases_hu[0].shape, dtype=np.float64)
    for phase in phases_hu:
        if phase.shape != total.shape:
            raise ValueError(f"phases of different shapes: {phase.shape} vs {total.shape}")
        total += phase
    return (total / len(phases_hu)).astype(np.float32)


def consistency_error(phases_hu: Sequence[np.ndarray], avg_hu: np.ndarray,
                      masks: Mapping[str, np.ndarray | None]) -> dict[str, dict[str, float]]:
    """{region: {"mae_hu", "bias_hu"}} of the mean of ``phases_hu`` against ``avg_hu`` (all
    (I, J, K) HU on one grid), for each region of ``masks`` (bool (I, J, K), None = every voxel).
    Bias is mean(phases) - AVG: positive when the synthetic cycle is brighter than its AVG."""
    mean = mean_of_phases(phases_hu)
    return {region: {"mae_hu": mae_hu(mean, avg_hu, mask), "bias_hu": bias_hu(mean, avg_hu, mask)}
            for region, mask in masks.items()}
