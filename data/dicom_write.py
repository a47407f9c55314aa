"""DICOM CT series out: a volume in HU written slice by slice on a source series' geometry.

:func:`write_derived_series` writes a synthetic phase 0 so that a planning system files it beside
its source: same patient, study and frame of reference, new Series and SOP Instance UIDs (checked
against the source's), ImageType ``DERIVED\\SECONDARY``, a SeriesDescription that says it is
synthetic and from which model, every slice at its source slice's position, and pixels in the
source's stored type with its rescale per slice. HU are never clipped: when the source's stored
range cannot hold them (8-bit storage, unsigned storage with intercept 0 and negative HU), the
series is written as 16-bit signed (BitsStored 16) with the same rescale, or with rescale 1/0
when even that cannot hold them, and a warning says so. :func:`write_series` is the general
writer, also used for the synthetic 4DCT (:mod:`synthetic.dicom_export`).

Files are ``CT_0001.dcm`` ... in K order (ascending along the slice normal), Explicit VR Little
Endian. The series is written into a temp folder beside ``out_folder`` and renamed onto it when
complete; an existing non-empty ``out_folder`` is refused unless ``overwrite``.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from data.dicom_io import TILT_TOLERANCE_DEG, DicomSource, PixelStorage, SeriesGeometry
from util.atomic import current_umask, make_dirs, sync_file
from util.errors import DataError, OutputError

logger = logging.getLogger(__name__)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
DERIVED_IMAGE_TYPE = ("DERIVED", "SECONDARY")
#: Longest SeriesDescription (VR LO).
_LO_MAX = 64
#: Attempts at a UID that is none of the source's before giving up (one is all it takes).
_UID_TRIES = 100
#: What a derived series adds to its source's SeriesNumber when none is given (phase 0).
DERIVED_SERIES_OFFSET = 1000
#: Type 2 tags a CT image must carry, empty when the source has none.
_TYPE2_DEFAULTS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                   "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
                   "PositionReferenceIndicator", "Manufacturer", "KVP", "AcquisitionNumber")


def _ds(value: float) -> str:
    """A decimal string (VR DS, at most 16 characters) for ``value``."""
    return format_number_as_ds(float(value))


def geometry_from_affine(affine: np.ndarray, shape: tuple[int, int, int],
                         slice_thickness_mm: float | None = None) -> SeriesGeometry:
    """The DICOM geometry of a volume whose K axis is its slice axis: affine (4, 4) voxel
    (I, J, K) -> RAS mm, ``shape`` (I, J, K) -> IOP from the I and J axes, one IPP per slice.

    DataError when I and J are not orthogonal, or K is not along their normal ``r x c`` (a
    tilted or reversed stack, which a reader would reorder).
    """
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, dtype=np.float64)
    size_i, size_j = np.linalg.norm(lps[:3, 0]), np.linalg.norm(lps[:3, 1])
    row, col = lps[:3, 0] / size_i, lps[:3, 1] / size_j
    if abs(row @ col) > 1e-6:
        raise DataError(f"affine {affine.tolist()}: voxel axes I and J are not orthogonal; a "
                        f"DICOM slice needs a rectangular pixel grid")
    step = lps[:3, 2]
    along = float(step @ np.cross(row, col))
    cosine = min(1.0, along / float(np.linalg.norm(step)))
    if along <= 0 or float(np.degrees(np.arccos(cosine))) > TILT_TOLERANCE_DEG:
        raise DataError(f"affine {affine.tolist()}: the slice axis K is not along I x J "
                        f"(tilted or reversed), so slices would be read back in another order")
    points = [lps[:3, 3] + k * step for k in range(shape[2])]
    positions = tuple((float(p[0]), float(p[1]), float(p[2])) for p in points)
    return SeriesGeometry(orientation=tuple(float(v) for v in (*row, *col)),
                          positions_mm=positions,
                          pixel_spacing_mm=(float(size_j), float(size_i)), rows=shape[1],
                          columns=shape[0],
                          slice_thickness_mm=slice_thickness_mm if slice_thickness_mm
                          is not None else along)


def stored_slice(hu: np.ndarray, storage: PixelStorage, rescale: tuple[float, float]
                 ) -> np.ndarray:
    """HU -> stored values: ``hu`` (any shape) rounded on the rescale grid, in
    ``storage.dtype``. The caller has checked that they fit (:func:`fitting_storage`)."""
    slope, inter = rescale
    return np.rint((hu.astype(np.float64) - inter) / slope).astype(storage.dtype)


def _holds(hu: np.ndarray, storage: PixelStorage) -> bool:
    """True when every slice of ``hu`` ((I, J, K) HU) rounded on its rescale lies within
    ``storage``'s stored range."""
    lowest, highest = storage.stored_range
    for k, (slope, inter) in enumerate(storage.rescale):
        raw = np.rint((hu[:, :, k].astype(np.float64) - inter) / slope)
        if float(raw.min()) < lowest or float(raw.max()) > highest:
            return False
    return True


def fitting_storage(hu: np.ndarray, storage: PixelStorage, where: Path) -> PixelStorage:
    """The storage to write ``hu`` ((I, J, K) finite HU) in: ``storage`` when its stored range
    holds every voxel; else 16-bit signed (BitsStored 16) with the same rescale per slice; else
    16-bit signed with rescale 1/0 (whole HU). A warning naming ``where`` says when it widens;
    DataError when HU lie outside -32768..32767."""
    if _holds(hu, storage):
        return storage
    same_rescale = PixelStorage(16, 16, 1, storage.rescale)
    whole_hu = PixelStorage(16, 16, 1, ((1.0, 0.0),) * len(storage.rescale))
    for wider, how in ((same_rescale, "the same rescale"), (whole_hu, "rescale slope 1, "
                                                            "intercept 0")):
        if _holds(hu, wider):
            lowest, highest = storage.stored_range
            logger.warning("%s: HU %.6g..%.6g do not fit the source's stored range %d..%d "
                           "(BitsAllocated %d, BitsStored %d, %s) on its rescale; written as "
                           "16-bit signed (BitsStored 16) with %s instead", where,
                           float(hu.min()), float(hu.max()), lowest, highest,
                           storage.bits_allocated, storage.bits_stored,
                           "signed" if storage.pixel_representation == 1 else "unsigned", how)
            return wider
    raise DataError(f"{where}: HU {float(hu.min()):.6g}..{float(hu.max()):.6g} do not fit a "
                    f"16-bit DICOM series on any rescale; nothing written")


def new_uids(count: int, taken: set[str]) -> list[str]:
    """``count`` new UIDs (pydicom's random UIDs), none in ``taken`` nor equal to another."""
    uids: list[str] = []
    for _ in range(count):
        for _try in range(_UID_TRIES):
            uid = str(generate_uid())
            if uid not in taken and uid not in uids:
                uids.append(uid)
                break
        else:
            raise RuntimeError(f"no new UID after {_UID_TRIES} tries: the generator repeats "
                               f"UIDs of the source")
    return uids


def _check_out_folder(out_folder: Path, overwrite: bool) -> None:
    """OutputError unless ``out_folder`` is absent, an empty folder, or may be replaced."""
    if out_folder.is_symlink() or (out_folder.exists() and not out_folder.is_dir()):
        raise OutputError(f"{out_folder}: exists and is not a folder; nothing written")
    if out_folder.is_dir() and any(out_folder.iterdir()) and not overwrite:
        raise OutputError(f"{out_folder}: the folder exists and is not empty; refusing to "
                          f"replace it (move it away, or ask to overwrite)")


def _slice_dataset(series_tags: Dataset, geometry: SeriesGeometry, k: int, sop_uid: str,
                   rescale: tuple[float, float]) -> Dataset:
    """Header of slice ``k``: the series tags plus its UID, number, position and rescale."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(CT_IMAGE_STORAGE)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.update(copy.deepcopy(series_tags))
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = [_ds(v) for v in geometry.positions_mm[k]]
    ds.ImageOrientationPatient = [_ds(v) for v in geometry.orientation]
    ds.PixelSpacing = [_ds(v) for v in geometry.pixel_spacing_mm]
    if geometry.slice_thickness_mm is not None:
        ds.SliceThickness = _ds(geometry.slice_thickness_mm)
    ds.RescaleSlope, ds.RescaleIntercept = _ds(rescale[0]), _ds(rescale[1])
    ds.RescaleType = "HU"
    return ds


def _commit(tmp: Path, out_folder: Path) -> None:
    """Move the complete temp folder onto ``out_folder`` (an old one is set aside first and
    removed after)."""
    old = None
    if out_folder.is_dir() and any(out_folder.iterdir()):
        old = Path(tempfile.mkdtemp(prefix=f".{out_folder.name}.", suffix=".old",
                                    dir=out_folder.parent))
        os.replace(out_folder, old / out_folder.name)
    os.replace(tmp, out_folder)
    sync_file(out_folder.parent)
    if old is not None:
        shutil.rmtree(old)


def write_series(hu: np.ndarray, geometry: SeriesGeometry, storage: PixelStorage,
                 series_tags: Dataset, sop_uids: Sequence[str], out_folder: str | os.PathLike[str],
                 *, source_sops: Sequence[tuple[str, str]] | None = None,
                 overwrite: bool = False) -> Path:
    """Write ``hu`` ((I, J, K) HU, ``geometry.shape``) as one CT file per slice.

    ``series_tags``: patient, study, frame of reference and series tags common to every slice;
    ``sop_uids``: one SOPInstanceUID per slice (K order); ``source_sops``: (SOP class, SOP
    instance) of the source slice at each position, recorded in SourceImageSequence. Pixels
    use ``storage``, or a 16-bit signed one when it cannot hold ``hu`` (see
    :func:`fitting_storage`). Returns ``out_folder``; OutputError naming it when it cannot be
    written.
    """
    out_folder = Path(out_folder)
    hu = np.asarray(hu)
    if hu.shape != geometry.shape:
        raise DataError(f"{out_folder}: volume shape {hu.shape} does not match the series' "
                        f"(columns, rows, slices) {geometry.shape}")
    if not np.isfinite(hu).all():
        raise DataError(f"{out_folder}: {int((~np.isfinite(hu)).sum())} voxels are NaN or Inf")
    if len(sop_uids) != hu.shape[2] or len(storage.rescale) != hu.shape[2]:
        raise DataError(f"{out_folder}: {hu.shape[2]} slices, {len(sop_uids)} SOP UIDs and "
                        f"{len(storage.rescale)} rescales")
    _check_out_folder(out_folder, overwrite)
    storage = fitting_storage(hu, storage, out_folder)
    make_dirs(out_folder.parent)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_folder.name}.", suffix=".tmp",
                                    dir=out_folder.parent))
    except OSError as exc:
        raise OutputError(f"{out_folder}: cannot be written ({exc.strerror or exc})") from exc
    try:
        os.chmod(tmp, 0o777 & ~current_umask())
        for k in range(hu.shape[2]):
            ds = _slice_dataset(series_tags, geometry, k, sop_uids[k], storage.rescale[k])
            if source_sops is not None:
                item = Dataset()
                item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = source_sops[k]
                ds.SourceImageSequence = [item]
            raw = stored_slice(hu[:, :, k], storage, storage.rescale[k])
            ds.set_pixel_data(np.ascontiguousarray(raw.T), "MONOCHROME2", storage.bits_stored,
                              generate_instance_uid=False)
            path = tmp / f"CT_{k + 1:04d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            sync_file(path)
        _commit(tmp, out_folder)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"{out_folder}: writing the series failed ({exc.strerror or exc}); "
                          f"the previous folder, if any, is unchanged") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_folder


def _now_tags(tags: Dataset) -> None:
    """Set the series', instances' and content's date and time to now."""
    now = dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
    tags.SeriesDate = tags.ContentDate = tags.InstanceCreationDate = date
    tags.SeriesTime = tags.ContentTime = tags.InstanceCreationTime = time


def series_description(description: str, model_name: str) -> str:
    """``"SYNTHETIC phase 0 (pix2pix <model>)"``, cut to 64 characters (VR LO) keeping the
    ``SYNTHETIC`` prefix; backslashes (value separators) become ``/``."""
    text = f"SYNTHETIC {description} (pix2pix {model_name})".replace("\\", "/")
    return text if len(text) <= _LO_MAX else text[: _LO_MAX - 1] + ")"


def derived_tags(source: DicomSource, series_uid: str, description: str,
                 model_name: str, series_offset: int = DERIVED_SERIES_OFFSET) -> Dataset:
    """Series tags of a derived series: the source's patient, study and frame of reference,
    a new series UID, SeriesNumber the source's plus ``series_offset``, ImageType
    DERIVED\\SECONDARY, description and derivation."""
    if not source.frame_of_reference_uid or not source.study_uid:
        raise DataError(f"{source.folder}: the source series has no FrameOfReferenceUID or "
                        f"StudyInstanceUID, so a derived series could not be placed beside it")
    tags = copy.deepcopy(source.shared)
    for keyword in _TYPE2_DEFAULTS:
        if keyword not in tags:
            setattr(tags, keyword, None)
    tags.Modality = "CT"
    tags.SeriesInstanceUID = series_uid
    tags.SeriesNumber = (source.series_number or 0) + series_offset
    tags.SeriesDescription = series_description(description, model_name)
    tags.ImageType = list(DERIVED_IMAGE_TYPE)
    tags.DerivationDescription = (f"Synthetic {description} predicted by the pix2pix model "
                                  f"{model_name} from series {source.series_description!r} "
                                  f"(UID {source.series_uid})")[:1024]
    _now_tags(tags)
    return tags


def write_derived_series(hu: np.ndarray, source: DicomSource, out_folder: str | os.PathLike[str],
                         description: str, model_name: str, *, overwrite: bool = False,
                         series_offset: int = DERIVED_SERIES_OFFSET) -> Path:
    """Write ``hu`` ((I, J, K) float32 HU, on the grid :func:`data.dicom_io.load_series` gave
    for ``source``) as a derived CT series in ``out_folder``, registered with the source.
    ``description`` says what it is (``"phase 0"``), ``model_name`` which model made it: the
    SeriesDescription becomes ``"SYNTHETIC phase 0 (pix2pix <model_name>)"``, the
    SeriesNumber the source's plus ``series_offset`` (distinct for each series of a cycle).

    New Series and SOP Instance UIDs, never one of the source's; same geometry per slice, same
    stored type and rescale (HU rounded to the rescale grid), widened to 16-bit signed with a
    warning when the source's stored range cannot hold the HU. Returns ``out_folder``.
    """
    taken = {source.series_uid, source.study_uid, source.frame_of_reference_uid,
             *source.sop_instance_uids}
    uids = new_uids(1 + len(source.sop_instance_uids), taken)
    tags = derived_tags(source, uids[0], description, model_name, series_offset)
    source_sops = [(source.sop_class_uid or CT_IMAGE_STORAGE, uid)
                   for uid in source.sop_instance_uids]
    written = write_series(hu, source.geometry, source.storage, tags, uids[1:], out_folder,
                           source_sops=source_sops, overwrite=overwrite)
    logger.info("%s: wrote %r (%d slices, series UID %s) beside %s", written,
                tags.SeriesDescription, len(uids) - 1, uids[0], source.folder)
    return written
