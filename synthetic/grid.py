"""The voxel grid of the synthetic 4DCT: size, spacing, voxel order and affine.

The volume centre sits at a fixed, non-zero world position; the voxel order is LPS by default
(affine ``diag(-dx, -dy, dz)``) or RAS, and both describe the same physical phantom.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from util.errors import ConfigError

ORIENTATIONS = ("LPS", "RAS")

#: World position (RAS+, mm) of the volume centre: a non-zero origin, as scanners export.
_CENTRE_MM = np.array([1.5, -18.0, -142.0])


@dataclass(frozen=True)
class SyntheticGrid:
    """Voxel grid of the synthetic CT: ``size`` x ``size`` voxels over ``fov_mm``, then slices."""

    size: int = 64
    n_slices: int = 32
    fov_mm: float = 350.0
    slice_thickness_mm: float = 3.0
    orientation: str = "LPS"

    def __post_init__(self) -> None:
        if self.size < 8 or self.n_slices < 2:
            raise ConfigError(f"synthetic grid must be at least 8 x 8 x 2 voxels, "
                              f"got size={self.size}, n_slices={self.n_slices}")
        if not (self.fov_mm > 0 and self.slice_thickness_mm > 0):
            raise ConfigError(f"fov_mm and slice_thickness_mm must be > 0, "
                              f"got {self.fov_mm} and {self.slice_thickness_mm}")
        if self.orientation not in ORIENTATIONS:
            raise ConfigError(f"unknown orientation {self.orientation!r}; valid: {ORIENTATIONS}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """(I, J, K) voxel shape."""
        return (self.size, self.size, self.n_slices)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size (mm) along I, J, K."""
        return (self.fov_mm / self.size, self.fov_mm / self.size, self.slice_thickness_mm)

    def affine(self) -> np.ndarray:
        """(4, 4) voxel -> world (RAS+, mm): ``diag(-dx, -dy, dz)`` for LPS, ``diag(dx, dy, dz)``
        for RAS, centred on a fixed non-zero world point."""
        sign = (-1.0, -1.0, 1.0) if self.orientation == "LPS" else (1.0, 1.0, 1.0)
        linear = np.diag(np.array(sign) * np.array(self.spacing_mm))
        centre_vox = (np.array(self.shape, dtype=np.float64) - 1.0) / 2.0
        affine = np.eye(4)
        affine[:3, :3] = linear
        affine[:3, 3] = _CENTRE_MM - linear @ centre_vox
        return affine


#: The grid the synthetic 4DCT is written on unless told otherwise.
DEFAULT_GRID = SyntheticGrid()


def to_grid_order(arr: np.ndarray, grid: SyntheticGrid) -> np.ndarray:
    """(..., I, J, K) in LPS voxel order -> the grid's voxel order (a flip of I and J for RAS)."""
    if grid.orientation == "RAS":
        return np.ascontiguousarray(np.flip(arr, axis=(-3, -2)))
    return arr
