"""Error measures between CT volumes, in HU."""

from __future__ import annotations

import numpy as np


def mae_hu(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute error in HU between two arrays of the same shape (any dims)."""
    if pred.shape != truth.shape:
        raise ValueError(f"shapes differ: {pred.shape} vs {truth.shape}")
    return float(np.mean(np.abs(pred.astype(np.float64) - truth.astype(np.float64))))
