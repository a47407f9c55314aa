"""The linear map between Hounsfield units and the network's [-1, 1] range.

``hu_min`` maps to -1 and ``hu_max`` to +1; values outside the window are clipped on the way in.
The defaults cover the 12-bit CT range [-1024, 3071] HU.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

DEFAULT_HU_MIN = -1024.0
DEFAULT_HU_MAX = 3071.0

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def check_window(hu_min: float, hu_max: float) -> None:
    """Raise ValueError unless ``hu_min < hu_max`` (both in HU, finite)."""
    if not (np.isfinite(hu_min) and np.isfinite(hu_max) and hu_min < hu_max):
        raise ValueError(f"HU window must satisfy hu_min < hu_max, got [{hu_min}, {hu_max}]")


def hu_to_unit(hu: ArrayT, hu_min: float = DEFAULT_HU_MIN,
               hu_max: float = DEFAULT_HU_MAX) -> ArrayT:
    """HU -> [-1, 1]: map [hu_min, hu_max] linearly, values outside clipped to -1 or 1 (the
    clip is on the result, so float rounding of the window ends never leaves [-1, 1]). Keeps
    shape and float dtype."""
    check_window(hu_min, hu_max)
    scale = 2.0 / (hu_max - hu_min)
    if isinstance(hu, torch.Tensor):
        return ((hu - hu_min) * scale - 1.0).clamp(-1.0, 1.0)
    return np.clip((hu - hu_min) * scale - 1.0, -1.0, 1.0).astype(np.float32, copy=False)


def unit_to_hu(x: ArrayT, hu_min: float = DEFAULT_HU_MIN,
               hu_max: float = DEFAULT_HU_MAX) -> ArrayT:
    """[-1, 1] -> HU, the inverse of :func:`hu_to_unit` inside the window. Keeps shape and dtype."""
    check_window(hu_min, hu_max)
    half = (hu_max - hu_min) / 2.0
    if isinstance(x, torch.Tensor):
        return (x + 1.0) * half + hu_min
    return ((np.asarray(x) + 1.0) * half + hu_min).astype(np.float32, copy=False)
