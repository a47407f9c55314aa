"""NIfTI read/write that keeps Hounsfield units and the source geometry.

Reading applies the header's ``scl_slope``/``scl_inter`` and returns float32 HU together with the
affine and header; writing stores HU back in the source's on-disk type and scaling, so a volume
written from a source opens over it in 3D Slicer or ITK-SNAP with the same HU, shape and affine.
When the source's type cannot hold the HU written (an 8-bit source, a float16 one), the output is
widened (int16, int32, float32) with a warning; HU are never clipped to the source's range.

A file whose affine comes from ``pixdim`` (sform_code 0: from the qform, or from ``pixdim`` alone)
is refused when a voxel size ``pixdim[1..3]`` is 0 or not finite, rather than taking the 1 mm that
nibabel puts in its place on load; a valid sform (sform_code > 0) gives the geometry on its own,
so such a file is read whatever its ``pixdim``.
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
from nibabel.openers import ImageOpener
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
#: Integer types an output is widened to, narrowest first, when its source's type cannot hold it.
WIDER_INT_DTYPES = (np.dtype(np.int16), np.dtype(np.int32))
#: The float type an output is widened to when no integer type on the source's scaling holds it,
#: or when the source is a float narrower than this (float16 keeps whole HU only up to 2048).
WIDE_FLOAT_DTYPE = np.dtype(np.float32)


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


def _stored_header(path: Path, img: nib.Nifti1Image) -> nib.Nifti1Header:
    """The header of ``img`` (opened from the single file ``path``) as the file stores it,
    without the fixes nibabel makes on load (a zero ``pixdim[1..3]`` set to 1, negative ones
    made positive)."""
    try:
        with ImageOpener(str(path)) as fileobj:
            return type(img.header).from_fileobj(fileobj, check=False)
    except READ_ERRORS as exc:
        raise DataError(f"{path}: not a readable NIfTI header ({exc})") from exc


def _unusable_voxel_sizes(path: Path, img: nib.Nifti1Image) -> list[tuple[int, float]]:
    """(axis 1..3, size in mm) of each ``pixdim[1..3]`` that the file stores as 0 or not finite;
    nibabel's loaded header shows such a 0 as 1, so that is the only value read again."""
    loaded = np.asarray(img.header["pixdim"][1:4], dtype=np.float64)
    if np.isfinite(loaded).all() and not (loaded == 1).any():
        return []
    pixdim = np.asarray(_stored_header(path, img)["pixdim"], dtype=np.float64)
    return [(axis, float(pixdim[axis])) for axis in (1, 2, 3)
            if not np.isfinite(pixdim[axis]) or pixdim[axis] == 0]


def check_voxel_size(path: Path, img: nib.Nifti1Image) -> None:
    """DataError naming ``path`` when the affine nibabel gives ``img`` is built from ``pixdim``
    (sform_code 0, with or without a qform) and the file's voxel size (``pixdim[1..3]``, mm)
    along an axis is 0 or not finite. A file with an sform (sform_code > 0) passes: its affine
    does not use ``pixdim``, and :func:`_checked_affine` checks it."""
    if int(img.header["sform_code"]) != 0:  # nibabel's choice, after it zeroed invalid codes
        return
    for axis, size_mm in _unusable_voxel_sizes(path, img):
        where = ("the qform (quaternion and pixdim)" if int(img.header["qform_code"]) != 0
                 else "pixdim alone (qform_code and sform_code are 0)")
        raise DataError(f"{path}: the voxel size along axis {'IJK'[axis - 1]} (pixdim[{axis}]) "
                        f"is {size_mm:g}; the affine would come from {where}, with no sform to "
                        f"give it instead, so the file has no usable geometry (no voxel size "
                        f"is assumed)")


def _source_header(path: Path, img: nib.Nifti1Image, affine: np.ndarray) -> nib.Nifti1Header:
    """A copy of ``img``'s header with the scaling nibabel resolved (1 and 0 when unset). When
    the sform gives ``affine`` but the file's pixdim holds a 0 (which nibabel made 1 mm), the
    pixdim and qform are set from ``affine``, so files written with this header carry no
    invented voxel size."""
    proxy = file_proxy(path, img)
    header = img.header.copy()
    header.set_slope_inter(float(proxy.slope), float(proxy.inter))
    if int(header["sform_code"]) != 0 and _unusable_voxel_sizes(path, img):
        logger.warning("%s: pixdim holds a voxel size of 0; the geometry is taken from the "
                       "sform (voxel sizes %s mm)", path,
                       ", ".join(f"{v:.4g}" for v in voxel_spacing_mm(affine)))
        header.set_qform(affine, code=int(header["qform_code"]))
    return header


def _checked_affine(path: Path, img: nib.Nifti1Image) -> np.ndarray:
    """The image's (4, 4) voxel -> world affine (mm), or DataError when it has no usable
    3-D geometry (NaN/Inf entries, a zero voxel size in the affine or in the ``pixdim`` it is
    built from, see :func:`check_voxel_size`)."""
    check_voxel_size(path, img)
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
    alone, without reading voxels; DataError naming the file when it is not a 3-D NIfTI or has
    no usable affine (as :func:`load_volume`)."""
    path = Path(path)
    img = _open_image(path)
    shape = _volume_shape(path, img.shape)
    affine = _checked_affine(path, img)
    return VolumeInfo(path=path, shape=shape, affine=affine,
                      header=_source_header(path, img, affine))


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
    return Volume(hu=hu, affine=affine, header=_source_header(path, img, affine), path=path)


def _header_scaling(header: nib.Nifti1Header) -> tuple[float, float]:
    """The header's (scl_slope, scl_inter), with 1 and 0 for unset, zero or non-finite ones."""
    slope, inter = header.get_slope_inter()
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    return slope, inter


def _raw_values(hu: np.ndarray, slope: float, inter: float) -> np.ndarray:
    """HU -> raw values on the grid ``raw * slope + inter``, rounded; float64, any shape."""
    return np.rint((hu.astype(np.float64) - inter) / slope)


def _holds(raw: np.ndarray, dtype: np.dtype) -> bool:
    """True when every value of ``raw`` (float64) lies in the integer type's range (False
    for NaN)."""
    info = np.iinfo(dtype)
    return bool(raw.size) and float(raw.min()) >= info.min and float(raw.max()) <= info.max


def storage_dtype(hu: np.ndarray, header: nib.Nifti1Header) -> np.dtype:
    """The on-disk type that holds ``hu`` (any shape, HU) on ``header``'s scaling: the header's
    own type when it can; else the narrowest of int16, int32 on the same ``scl_slope``/
    ``scl_inter``; else float32 (HU as they are). float16 sources become float32."""
    dtype = np.dtype(header.get_data_dtype())
    if dtype.kind == "f":
        return dtype if dtype.itemsize >= WIDE_FLOAT_DTYPE.itemsize else WIDE_FLOAT_DTYPE
    if dtype.kind not in "iu":
        return WIDE_FLOAT_DTYPE
    raw = _raw_values(hu, *_header_scaling(header))
    for candidate in (dtype, *WIDER_INT_DTYPES):
        if _holds(raw, candidate):
            return candidate
    return WIDE_FLOAT_DTYPE


def _to_storage(hu: np.ndarray, dtype: np.dtype, header: nib.Nifti1Header) -> np.ndarray:
    """HU -> the raw values ``dtype`` stores them as: float HU for a float type, else rounded
    on ``header``'s scaling (``dtype`` from :func:`storage_dtype`, so nothing is clipped)."""
    if dtype.kind == "f":
        return hu.astype(dtype)
    return _raw_values(hu, *_header_scaling(header)).astype(dtype)


def _warn_widened(path: str | os.PathLike[str], like: VolumeInfo, hu: np.ndarray,
                  chosen: np.dtype) -> None:
    """Say in the log that ``path`` is stored as ``chosen``, not as its source's type."""
    source = np.dtype(like.header.get_data_dtype())
    slope, inter = _header_scaling(like.header)
    low, high = (float(hu.min()), float(hu.max())) if hu.size else (0.0, 0.0)
    logger.warning("%s: HU %.6g..%.6g do not fit the source %s's storage %s (scl_slope %g, "
                   "scl_inter %g); written as %s instead", path, low, high, like.path,
                   source.name, slope, inter, chosen.name)


def save_volume(hu: np.ndarray, like: Volume | VolumeInfo, path: str | os.PathLike[str]) -> Path:
    """Write ``hu`` ((I, J, K) HU, the shape of ``like``) with ``like``'s affine and header.

    Integer sources keep their on-disk type and ``scl_slope``/``scl_inter`` (HU are rounded to
    that grid); float sources are written as float HU. When the source's type cannot hold the
    HU (see :func:`storage_dtype`), a wider one is written and a warning names ``path``, the
    source's type and the chosen one; nothing is clipped. The write is atomic: ``path`` holds
    either its old content or the complete new file.
    """
    hu = np.asarray(hu)
    like = like.info if isinstance(like, Volume) else like
    if hu.shape != like.shape:
        raise DataError(f"{path}: volume shape {hu.shape} does not match the source "
                        f"{like.path} shape {like.shape}")
    header = like.header.copy()
    dtype = storage_dtype(hu, header)
    if dtype != np.dtype(header.get_data_dtype()):
        _warn_widened(path, like, hu, dtype)
        header.set_data_dtype(dtype)
    raw = _to_storage(hu, dtype, like.header)
    img = nib.Nifti1Image(raw, like.affine, header) if isinstance(header, nib.Nifti1Header) \
        else nib.Nifti2Image(raw, like.affine, header)
    if raw.dtype.kind != "f":
        img.header.set_slope_inter(*like.header.get_slope_inter())
    suffix = ".nii.gz" if str(path).lower().endswith(".gz") else ".nii"
    with atomic_path(path, suffix=suffix) as tmp:
        nib.save(img, tmp)
    return Path(path)
