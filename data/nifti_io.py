"""NIfTI read/write that keeps Hounsfield units and the source geometry.

Reading applies the header's ``scl_slope``/``scl_inter`` and returns float32 HU together with the
affine and header; writing stores HU back in the source's on-disk type and scaling, so a volume
written from a source opens over it in 3D Slicer or ITK-SNAP with the same HU, shape and affine.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.arrayproxy import ArrayProxy
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from util.atomic import atomic_path
from util.errors import DataError
from util.geometry import voxel_spacing_mm

logger = logging.getLogger(__name__)

NIFTI_EXTENSIONS = (".nii.gz", ".nii")
#: Most voxels one volume may hold (4 GiB as float32): more is a corrupt header, not a CT.
MAX_VOXELS = 2**30
#: What nibabel and numpy raise on damaged files: headers that contradict themselves, data
#: types it cannot decode, sizes that overflow, data that ends early.
READ_ERRORS = (ImageFileError, HeaderDataError, OSError, EOFError, zlib.error, struct.error,
                ValueError, TypeError, IndexError, ArithmeticError, MemoryError)


@dataclass(frozen=True)
class VolumeInfo:
    """Where a volume came from and how it is stored, without its voxels.

    ``shape``: (I, J, K) voxels; ``affine``: (4, 4) voxel -> world (mm); ``header``: the source
    NIfTI header (on-disk type, ``scl_slope``/``scl_inter``); ``path``: the source file.
    """

    path: Path
    shape: tuple[int, int, int]
    affine: np.ndarray
    header: nib.Nifti1Header

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size along the three voxel axes, in mm, derived from the affine."""
        return voxel_spacing_mm(self.affine)


@dataclass(frozen=True)
class Volume:
    """A CT volume in HU with the geometry it was stored with.

    ``hu``: (I, J, K) float32 HU in voxel order; ``affine``: (4, 4) voxel -> world (mm);
    ``header``: the source NIfTI header (on-disk type and scaling); ``path``: where it was read.
    """

    hu: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header
    path: Path

    @property
    def info(self) -> VolumeInfo:
        """The volume's geometry and storage, without the voxels."""
        shape = (self.hu.shape[0], self.hu.shape[1], self.hu.shape[2])
        return VolumeInfo(path=self.path, shape=shape, affine=self.affine, header=self.header)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size along the three voxel axes, in mm, derived from the affine."""
        return voxel_spacing_mm(self.affine)


def is_nifti_file(path: str | os.PathLike[str]) -> bool:
    """True when the file name ends in ``.nii`` or ``.nii.gz`` (case-insensitive)."""
    return str(path).lower().endswith(NIFTI_EXTENSIONS)


def nifti_stem(path: str | os.PathLike[str]) -> str:
    """File name without its ``.nii``/``.nii.gz`` extension: ``"p01.nii.gz" -> "p01"``."""
    name = Path(path).name
    for ext in NIFTI_EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _open_image(path: Path) -> nib.Nifti1Image:
    """Open ``path`` as a NIfTI-1/2 image (header only) or raise :class:`DataError` naming it."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if not os.access(path, os.R_OK):
        raise DataError(f"{path}: file is not readable (permission denied)")
    try:
        img = nib.load(path)
    except READ_ERRORS as exc:
        raise DataError(f"{path}: not a readable NIfTI file ({exc})") from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise DataError(f"{path}: expected a NIfTI image, got {type(img).__name__}")
    return img


def file_proxy(path: Path, img: nib.Nifti1Image) -> ArrayProxy:
    """``img.dataobj`` as the proxy nibabel gives an image it opened from ``path``: the raw stored
    values and the ``scl_slope``/``scl_inter`` it resolved from the header (1 and 0 when unset)."""
    proxy = img.dataobj
    if not isinstance(proxy, ArrayProxy):
        raise RuntimeError(f"{path}: nibabel holds the voxel data as {type(proxy).__name__}, "
                           f"not as a file proxy that knows its scaling")
    return proxy


def _volume_shape(path: Path, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The 3-D shape of an image of ``shape``; a singleton 4th axis is accepted and dropped."""
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    elif len(shape) == 4:
        raise DataError(f"{path}: expected a 3-D volume, got a 4-D series of {shape[3]} frames "
                        f"(shape {shape}); export each phase as its own file")
    if len(shape) != 3:
        raise DataError(f"{path}: expected a 3-D volume, got shape {shape}")
    if min(shape) < 1:
        raise DataError(f"{path}: empty volume, shape {shape}")
    if int(np.prod(shape, dtype=np.int64)) > MAX_VOXELS:
        raise DataError(f"{path}: shape {shape} is more than {MAX_VOXELS} voxels; the header is "
                        f"probably corrupt")
    return (shape[0], shape[1], shape[2])


def _checked_affine(path: Path, img: nib.Nifti1Image) -> np.ndarray:
    """The image's (4, 4) voxel -> world affine (mm), or DataError when it has no usable
    3-D geometry (NaN/Inf entries, or a zero voxel size)."""
    affine = np.asarray(img.affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise DataError(f"{path}: the voxel-to-world affine (qform/sform, pixdim) holds NaN or "
                        f"Inf values")
    if not abs(np.linalg.det(affine[:3, :3])) > 1e-12:
        raise DataError(f"{path}: the voxel-to-world affine is singular (a voxel size of 0 in "
                        f"pixdim, qform or sform?), so the volume has no 3-D geometry")
    return affine


def read_geometry(path: str | os.PathLike[str]) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape (I, J, K) and (4, 4) affine of a NIfTI file, from its header alone (no voxel data)."""
    path = Path(path)
    img = _open_image(path)
    return _volume_shape(path, img.shape), _checked_affine(path, img)


def read_info(path: str | os.PathLike[str]) -> VolumeInfo:
    """A NIfTI file's :class:`VolumeInfo` (shape, affine, header with its scaling) from the header
    alone, without reading voxels; DataError naming the file when it is not a 3-D NIfTI."""
    path = Path(path)
    img = _open_image(path)
    proxy = file_proxy(path, img)
    header = img.header.copy()
    header.set_slope_inter(float(proxy.slope), float(proxy.inter))
    return VolumeInfo(path=path, shape=_volume_shape(path, img.shape),
                      affine=np.asarray(img.affine, dtype=np.float64), header=header)


def load_volume(path: str | os.PathLike[str]) -> Volume:
    """Read a NIfTI CT volume as float32 HU (header scaling applied) with its affine and header.

    Raises :class:`DataError` naming the file when it is missing, unreadable, truncated, not 3-D
    (a 4-D file with one frame is accepted), holds NaN/Inf voxels or has no usable affine.
    """
    path = Path(path)
    img = _open_image(path)
    shape = _volume_shape(path, img.shape)
    affine = _checked_affine(path, img)
    try:
        hu = np.asarray(img.get_fdata(dtype=np.float32)).reshape(shape)
    except READ_ERRORS as exc:
        raise DataError(f"{path}: voxel data could not be read, the file may be truncated "
                        f"or corrupt ({exc})") from exc
    if not np.isfinite(hu).all():
        raise DataError(f"{path}: {int((~np.isfinite(hu)).sum())} voxels are NaN or Inf")
    proxy = file_proxy(path, img)
    header = img.header.copy()
    header.set_slope_inter(float(proxy.slope), float(proxy.inter))
    return Volume(hu=hu, affine=affine, header=header, path=path)


def _to_storage(hu: np.ndarray, header: nib.Nifti1Header) -> np.ndarray:
    """HU -> the raw values the header's type and scaling store them as (rounded and clipped)."""
    dtype = np.dtype(header.get_data_dtype())
    if dtype.kind == "f":
        return hu.astype(dtype)
    slope, inter = header.get_slope_inter()
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    raw = np.rint((hu.astype(np.float64) - inter) / slope)
    info = np.iinfo(dtype)
    return np.clip(raw, info.min, info.max).astype(dtype)


def save_volume(hu: np.ndarray, like: Volume | VolumeInfo, path: str | os.PathLike[str]) -> Path:
    """Write ``hu`` ((I, J, K) HU, the shape of ``like``) with ``like``'s affine and header.

    Integer sources keep their on-disk type and ``scl_slope``/``scl_inter`` (HU are rounded to
    that grid and clipped to its range); float sources are written as float HU. The write is
    atomic: ``path`` holds either its old content or the complete new file.
    """
    hu = np.asarray(hu)
    like = like.info if isinstance(like, Volume) else like
    if hu.shape != like.shape:
        raise DataError(f"{path}: volume shape {hu.shape} does not match the source "
                        f"{like.path} shape {like.shape}")
    header = like.header.copy()
    raw = _to_storage(hu, header)
    img = nib.Nifti1Image(raw, like.affine, header) if isinstance(header, nib.Nifti1Header) \
        else nib.Nifti2Image(raw, like.affine, header)
    if raw.dtype.kind != "f":
        img.header.set_slope_inter(*like.header.get_slope_inter())
    suffix = ".nii.gz" if str(path).lower().endswith(".gz") else ".nii"
    with atomic_path(path, suffix=suffix) as tmp:
        nib.save(img, tmp)
    return Path(path)
