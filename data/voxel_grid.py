"""Do two volumes lie on one voxel grid, and if not, what differs?

Two files can hold the same world grid (the same voxel centres in mm) with their voxels stored in
another order: an AVG exported LPS and its phase 0 exported RAS, or with the axes permuted. Such
a pair is compared after bringing the second file's voxels into the first file's order (nibabel
orientation transforms: only flips and permutations, so no value changes). A real mismatch is
described by what differs (shape, voxel spacing, axis directions, origin) rather than by a raw
affine difference.

Axis codes follow nibabel: ``"LPS"`` means the first voxel index grows towards the patient's
left, the second towards posterior, the third towards superior.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np

from data.nifti_io import VolumeInfo

Shape = tuple[int, int, int]


@dataclass(frozen=True)
class GridMatch:
    """How a volume's grid relates to a reference grid.

    ``from_axcodes``/``to_axcodes``: the volume's and the reference's voxel order (equal when no
    reordering is needed); ``differences``: what still differs once reordered, each a phrase
    such as ``"origin differs by 12.0 mm"``; empty when both lie on one world grid.
    """

    from_axcodes: str
    to_axcodes: str
    differences: tuple[str, ...]

    @property
    def reordered(self) -> bool:
        """True when the volume's voxels must be reordered to match the reference's."""
        return self.from_axcodes != self.to_axcodes


def axcodes(affine: np.ndarray) -> str | None:
    """Voxel order of a (4, 4) affine as three nibabel axis codes (``"LPS"``), or None when its
    axes cannot be matched one-to-one to the world axes."""
    codes = nib.orientations.aff2axcodes(np.asarray(affine, dtype=np.float64))
    return None if None in codes else "".join(codes)


def reorder_transform(from_axcodes: str, to_axcodes: str) -> np.ndarray:
    """nibabel (3, 2) orientation transform taking voxels stored ``from_axcodes`` to
    ``to_axcodes`` order (for :func:`nibabel.orientations.apply_orientation`)."""
    return nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(tuple(from_axcodes)),
                                           nib.orientations.axcodes2ornt(tuple(to_axcodes)))


def reordered_grid(shape: Shape, affine: np.ndarray, transform: np.ndarray
                   ) -> tuple[Shape, np.ndarray]:
    """Shape (voxels) and (4, 4) affine (mm) of a volume after ``transform``: the same voxel
    centres in world space, indexed in the new order."""
    new_shape = [0, 0, 0]
    for axis, (new_axis, _flip) in enumerate(transform):
        new_shape[int(new_axis)] = shape[axis]
    to_old = nib.orientations.inv_ornt_aff(transform, shape)
    return (new_shape[0], new_shape[1], new_shape[2]), np.asarray(affine) @ to_old


def _number(value: float, digits: int = 4) -> str:
    """``value`` with ``digits`` significant digits, a whole number shown as ``3.0``."""
    text = f"{value:.{digits}g}"
    return text if any(c in text for c in ".en") else f"{text}.0"


def _spacing_text(ref_mm: np.ndarray, other_mm: np.ndarray) -> str:
    """``"0.9 x 0.9 x 3.0 mm vs 1.0 x 1.0 x 3.0 mm"``, with enough digits to tell them apart."""
    for digits in range(4, 12):
        texts = [" x ".join(_number(float(v), digits) for v in mm) for mm in (ref_mm, other_mm)]
        if texts[0] != texts[1]:
            break
    return f"{texts[0]} mm vs {texts[1]} mm"


def grid_differences(ref_shape: Shape, ref_affine: np.ndarray, shape: Shape,
                     affine: np.ndarray, atol_mm: float) -> list[str]:
    """What differs between two grids indexed in the same voxel order: shapes, voxel spacing,
    axis directions, origin (position of voxel (0, 0, 0)); empty when the shapes are equal and
    every affine entry agrees within ``atol_mm``."""
    ref_affine, affine = np.asarray(ref_affine, float), np.asarray(affine, float)
    shapes = [f"shapes differ, {ref_shape} vs {shape}"] if ref_shape != shape else []
    if np.allclose(ref_affine, affine, atol=atol_mm, rtol=0):
        return shapes
    return shapes + _affine_differences(ref_affine, affine, atol_mm)


def _affine_differences(ref_affine: np.ndarray, affine: np.ndarray, atol_mm: float) -> list[str]:
    """Which parts of two (4, 4) affines differ by more than ``atol_mm``: voxel spacing, axis
    directions, origin; the largest entry difference if no single part does."""
    found = []
    ref_mm, mm = nib.affines.voxel_sizes(ref_affine), nib.affines.voxel_sizes(affine)
    if np.abs(ref_mm - mm).max() > atol_mm:
        found.append(f"voxel spacing {_spacing_text(ref_mm, mm)}")
    ref_dirs, dirs = ref_affine[:3, :3] / ref_mm, affine[:3, :3] / mm
    if np.abs((ref_dirs - dirs) * ref_mm).max() > atol_mm:
        cosines = np.clip(np.sum(ref_dirs * dirs, axis=0), -1.0, 1.0)
        found.append(f"voxel axes point in other directions (up to "
                     f"{_number(float(np.degrees(np.arccos(cosines).max())), 3)} deg apart)")
    offset = ref_affine[:3, 3] - affine[:3, 3]
    if np.abs(offset).max() > atol_mm:
        found.append(f"origin differs by {_number(float(np.linalg.norm(offset)))} mm")
    return found or [f"affines differ by up to {_number(np.abs(ref_affine - affine).max())} mm"]


def compare_grids(ref: VolumeInfo, other: VolumeInfo, atol_mm: float) -> GridMatch:
    """Compare ``other``'s grid with ``ref``'s, in ``ref``'s voxel order (``other`` reordered
    when its voxel order differs); affines must agree entry by entry within ``atol_mm``."""
    ref_codes, codes = axcodes(ref.affine), axcodes(other.affine)
    same_order = grid_differences(ref.shape, ref.affine, other.shape, other.affine, atol_mm)
    if not same_order or ref_codes is None or codes is None or ref_codes == codes:
        order = ref_codes or "?"
        return GridMatch(order, order, tuple(same_order))
    shape, affine = reordered_grid(other.shape, other.affine, reorder_transform(codes, ref_codes))
    return GridMatch(codes, ref_codes, tuple(grid_differences(ref.shape, ref.affine, shape,
                                                              affine, atol_mm)))


def mismatch_text(match: GridMatch, atol_mm: float) -> str:
    """The differences of ``match`` as one phrase, with the tolerance and any reordering."""
    order = (f"; the second file compared in the first file's voxel order "
             f"({match.from_axcodes} -> {match.to_axcodes})" if match.reordered else "")
    return f"{'; '.join(match.differences)} (tolerance {atol_mm} mm{order})"
