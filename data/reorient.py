"""A NIfTI file with its voxels stored in another order, losslessly.

Only the order of the voxels changes (flips and permutations, see :mod:`data.voxel_grid`): the
stored raw values, their on-disk type, ``scl_slope``/``scl_inter`` and header extensions are kept,
and the qform and sform (each with its code) move with the voxels, so every voxel keeps its HU
and its world position in mm.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from data.nifti_io import READ_ERRORS, check_voxel_size, file_proxy
from data.voxel_grid import reorder_transform
from util.errors import DataError


def has_world_geometry(header: nib.Nifti1Header) -> bool:
    """True when the header sets a qform or an sform (nonzero code), which a reordering can
    move with the voxels; without either, the affine is a guess made from ``pixdim``."""
    return int(header["qform_code"]) > 0 or int(header["sform_code"]) > 0


def _moved_axis(axis: int | None, transform: np.ndarray) -> int | None:
    """Where voxel axis ``axis`` (or None) ends up under ``transform``."""
    return None if axis is None else int(transform[axis, 0])


def reoriented_image(path: Path, from_axcodes: str, to_axcodes: str) -> nib.Nifti1Image:
    """The image at ``path`` (stored ``from_axcodes``) with its voxels in ``to_axcodes`` order.

    Raw values are reordered without scaling; ``pixdim``, ``dim_info``, qform and sform follow
    the axes. DataError naming the file when it cannot be read, has no qform/sform, or a
    voxel size of 0 that nibabel would turn into 1 mm (:func:`data.nifti_io.check_voxel_size`).
    """
    try:
        img = nib.load(path)
    except READ_ERRORS as exc:
        raise DataError(f"{path}: cannot be read for reordering ({exc})") from exc
    if not isinstance(img, nib.Nifti1Image):  # NIfTI-2 images are a subclass
        raise DataError(f"{path}: expected a NIfTI image, got {type(img).__name__}")
    check_voxel_size(path, img)
    proxy = file_proxy(path, img)
    try:
        raw = np.asanyarray(proxy.get_unscaled())
    except READ_ERRORS as exc:
        raise DataError(f"{path}: cannot be read for reordering ({exc})") from exc
    header = img.header
    if not has_world_geometry(header):
        raise DataError(f"{path}: has neither a qform nor an sform, so its voxels cannot be "
                        f"reordered with their world positions")
    transform = reorder_transform(from_axcodes, to_axcodes)
    shape3 = img.shape[:3]
    to_old = nib.orientations.inv_ornt_aff(transform, shape3)
    out = type(img)(nib.orientations.apply_orientation(raw, transform), None, header.copy())
    zooms = np.array(header.get_zooms(), dtype=np.float64)
    zooms[:3] = zooms[:3][np.argsort(transform[:, 0])]
    out.header.set_zooms(tuple(zooms))
    out.header.set_dim_info(*(_moved_axis(a, transform) for a in header.get_dim_info()))
    for getter, setter in ((header.get_qform, out.set_qform), (header.get_sform, out.set_sform)):
        affine, code = getter(coded=True)
        setter(None if affine is None else affine @ to_old, code=int(code))
    out.header.set_slope_inter(float(proxy.slope), float(proxy.inter))
    return out


def reoriented_bytes(path: str | os.PathLike[str], from_axcodes: str, to_axcodes: str) -> bytes:
    """Uncompressed single-file NIfTI bytes of :func:`reoriented_image`; the same input always
    gives the same bytes."""
    return reoriented_image(Path(path), from_axcodes, to_axcodes).to_bytes()
