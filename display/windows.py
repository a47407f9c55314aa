"""CT display windows and PNG previews.

Everything here is for looking at slices, never for storing them: :func:`window_to_uint8` squeezes
HU into 256 grey levels, which throws away most of the HU information. Volumes and metrics stay in
float HU elsewhere (``data/nifti_io.py``, ``evaluation/metrics.py``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import torch
from PIL import Image

from util.atomic import atomic_write_with
from util.errors import ConfigError
from util.hu_window import unit_to_hu

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DisplayWindow:
    """A CT display window: ``level_hu`` is the centre grey, ``width_hu`` the HU span black->white.

    HU at or below ``level_hu - width_hu / 2`` show black, at or above ``level_hu + width_hu / 2``
    white.
    """

    level_hu: float
    width_hu: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.level_hu) and np.isfinite(self.width_hu) and self.width_hu > 0):
            raise ValueError(f"display window needs a finite level and a width > 0 HU, got "
                             f"level {self.level_hu}, width {self.width_hu}")

    @property
    def lower_hu(self) -> float:
        """The HU shown black (and everything below it)."""
        return self.level_hu - self.width_hu / 2.0

    @property
    def upper_hu(self) -> float:
        """The HU shown white (and everything above it)."""
        return self.level_hu + self.width_hu / 2.0


#: Named windows; "thorax" is the default of the run pages.
WINDOWS: Mapping[str, DisplayWindow] = MappingProxyType({
    "lung": DisplayWindow(level_hu=-600.0, width_hu=1500.0),
    "soft_tissue": DisplayWindow(level_hu=40.0, width_hu=400.0),
    "thorax": DisplayWindow(level_hu=-300.0, width_hu=1600.0),
    "bone": DisplayWindow(level_hu=400.0, width_hu=1800.0),
})
DEFAULT_WINDOW = "thorax"


def get_window(name: str) -> DisplayWindow:
    """The window called ``name``; :class:`ConfigError` listing the valid names otherwise."""
    try:
        return WINDOWS[name]
    except KeyError:
        raise ConfigError(f"unknown display window {name!r}; choose one of "
                          f"{', '.join(sorted(WINDOWS))}") from None


def describe_window(window: DisplayWindow) -> str:
    """``"thorax (L -300, W 1600 HU)"`` for a named window, ``"L 50, W 350 HU"`` otherwise."""
    numbers = f"L {window.level_hu:g}, W {window.width_hu:g} HU"
    names = [name for name, w in WINDOWS.items() if w == window]
    return f"{names[0]} ({numbers})" if names else numbers


def window_to_uint8(hu: np.ndarray, window: DisplayWindow) -> np.ndarray:
    """HU -> 8-bit grey for display ONLY (256 levels lose the HU; never save these as data).

    Linear from ``window.lower_hu`` (0) to ``window.upper_hu`` (255), clipped outside, rounded to
    the nearest level; NaN shows black. ``hu``: any shape, HU. Returns the same shape, uint8.
    """
    scaled = (np.asarray(hu, dtype=np.float64) - window.lower_hu) * (255.0 / window.width_hu)
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)


def unit_tensor_to_hu(x: torch.Tensor, hu_min: float, hu_max: float) -> np.ndarray:
    """A network slice in [-1, 1] -> HU on the CPU.

    ``x``: (C, H, W) or (H, W), values in [-1, 1] mapping linearly to [hu_min, hu_max] HU; only
    the first channel of a (C, H, W) tensor is used. Returns (H, W) float32 HU.
    """
    if x.ndim == 3:
        x = x[0]
    elif x.ndim != 2:
        raise ValueError(f"expected a (C, H, W) or (H, W) tensor, got shape {tuple(x.shape)}")
    unit = x.detach().to(device="cpu", dtype=torch.float32).numpy()
    return unit_to_hu(unit, hu_min, hu_max).astype(np.float32, copy=False)


def save_png(img_uint8: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write a (H, W) grey or (H, W, 3) RGB uint8 picture to ``path`` as PNG, atomically."""
    if img_uint8.dtype != np.uint8:
        raise ValueError(f"{path}: expected a uint8 picture, got dtype {img_uint8.dtype}")
    if not (img_uint8.ndim == 2 or (img_uint8.ndim == 3 and img_uint8.shape[2] == 3)):
        raise ValueError(f"{path}: expected shape (H, W) or (H, W, 3), got {img_uint8.shape}")
    picture = Image.fromarray(np.ascontiguousarray(img_uint8))
    atomic_write_with(path, lambda tmp: picture.save(tmp, format="PNG"), suffix=".png")
