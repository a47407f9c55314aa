"""Volume <-> axial slice stack, with the source affine as the only record of the geometry.

Every volume is served to the network as a stack of axial slices in one canonical frame, whatever
its on-disk voxel order: axis 0 runs inferior -> superior, rows run anterior -> posterior and
columns run from the patient's right to left, so a slice displays as a radiologist expects
(patient's right on the left of the picture) and RAS- and LPS-stored patients look alike to the
model. The inverse restores the original voxel order exactly (only permutations and flips).
"""

from __future__ import annotations

import logging
import math

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

#: Axis codes of the slice stack (nibabel convention: the direction in which the index grows).
STACK_AXCODES = ("S", "P", "L")
_STACK_ORNT = nib.orientations.axcodes2ornt(STACK_AXCODES)


def _check_affine(affine: np.ndarray) -> np.ndarray:
    """Return ``affine`` as float64 or raise ValueError if it is not a (4, 4) invertible matrix."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be (4, 4), not {affine.shape}")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError("affine is singular: voxel axes do not span 3-D space")
    return affine


def _orientation(affine: np.ndarray) -> np.ndarray:
    """nibabel's (3, 2) orientation of the voxel axes (world axis, direction); ValueError when
    the axes cannot be matched one-to-one to the world axes (degenerate or ill-conditioned)."""
    ornt = nib.orientations.io_orientation(_check_affine(affine))
    if np.isnan(ornt).any():
        raise ValueError("the voxel axes cannot be matched to the three world axes (the affine "
                         "is degenerate or ill-conditioned)")
    return ornt


def axial_axis(affine: np.ndarray) -> int:
    """Index of the voxel axis closest to the patient's superior-inferior axis (world z)."""
    ornt = _orientation(affine)
    return int(np.flatnonzero(ornt[:, 0] == 2)[0])


def obliquity_deg(affine: np.ndarray) -> float:
    """Largest angle (degrees) between a voxel axis and the world axis it is matched to."""
    return float(np.degrees(np.max(nib.affines.obliquity(_check_affine(affine)))))


def _to_stack_transform(affine: np.ndarray) -> np.ndarray:
    """nibabel orientation transform from the volume's voxel order to the stack frame."""
    return nib.orientations.ornt_transform(_orientation(affine), _STACK_ORNT)


def to_slice_stack(vol: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Reorder a volume into axial slices in the canonical frame.

    vol: (I, J, K) in voxel order -> (S, H, W): S axial slices (inferior -> superior), each H rows
    (anterior -> posterior) by W columns (patient right -> left). A view where possible.
    """
    if vol.ndim != 3:
        raise ValueError(f"expected a 3-D volume, got shape {vol.shape}")
    return nib.orientations.apply_orientation(vol, _to_stack_transform(affine))


def from_slice_stack(stack: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_slice_stack`: (S, H, W) -> (I, J, K) in the affine's voxel order."""
    if stack.ndim != 3:
        raise ValueError(f"expected a 3-D slice stack, got shape {stack.shape}")
    back = nib.orientations.ornt_transform(_STACK_ORNT, _orientation(affine))
    return nib.orientations.apply_orientation(stack, back)


def stack_affine(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """(4, 4) float64 map from slice-stack indices (s, h, w, 1) to world RAS mm: the point of
    ``to_slice_stack(vol, affine)[s, h, w]``, the same as ``affine`` gives for that voxel's
    (i, j, k). ``shape``: the volume's (I, J, K) in voxel order (a reversed axis counts from its
    far end). Its 3 x 3 part holds the world step (mm) of one slice, one row and one column.
    """
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be 3 positive voxel counts, not {tuple(shape)}")
    stack_to_voxel = nib.orientations.inv_ornt_aff(_to_stack_transform(affine), shape)
    return _check_affine(affine) @ stack_to_voxel


def stack_shape(shape: tuple[int, int, int], affine: np.ndarray) -> tuple[int, int, int]:
    """(S, H, W) of the slice stack of a volume of voxel ``shape``, without touching voxels."""
    ornt = _orientation(affine)
    by_world = {int(w): shape[i] for i, (w, _) in enumerate(ornt)}
    return (by_world[2], by_world[1], by_world[0])


def voxel_spacing_mm(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along each voxel axis (I, J, K): the column norms of the (4, 4) affine
    (a singular affine is not refused here: its zero-length axis reads 0 mm)."""
    matrix = np.asarray(affine, dtype=np.float64)
    if matrix.shape != (4, 4):
        raise ValueError(f"affine must be (4, 4), not {matrix.shape}")
    sizes = np.linalg.norm(matrix[:3, :3], axis=0)
    return (float(sizes[0]), float(sizes[1]), float(sizes[2]))


def voxel_volume_ml(affine: np.ndarray) -> float:
    """Volume of one voxel in mL: |det| of the affine's 3 x 3 part (mm^3) / 1000, which is also
    right for a sheared grid (gantry tilt), where the product of the spacings is not."""
    return float(abs(np.linalg.det(_check_affine(affine)[:3, :3]))) / 1000.0


def stack_spacing_mm(affine: np.ndarray) -> tuple[float, float, float]:
    """(slice thickness, row spacing, column spacing) in mm of the stack of a volume."""
    sizes = nib.affines.voxel_sizes(_check_affine(affine))
    ornt = _orientation(affine)
    by_world = {int(w): float(sizes[i]) for i, (w, _) in enumerate(ornt)}
    return (by_world[2], by_world[1], by_world[0])


def resize_slices(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (N, C, H, W) float slices to (N, C, *size), in floating point.

    Used both ways (to ``--resize_to`` and back to the native size), so no 8-bit step ever
    touches the values.
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)


def unet_min_multiple(num_downs: int) -> int:
    """Side length that every slice must be a multiple of for a U-Net with ``num_downs`` levels."""
    return int(math.pow(2, num_downs))
