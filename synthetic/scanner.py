"""The scanner's part of a synthetic 4DCT: reconstruction kernel, noise, stored HU and the AVG.

A reconstruction kernel is modelled as an isotropic Gaussian blur of ``kernel_blur_mm`` (sigma, in
mm; 0 = the sharpest kernel, about 1-3 mm = soft kernels), applied to the noiseless phases; the
noise is Gaussian with standard deviation ``noise_hu`` and is passed through the same kernel (and
rescaled to ``noise_hu``), so soft kernels give smooth, correlated noise as scanners do. HU are
then rounded to integers and clipped to the stored CT range [-1024, 3071], and the AVG is the mean
of the ten noisy phases, as a scanner computes it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from util.errors import ConfigError

HU_STORED_MIN, HU_STORED_MAX = -1024.0, 3071.0


def kernel_sigma_vox(kernel_blur_mm: float,
                     spacing_mm: tuple[float, float, float]) -> tuple[float, float, float]:
    """Per-axis Gaussian sigma (voxels) of a ``kernel_blur_mm`` blur on voxels of ``spacing_mm``."""
    if kernel_blur_mm < 0:
        raise ConfigError(f"kernel_blur_mm must be >= 0, got {kernel_blur_mm}")
    return (kernel_blur_mm / spacing_mm[0], kernel_blur_mm / spacing_mm[1],
            kernel_blur_mm / spacing_mm[2])


def _kernel_noise(shape: tuple[int, ...], noise_hu: float, sigma_vox: tuple[float, float, float],
                  rng: np.random.Generator) -> np.ndarray:
    """(10, I, J, K) float32 Gaussian noise of standard deviation ``noise_hu`` (HU), correlated by
    the kernel ``sigma_vox`` (voxels) within each phase."""
    noise = rng.normal(0.0, 1.0, size=shape).astype(np.float32)
    if max(sigma_vox) > 0:
        noise = ndimage.gaussian_filter(noise, sigma=(0.0, *sigma_vox), mode="wrap")
        noise /= max(float(noise.std()), 1e-6)
    return noise * np.float32(noise_hu)


def acquire(clean_hu: np.ndarray, spacing_mm: tuple[float, float, float], noise_hu: float,
            kernel_blur_mm: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """What the scanner stores of the noiseless phases ``clean_hu`` (10, I, J, K) HU on voxels of
    ``spacing_mm`` (mm): (phases (10, I, J, K) float32 integer HU in [-1024, 3071], AVG
    (I, J, K) float32 mean of those phases)."""
    if noise_hu < 0:
        raise ConfigError(f"noise_hu must be >= 0, got {noise_hu}")
    sigma_vox = kernel_sigma_vox(kernel_blur_mm, spacing_mm)
    blurred = clean_hu.astype(np.float32)
    if max(sigma_vox) > 0:
        blurred = ndimage.gaussian_filter(blurred, sigma=(0.0, *sigma_vox), mode="nearest")
    noisy = blurred + _kernel_noise(clean_hu.shape, noise_hu, sigma_vox, rng)
    phases = np.clip(np.rint(noisy), HU_STORED_MIN, HU_STORED_MAX).astype(np.float32)
    return phases, phases.mean(axis=0, dtype=np.float64).astype(np.float32)
