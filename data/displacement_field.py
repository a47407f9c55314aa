"""Displacement fields as NIfTI files that 3D Slicer and ITK open as transforms.

What the file says, for the physicist who opens it:

- ``u(x)`` is a vector in millimetres, given for every voxel x of the AVG's grid (same shape
  and affine as the AVG file), along the RAS world axes of every NIfTI affine: +x towards the
  patient's Right, +y Anterior, +z Superior.
- Sign: the point at x in phase 0 was at ``x + u(x)`` in the AVG, so phase 0 is the AVG
  resampled through the field: ``phase0(x) = AVG(x + u(x))``. A diaphragm that sits 10 mm
  lower (inferior) in phase 0 than in the AVG has u = (0, 0, +10) mm there.
- The file is a NIfTI-1 image of shape (I, J, K, 1, 3), float32, intent code 1006
  (NIFTI_INTENT_DISPVECT) named "displacement", the AVG's affine as both sform and qform, units
  mm; its ``descrip`` repeats the convention ("u mm RAS; phase0(x)=AVG(x+u)").
- 3D Slicer (since 5.4, Slicer PR #6799) loads it as a grid transform (a displacement field
  "from parent", i.e. a resampling transform): applied to the AVG volume and hardened, it
  resamples the AVG into phase 0. ITK >= 5.3.1 (ITK PR #3884) and SimpleITK 2.5 read the same
  file and turn the vectors into LPS (x and y negated), which is what
  ``sitk.DisplacementFieldTransform`` expects; ``sitk.Resample(avg, avg, transform)`` then gives
  phase 0. ITK refuses grids whose axes are not orthogonal (gantry-tilt shear), for this file
  as for the AVG itself.

Networks predict displacements in the slice-stack frame of :mod:`util.geometry` (voxels along
S, H, W); :func:`stack_field_to_world` turns them into this file's vectors and
:func:`world_to_stack_field` back.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from data.nifti_io import READ_ERRORS, VolumeInfo, check_voxel_size
from util.atomic import atomic_path
from util.errors import DataError
from util.geometry import from_slice_stack, stack_affine, to_slice_stack

logger = logging.getLogger(__name__)

#: NIFTI_INTENT_DISPVECT: a displacement vector per voxel.
INTENT_DISPVECT = 1006
INTENT_NAME = "displacement"
#: The convention, as the file's 80-character ``descrip`` states it.
DESCRIP = "u mm RAS; phase0(x)=AVG(x+u)"
#: NIFTI_XFORM_SCANNER_ANAT, for a source whose sform/qform code is unset.
XFORM_SCANNER = 1


def _voxel_shape(stack_shape: tuple[int, ...], affine: np.ndarray) -> tuple[int, int, int]:
    """(I, J, K) of the volume whose slice stack has ``stack_shape`` = (S, H, W)."""
    i, j, k = from_slice_stack(np.empty(stack_shape, dtype=np.uint8), affine).shape
    return i, j, k


def stack_field_to_world(field_vox: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Stack-frame displacement -> the file's vectors.

    field_vox: (3, S, H, W) displacement in stack voxels along (S, H, W) (+1 in component 0 =
    one slice superior); affine: (4, 4) voxel -> RAS mm of the volume -> (I, J, K, 3) float32
    RAS mm in the affine's voxel order, each vector ``stack_affine[:3, :3] @ (dS, dH, dW)``.
    """
    field_vox = np.asarray(field_vox)
    if field_vox.ndim != 4 or field_vox.shape[0] != 3:
        raise ValueError(f"stack-frame field must be (3, S, H, W), not {field_vox.shape}")
    steps_mm = stack_affine(affine, _voxel_shape(field_vox.shape[1:], affine))[:3, :3]
    world = np.einsum("ij,jshw->ishw", steps_mm, field_vox.astype(np.float64))
    in_voxel_order = [from_slice_stack(world[c], affine) for c in range(3)]
    return np.ascontiguousarray(np.stack(in_voxel_order, axis=-1), dtype=np.float32)


def world_to_stack_field(field_ras_mm: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Inverse of :func:`stack_field_to_world`: (I, J, K, 3) RAS mm in voxel order -> (3, S, H,
    W) float32 displacement in stack voxels along (S, H, W)."""
    field_ras_mm = np.asarray(field_ras_mm)
    if field_ras_mm.ndim != 4 or field_ras_mm.shape[-1] != 3:
        raise ValueError(f"world field must be (I, J, K, 3), not {field_ras_mm.shape}")
    shape = (field_ras_mm.shape[0], field_ras_mm.shape[1], field_ras_mm.shape[2])
    steps_mm = stack_affine(affine, shape)[:3, :3]
    vox = np.einsum("ij,xyzj->ixyz", np.linalg.inv(steps_mm), field_ras_mm.astype(np.float64))
    return np.ascontiguousarray(np.stack([to_slice_stack(vox[c], affine) for c in range(3)]),
                                dtype=np.float32)


def _xform_code(code: int | None) -> int:
    """The source's sform/qform code, or scanner coordinates when it has none."""
    return int(code) if code else XFORM_SCANNER


def write_displacement_field(path: str | os.PathLike[str], field_ras_mm: np.ndarray,
                             like: VolumeInfo) -> Path:
    """Write ``field_ras_mm`` ((I, J, K, 3) mm, RAS, ``like``'s voxel order and shape) as a
    displacement-field NIfTI on ``like``'s grid (see the module docstring); atomic. ValueError
    when the field's shape does not fit ``like``."""
    field = np.asarray(field_ras_mm)
    if field.ndim != 4 or field.shape[-1] != 3 or field.shape[:3] != like.shape:
        raise ValueError(f"{path}: field must be {(*like.shape, 3)} (the grid of {like.path} "
                         f"with 3 vector components), not {field.shape}")
    data = np.ascontiguousarray(field, dtype=np.float32)[:, :, :, None, :]
    img = nib.Nifti1Image(data, like.affine)
    _, sform_code = like.header.get_sform(coded=True)
    _, qform_code = like.header.get_qform(coded=True)
    img.set_sform(like.affine, _xform_code(sform_code))
    img.set_qform(like.affine, _xform_code(qform_code))
    header = img.header
    header.set_intent(INTENT_DISPVECT, (), name=INTENT_NAME)
    header.set_xyzt_units(xyz="mm")
    header["descrip"] = DESCRIP.encode("ascii")
    suffix = ".nii.gz" if str(path).lower().endswith(".gz") else ".nii"
    with atomic_path(path, suffix=suffix) as tmp:
        nib.save(img, tmp)
    return Path(path)


def read_displacement_field(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """A displacement-field NIfTI -> ((I, J, K, 3) float32 RAS mm, (4, 4) affine voxel -> RAS
    mm). DataError naming the file when it is unreadable, not an (I, J, K, 1, 3) vector image
    with intent 1006, holds NaN/Inf, or has a zero voxel size and no sform."""
    path = Path(path)
    try:
        img = nib.load(path)
        if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
            raise DataError(f"{path}: expected a NIfTI displacement field, got "
                            f"{type(img).__name__}")
        check_voxel_size(path, img)
        shape = tuple(img.shape)
        if len(shape) != 5 or shape[3:] != (1, 3):
            raise DataError(f"{path}: expected a displacement field of shape (I, J, K, 1, 3), "
                            f"got {shape}")
        code = int(img.header["intent_code"])
        if code != INTENT_DISPVECT:
            raise DataError(f"{path}: intent code {code}, not {INTENT_DISPVECT} "
                            f"(NIFTI_INTENT_DISPVECT): not a displacement field")
        field = np.asarray(img.get_fdata(dtype=np.float32))[:, :, :, 0, :]
    except DataError:
        raise
    except READ_ERRORS as exc:
        raise DataError(f"{path}: not a readable displacement-field NIfTI ({exc})") from exc
    if not np.isfinite(field).all():
        raise DataError(f"{path}: {int((~np.isfinite(field)).sum())} vector components are NaN "
                        f"or Inf")
    return np.ascontiguousarray(field), np.asarray(img.affine, dtype=np.float64)
