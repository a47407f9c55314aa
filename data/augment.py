"""Intensity augmentation of training slices: what another scanner does to the same anatomy.

A model trained on one scanner's noise, reconstruction kernel and calibration meets others at
test time. Each training sample is drawn, with torch's generator (seeded per worker, saved in the
training state), a calibration offset added to input and target alike, a reconstruction kernel
(an in-plane Gaussian blur) applied to both alike, and extra noise on the input AVG alone, so the
network cannot key on one scanner's texture. Work is in HU, before the window maps to [-1, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from util.errors import ConfigError


@dataclass(frozen=True)
class IntensityAugment:
    """Largest values drawn per sample (each uniform in [0, max], the offset in [-max, max]):
    ``noise_hu``: sigma (HU) of Gaussian noise added to the input alone; ``blur_px``: sigma
    (pixels) of an in-plane Gaussian blur of input and target; ``offset_hu``: an HU offset added
    to both. All 0: no augmentation."""

    noise_hu: float = 0.0
    blur_px: float = 0.0
    offset_hu: float = 0.0

    def __post_init__(self) -> None:
        values = (self.noise_hu, self.blur_px, self.offset_hu)
        if not all(np.isfinite(v) and v >= 0 for v in values):
            raise ConfigError(f"--augment_intensity NOISE_HU BLUR_PX OFFSET_HU must be finite "
                              f"and >= 0, got {' '.join(f'{v:g}' for v in values)}")

    @classmethod
    def from_values(cls, values: Sequence[float]) -> IntensityAugment:
        """From the option's three numbers (noise HU, blur pixels, offset HU)."""
        if len(values) != 3:
            raise ConfigError(f"--augment_intensity takes NOISE_HU BLUR_PX OFFSET_HU, got "
                              f"{len(values)} values")
        return cls(float(values[0]), float(values[1]), float(values[2]))

    @property
    def enabled(self) -> bool:
        """Whether any augmentation is drawn."""
        return bool(self.noise_hu or self.blur_px or self.offset_hu)

    def __call__(self, input_hu: np.ndarray, target_hu: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray | None]:
        """(input (C, H, W) or (H, W) HU, target (H, W) HU or None) -> the augmented pair,
        float32; the draws come from torch's global generator."""
        offset, blur, noise = (torch.rand(3) * 2.0 - torch.tensor([1.0, 0.0, 0.0])).tolist()
        offset, blur, noise = offset * self.offset_hu, blur * self.blur_px, noise * self.noise_hu
        out_in = _blurred(input_hu.astype(np.float32) + offset, blur)
        out_target = None if target_hu is None else \
            _blurred(target_hu.astype(np.float32) + offset, blur)
        if noise > 0:
            gaussian = torch.randn(out_in.shape, dtype=torch.float32).numpy()
            out_in = out_in + np.float32(noise) * gaussian
        return out_in, out_target


def _blurred(hu: np.ndarray, sigma_px: float) -> np.ndarray:
    """``hu`` ((..., H, W)) blurred in-plane by a Gaussian of ``sigma_px`` pixels (0: as is)."""
    if sigma_px <= 0:
        return hu
    sigma = (0.0,) * (hu.ndim - 2) + (sigma_px, sigma_px)
    return ndimage.gaussian_filter(hu, sigma, mode="nearest").astype(np.float32)


#: No augmentation (the default of datasets and of test time).
NO_AUGMENT = IntensityAugment()
