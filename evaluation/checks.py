"""Argument checks shared by the evaluation modules; each raises ValueError naming the problem."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def check_volume(vol: np.ndarray, name: str) -> None:
    """ValueError unless ``vol`` is 3-D."""
    if np.ndim(vol) != 3:
        raise ValueError(f"{name} must be a 3-D volume (I, J, K), got shape {np.shape(vol)}")


def check_same_shape(a: np.ndarray, b: np.ndarray, names: str) -> None:
    """ValueError naming both shapes unless ``a`` and ``b`` have the same shape."""
    if np.shape(a) != np.shape(b):
        raise ValueError(f"{names} must have the same shape, got {np.shape(a)} and {np.shape(b)}")


def check_spacing(spacing_mm: Sequence[float], ndim: int = 3) -> tuple[float, ...]:
    """``spacing_mm`` as ``ndim`` floats, or ValueError unless they are finite sizes > 0 mm."""
    spacing = tuple(float(s) for s in spacing_mm)
    if len(spacing) != ndim or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing_mm must be {ndim} finite sizes > 0 mm, got {spacing_mm}")
    return spacing


def check_margin(margin_mm: float, name: str = "margin_mm") -> float:
    """``margin_mm`` as a float, or ValueError unless it is a finite distance >= 0 mm."""
    if isinstance(margin_mm, bool) or not isinstance(margin_mm, int | float):
        raise ValueError(f"{name} must be a distance in mm, not {margin_mm!r}")
    if not (math.isfinite(margin_mm) and margin_mm >= 0):
        raise ValueError(f"{name} must be a finite distance >= 0 mm, not {margin_mm!r}")
    return float(margin_mm)
