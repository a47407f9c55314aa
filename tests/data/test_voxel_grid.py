"""data.voxel_grid: one world grid in another voxel order, and what differs when it is not."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from data.nifti_io import VolumeInfo
from data.voxel_grid import (
    axcodes,
    compare_grids,
    mismatch_text,
    reorder_transform,
    reordered_grid,
)
from tests.conftest import LPS_AFFINE, OBLIQUE_AFFINE

SHAPE = (8, 6, 5)


def _info(affine: np.ndarray, shape: tuple[int, int, int] = SHAPE,
          codes: str | None = None) -> VolumeInfo:
    """A grid, optionally stored in ``codes`` voxel order (the same world grid)."""
    if codes is not None:
        shape, affine = reordered_grid(shape, affine, reorder_transform(axcodes(affine), codes))
    return VolumeInfo(path=Path(f"{codes or 'ref'}.nii.gz"), shape=shape, affine=affine,
                      header=nib.Nifti1Header())


@pytest.mark.parametrize("affine", [LPS_AFFINE, OBLIQUE_AFFINE])
@pytest.mark.parametrize("codes", ["RAS", "SLA", "IPR"])
def test_same_world_grid_in_another_order_matches_after_reordering(affine: np.ndarray,
                                                                   codes: str) -> None:
    match = compare_grids(_info(affine), _info(affine, codes=codes), 1e-3)
    assert match.differences == ()
    assert (match.from_axcodes, match.to_axcodes) == (codes, axcodes(affine))
    assert match.reordered


def test_identical_grid_needs_no_reordering() -> None:
    match = compare_grids(_info(LPS_AFFINE), _info(LPS_AFFINE.copy()), 1e-3)
    assert (match.differences, match.reordered) == ((), False)


def _changed(spacing: float = 0.9, shift: float = 0.0, slices: int = 5,
             tilt_deg: float = 0.0) -> tuple[np.ndarray, tuple[int, int, int]]:
    affine = LPS_AFFINE.copy()
    affine[:2, :2] *= spacing / 0.9
    affine[0, 3] += shift
    if tilt_deg:
        affine[:3, :3] = nib.eulerangles.euler2mat(0, 0, np.radians(tilt_deg)) @ affine[:3, :3]
    return affine, (8, 6, slices)


@pytest.mark.parametrize(("change", "expected"), [
    ({"spacing": 1.0}, "voxel spacing 0.9 x 0.9 x 3.0 mm vs 1.0 x 1.0 x 3.0 mm"),
    ({"spacing": 0.90001}, "voxel spacing 0.9 x 0.9 x 3.0 mm vs 0.90001 x 0.90001 x 3.0 mm"),
    ({"shift": -12.0}, "origin differs by 12.0 mm"),
    ({"slices": 4}, "shapes differ, (8, 6, 5) vs (8, 6, 4)"),
    ({"tilt_deg": 2.0}, "voxel axes point in other directions (up to 2.0 deg apart)"),
    ({"spacing": 1.0, "shift": 3.0}, "voxel spacing 0.9 x 0.9 x 3.0 mm vs 1.0 x 1.0 x 3.0 mm; "
                                     "origin differs by 3.0 mm"),
])
@pytest.mark.parametrize("codes", [None, "RAS", "SLA"])
def test_real_mismatch_says_what_differs(change: dict, expected: str, codes: str | None) -> None:
    affine, shape = _changed(**change)
    match = compare_grids(_info(LPS_AFFINE), _info(affine, shape, codes), 1e-6)
    text = mismatch_text(match, 1e-6)
    assert text.startswith(f"{expected} (tolerance 1e-06 mm")
    if codes is None:
        assert text.endswith("(tolerance 1e-06 mm)")
    else:
        assert text.endswith(f"; the second file compared in the first file's voxel order "
                             f"({codes} -> LPS))")

