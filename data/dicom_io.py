"""DICOM CT series in: one series as the project's :class:`~data.nifti_io.Volume` (float32 HU,
RAS affine), plus what a derived series needs to be written beside it (:class:`DicomSource`).

Reading is pydicom + numpy (SimpleITK is the tests' reference, not a runtime dependency): pydicom
is ~15 MB and pure Python against SimpleITK's ~260 MB, and doing the geometry here lets every
problem that ITK only warns about (uneven spacing, a missing slice, gantry tilt) be refused with
the folder, the files and the positions. Compressed transfer syntaxes are decoded by what pydicom
has installed: RLE and Deflate always, JPEG baseline and JPEG 2000 through Pillow; JPEG Lossless
and JPEG-LS need ``pylibjpeg`` + ``pylibjpeg-libjpeg`` (or ``python-gdcm``, ``pyjpegls``), and a
series whose syntax no installed decoder reads is refused naming the syntax and those packages.

Conventions (those of ITK/SimpleITK, so a volume matches its reading of the same series):

- ``I`` is the column index of a slice, along the first ImageOrientationPatient (IOP) vector
  ``r``; ``J`` is the row index, along the second vector ``c``; ``K`` counts slices in ascending
  order of their ImagePositionPatient (IPP) projected on the normal ``n = r x c`` (never by file
  name or InstanceNumber).
- PixelSpacing is (between rows, between columns): voxel size is ``PixelSpacing[1]`` along I and
  ``PixelSpacing[0]`` along J; along K it is the mean step of the sorted positions.
- DICOM positions are LPS mm; the affine is RAS mm (x and y negated), as nibabel's.
- HU = stored value x RescaleSlope + RescaleIntercept, slice by slice (defaults 1 and 0).
  PixelPaddingValue is not treated specially (neither ITK nor dcm2niix do).

A folder holding one CT series beside non-CT objects (RTSTRUCT, RTPLAN, REG, as planning
systems export them) reads as that CT series; two or more CT series are refused, listed.
:func:`find_series` searches a folder recursively (hidden files and folders skipped, links to
folders not followed) and keeps files that carry the ``DICM`` preamble; files without it (old
ACR-NEMA exports) and DICOMDIR indexes are skipped.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder

from data.nifti_io import MAX_VOXELS, Volume
from util.errors import DataError
from util.paths import folder_problem

logger = logging.getLogger(__name__)

#: Default patterns (fnmatch, case-insensitive) of the series descriptions of the average CT
#: and of the end-inhale gated phase.
DEFAULT_AVG_SERIES = "*AVG*"
DEFAULT_PHASE0_SERIES = "*Gated 0.0A*"
#: Largest difference between two slices' direction cosines (IOP) for one orientation.
ORIENTATION_ATOL = 1e-4
#: Largest angle (degrees) between the slice stacking direction and the slice normal; more is a
#: tilted gantry, refused (resample first, e.g. dcm2niix corrects gantry tilt).
TILT_TOLERANCE_DEG = 0.1
#: Largest in-plane offset (mm) of a slice from the line through the first and last slice.
LATERAL_ATOL_MM = 0.1
#: A step between neighbouring slices larger than this times the median step is a missing slice.
GAP_FACTOR = 1.5
#: Steps may differ from the median step by max(SPACING_ATOL_MM, SPACING_RTOL x median).
SPACING_RTOL = 0.01
SPACING_ATOL_MM = 0.01
#: Two slices closer than this (mm) along the normal are at the same position.
SAME_POSITION_MM = 1e-3
#: Header tags of the patient, study and frame of reference that a derived series copies.
SHARED_KEYWORDS = ("SpecificCharacterSet", "PatientName", "PatientID", "PatientBirthDate",
                   "PatientSex", "PatientAge", "PatientSize", "PatientWeight", "StudyInstanceUID",
                   "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
                   "ReferringPhysicianName", "StudyDescription", "FrameOfReferenceUID",
                   "PositionReferenceIndicator", "PatientPosition", "BodyPartExamined")
_PHASE = re.compile(r"gated\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_DECODER_PACKAGES = "pylibjpeg with pylibjpeg-libjpeg / pylibjpeg-openjpeg, or python-gdcm"


@dataclass(frozen=True)
class SeriesInfo:
    """One series found under a folder, from headers only: SeriesInstanceUID ``uid``,
    SeriesDescription, Modality and its files (sorted by path; one file per slice)."""

    uid: str
    description: str
    modality: str
    files: tuple[Path, ...]

    @property
    def n_slices(self) -> int:
        """Number of files (slices) of the series."""
        return len(self.files)

    @property
    def folder(self) -> Path:
        """The deepest folder holding every file of the series."""
        return Path(os.path.commonpath([p.parent for p in self.files]))

    @property
    def phase_percent(self) -> float | None:
        """Breathing phase (%) of a gated series (``"Gated 50.0A"`` -> 50.0), else None."""
        return gated_phase_percent(self.description)

    def label(self) -> str:
        """``'Gated 0.0A' (CT, 95 files, UID 1.2.3)``, for messages."""
        return f"{self.description!r} ({self.modality}, {self.n_slices} files, UID {self.uid})"


#: What the readers take: a folder holding the series, its files, or a :class:`SeriesInfo`.
SeriesSource = str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | SeriesInfo


@dataclass(frozen=True)
class SeriesGeometry:
    """Where a series' slices are: IOP ``orientation`` (6 direction cosines, LPS), one IPP per
    slice in K order (LPS mm), ``pixel_spacing_mm`` (between rows, between columns), ``rows`` x
    ``columns`` pixels, and the nominal SliceThickness (mm, None when absent)."""

    orientation: tuple[float, ...]
    positions_mm: tuple[tuple[float, float, float], ...]
    pixel_spacing_mm: tuple[float, float]
    rows: int
    columns: int
    slice_thickness_mm: float | None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(I, J, K) = (columns, rows, slices)."""
        return (self.columns, self.rows, len(self.positions_mm))

    def affine(self) -> np.ndarray:
        """(4, 4) voxel (I, J, K) -> RAS mm: columns ``r`` x column spacing, ``c`` x row
        spacing, the mean slice step along the normal; origin the first slice's IPP."""
        iop = np.asarray(self.orientation, dtype=np.float64)
        row, col = iop[:3], iop[3:]
        normal = np.cross(row, col)
        pos = np.asarray(self.positions_mm, dtype=np.float64)
        step = (pos[-1] - pos[0]) @ normal / (len(pos) - 1) if len(pos) > 1 else 1.0
        lps = np.eye(4)
        lps[:3, 0] = row * self.pixel_spacing_mm[1]
        lps[:3, 1] = col * self.pixel_spacing_mm[0]
        lps[:3, 2] = normal * step
        lps[:3, 3] = pos[0]
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


@dataclass(frozen=True)
class PixelStorage:
    """How a series stores its pixels: BitsAllocated/BitsStored, PixelRepresentation (0
    unsigned, 1 signed) and (RescaleSlope, RescaleIntercept) per slice in K order."""

    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    rescale: tuple[tuple[float, float], ...]

    @property
    def dtype(self) -> np.dtype:
        """numpy type of the stored values (``int16`` for signed 16-bit ...)."""
        kind = "int" if self.pixel_representation == 1 else "uint"
        return np.dtype(f"{kind}{self.bits_allocated}")

    @property
    def stored_range(self) -> tuple[int, int]:
        """(lowest, highest) value that BitsStored bits hold."""
        if self.pixel_representation == 1:
            return -(2 ** (self.bits_stored - 1)), 2 ** (self.bits_stored - 1) - 1
        return 0, 2**self.bits_stored - 1


@dataclass(frozen=True)
class DicomSource:
    """What identifies a series read from ``folder``, for writing a derived series beside it.

    ``sop_instance_uids``, like the geometry and rescale, are in K order. ``shared``: a copy of
    the first slice's patient, study and frame-of-reference tags (:data:`SHARED_KEYWORDS`);
    treat it as read-only (the writer copies it).
    """

    folder: Path
    series_uid: str
    series_description: str
    series_number: int | None
    sop_class_uid: str
    sop_instance_uids: tuple[str, ...]
    geometry: SeriesGeometry
    storage: PixelStorage
    shared: Dataset

    @property
    def study_uid(self) -> str:
        """StudyInstanceUID ("" when absent)."""
        return str(self.shared.get("StudyInstanceUID", ""))

    @property
    def frame_of_reference_uid(self) -> str:
        """FrameOfReferenceUID ("" when absent)."""
        return str(self.shared.get("FrameOfReferenceUID", ""))

    @property
    def patient_id(self) -> str:
        """PatientID ("" when absent)."""
        return str(self.shared.get("PatientID", ""))


@dataclass(frozen=True)
class DicomSeries:
    """A series read in full: the volume (HU, RAS affine, NIfTI header mirroring the stored
    type) and its :class:`DicomSource`."""

    volume: Volume
    source: DicomSource


def gated_phase_percent(description: str) -> float | None:
    """Breathing phase in % named by a series description: ``"CT 4D Gated 50.0A"`` -> 50.0;
    None when the description names no gated phase."""
    match = _PHASE.search(description)
    return float(match.group(1)) if match else None


def _has_dicm_preamble(path: Path) -> bool:
    """True when ``path`` is a file with ``DICM`` at byte 128 (a DICOM Part 10 file)."""
    try:
        with path.open("rb") as stream:
            head = stream.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _walk_files(folder: Path) -> Iterable[Path]:
    """Every non-hidden file under ``folder``, recursively, sorted; links to folders are not
    followed."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def is_dicom_folder(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder with at least one DICOM file in it or below (stops at the
    first; reads 132 bytes a file)."""
    path = Path(path)
    return path.is_dir() and any(_has_dicm_preamble(p) for p in _walk_files(path))


def _read_header(path: Path) -> Dataset:
    """The header of a DICOM file (no pixel data); DataError naming it when unreadable."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, KeyError,
            AttributeError, IndexError) as exc:
        raise DataError(f"{path}: not a readable DICOM file ({exc})") from exc


def _group_series(files: Iterable[Path]) -> list[SeriesInfo]:
    """Headers of ``files`` grouped by SeriesInstanceUID; files without one (DICOMDIR) are
    skipped and logged. Sorted by description, then UID."""
    groups: dict[str, list[Path]] = {}
    about: dict[str, tuple[str, str]] = {}
    for path in files:
        header = _read_header(path)
        uid = str(header.get("SeriesInstanceUID", "")).strip()
        if not uid:
            logger.info("%s: no SeriesInstanceUID (a DICOMDIR or a non-image object); skipped",
                        path)
            continue
        groups.setdefault(uid, []).append(path)
        about.setdefault(uid, (str(header.get("SeriesDescription", "")).strip(),
                               str(header.get("Modality", "")).strip()))
    series = [SeriesInfo(uid, *about[uid], tuple(sorted(paths))) for uid, paths in groups.items()]
    return sorted(series, key=lambda s: (s.description, s.uid))


def find_series(folder: str | os.PathLike[str]) -> list[SeriesInfo]:
    """Every DICOM series under ``folder`` (recursively), from headers only; [] when there is
    none. DataError naming the folder when it is not one, or a DICOM file that cannot be read."""
    folder = Path(folder)
    problem = folder_problem(folder)
    if problem is not None:
        raise DataError(f"{folder}: {problem}")
    candidates = list(_walk_files(folder))
    dicom = [p for p in candidates if _has_dicm_preamble(p)]
    if len(dicom) < len(candidates):
        logger.debug("%s: %d files without a DICM preamble skipped", folder,
                     len(candidates) - len(dicom))
    return _group_series(dicom)


def matching_series(series: Sequence[SeriesInfo], pattern: str) -> list[SeriesInfo]:
    """The series whose description matches the fnmatch ``pattern``, case-insensitively."""
    return [s for s in series
            if fnmatch.fnmatchcase(s.description.casefold(), pattern.casefold())]


def _listing(series: Sequence[SeriesInfo]) -> str:
    """``'AVG' (CT, 95 files, UID ...); 'MIP' (...)`` or ``none``."""
    return "; ".join(s.label() for s in series) or "none"


def pick_series(series: Sequence[SeriesInfo], pattern: str,
                folder: str | os.PathLike[str] | None = None) -> SeriesInfo:
    """The one series whose description matches ``pattern`` (fnmatch, case-insensitive, e.g.
    ``"*Gated 0.0A*"``). DataError naming ``folder`` (default: the series' common folder), the
    pattern and the series found when none or several match."""
    where = Path(folder) if folder is not None else (
        Path(os.path.commonpath([s.folder for s in series])) if series else Path("."))
    found = matching_series(series, pattern)
    if not found:
        raise DataError(f"{where}: no series description matches {pattern!r} "
                        f"(case-insensitive); series found: {_listing(series)}")
    if len(found) > 1:
        raise DataError(f"{where}: {len(found)} series descriptions match {pattern!r}: "
                        f"{_listing(found)}; give a more specific pattern")
    return found[0]


def _choose(series: list[SeriesInfo], series_uid: str | None, where: Path) -> SeriesInfo:
    """The series to read: the one with ``series_uid``, or the only one; else DataError."""
    if not series:
        raise DataError(f"{where}: no DICOM series found (no file with a DICM preamble and a "
                        f"SeriesInstanceUID)")
    if series_uid is not None:
        for candidate in series:
            if candidate.uid == series_uid:
                return candidate
        raise DataError(f"{where}: no series with UID {series_uid}; found: {_listing(series)}")
    ct = [s for s in series if s.modality == "CT"]
    if len(series) > 1 and len(ct) == 1:
        logger.info("%s: reading the one CT series %s; skipping %s", where, ct[0].label(),
                    _listing([s for s in series if s is not ct[0]]))
        return ct[0]
    if len(series) > 1:
        raise DataError(f"{where}: {len(series)} series where one was expected: "
                        f"{_listing(series)}; pick one by its UID or description")
    return series[0]


def _read_full(path: Path) -> Dataset:
    """A DICOM file with its (still encoded) pixel data; DataError naming it when unreadable."""
    try:
        return pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, KeyError,
            AttributeError, IndexError) as exc:
        raise DataError(f"{path}: not a readable DICOM file ({exc})") from exc


def _check_slice(ds: Dataset, path: Path) -> None:
    """DataError naming ``path`` unless it is one single-frame CT slice with pixel data and the
    geometry tags."""
    modality = str(ds.get("Modality", "")).strip()
    if modality != "CT":
        raise DataError(f"{path}: Modality is {modality or 'missing'!r}, not 'CT'; only CT "
                        f"series can be read")
    if "PixelData" not in ds:
        raise DataError(f"{path}: no pixel data (not an image)")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise DataError(f"{path}: a multi-frame (enhanced) CT object with "
                        f"{ds.NumberOfFrames} frames; export the series as one file per slice")
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise DataError(f"{path}: {ds.SamplesPerPixel} samples per pixel; CT is grayscale")
    missing = [k for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
                           "Rows", "Columns", "BitsAllocated", "PixelRepresentation")
               if ds.get(k) in (None, "")]
    if missing:
        raise DataError(f"{path}: missing {', '.join(missing)}, so the slice has no position "
                        f"in the patient")


def _check_decodable(ds: Dataset, path: Path) -> None:
    """DataError naming ``path`` and its transfer syntax when no installed decoder reads it."""
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as exc:
        raise DataError(f"{path}: transfer syntax {syntax.name} ({syntax}) cannot be decoded: "
                        f"pydicom has no decoder for it") from exc
    if not decoder.is_available:
        raise DataError(f"{path}: compressed transfer syntax {syntax.name} ({syntax}) needs a "
                        f"decoder that is not installed: install {_DECODER_PACKAGES}, or "
                        f"export the series uncompressed")


def _uniform(values: list, files: list[Path], what: str, where: Path,
             same: Callable[[Any, Any], bool] | None = None) -> None:
    """DataError naming ``where`` when the slices' ``values`` differ (by ``same(a, b)`` or
    ==), quoting the first file of each of two differing values: mixed sizes or orientations."""
    equal = same if same is not None else (lambda a, b: a == b)
    for value, path in zip(values, files, strict=True):
        if not equal(value, values[0]):
            raise DataError(f"{where}: slices of one series differ in {what}: {files[0].name} "
                            f"has {values[0]}, {path.name} has {value}; the folder mixes "
                            f"images of different sizes or orientations")


def _direction_cosines(iop: list[float], path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The row and column unit vectors of an IOP; DataError unless they are orthonormal."""
    row, col = np.asarray(iop[:3], dtype=np.float64), np.asarray(iop[3:6], dtype=np.float64)
    if len(iop) != 6 or not (abs(np.linalg.norm(row) - 1) < 1e-3
                             and abs(np.linalg.norm(col) - 1) < 1e-3 and abs(row @ col) < 1e-3):
        raise DataError(f"{path}: ImageOrientationPatient {list(iop)} is not two orthogonal "
                        f"unit vectors")
    return row / np.linalg.norm(row), col / np.linalg.norm(col)


def _positions_text(proj: np.ndarray, lo: int, hi: int) -> str:
    """``slices 3-6 at 7.5, 10.0, 15.0, 17.5 mm`` along the normal, for messages."""
    values = ", ".join(f"{v:.6g}" for v in proj[lo:hi + 1])
    return f"slices {lo}-{hi} (in position order) at {values} mm along the slice normal"


def _check_spacing(proj: np.ndarray, files: list[Path], where: Path) -> None:
    """DataError naming ``where`` for slices at one position, a missing slice (a gap over
    GAP_FACTOR x the median step) or uneven steps; ``proj`` sorted ascending (mm)."""
    steps = np.diff(proj)
    same = np.flatnonzero(steps < SAME_POSITION_MM)
    if same.size:
        k = int(same[0])
        raise DataError(f"{where}: {same.size + 1} or more slices share a position, e.g. "
                        f"{files[k].name} and {files[k + 1].name} at {proj[k]:.6g} mm along the "
                        f"normal (several phases or acquisitions in one series?)")
    median = float(np.median(steps))
    gaps = np.flatnonzero(steps > GAP_FACTOR * median)
    if gaps.size:
        k = int(gaps[0])
        raise DataError(f"{where}: missing slices: a gap of {steps[k]:.6g} mm between "
                        f"{files[k].name} and {files[k + 1].name} "
                        f"({_positions_text(proj, k, k + 1)}), median spacing {median:.6g} mm; "
                        f"{gaps.size} such gap(s)")
    tolerance = max(SPACING_ATOL_MM, SPACING_RTOL * median)
    uneven = np.flatnonzero(np.abs(steps - median) > tolerance)
    if uneven.size:
        lo, hi = max(int(uneven[0]) - 1, 0), min(int(uneven[-1]) + 2, len(proj) - 1)
        raise DataError(f"{where}: uneven slice spacing: steps from {steps.min():.6g} to "
                        f"{steps.max():.6g} mm (median {median:.6g} mm, tolerance "
                        f"{tolerance:.3g} mm); {_positions_text(proj, lo, min(hi, lo + 7))}")


def _check_stacking(pos: np.ndarray, normal: np.ndarray, files: list[Path], where: Path,
                    tilt: object) -> None:
    """DataError naming ``where`` when the slices are not stacked along their normal: gantry
    tilt, or slices shifted in plane. ``pos``: (K, 3) IPP in position order, LPS mm."""
    span = pos[-1] - pos[0]
    along = float(span @ normal)
    lateral = span - along * normal
    angle = math.degrees(math.atan2(float(np.linalg.norm(lateral)), abs(along)))
    if angle > TILT_TOLERANCE_DEG:
        raise DataError(f"{where}: gantry tilt: the slices are stacked {angle:.2f} deg off their "
                        f"normal (GantryDetectorTilt {tilt}); tilted series are refused, "
                        f"resample them onto an untilted grid first (dcm2niix corrects tilt)")
    direction = span / np.linalg.norm(span)
    offsets = (pos - pos[0]) - np.outer((pos - pos[0]) @ direction, direction)
    worst = int(np.argmax(np.linalg.norm(offsets, axis=1)))
    if np.linalg.norm(offsets[worst]) > LATERAL_ATOL_MM:
        raise DataError(f"{where}: {files[worst].name} is shifted "
                        f"{np.linalg.norm(offsets[worst]):.3g} mm in plane from the line through "
                        f"the first and last slice; the slices do not form one volume")


def _geometry(datasets: list[Dataset], files: list[Path],
              where: Path) -> tuple[list[int], SeriesGeometry]:
    """Slice order (indices into ``datasets`` by position along the normal) and the series'
    geometry; DataError naming ``where`` for mixed slices, tilt, gaps or uneven spacing."""
    _uniform([(int(d.Rows), int(d.Columns)) for d in datasets], files, "size (rows, columns)",
             where)
    _uniform([(int(d.BitsAllocated), int(d.PixelRepresentation)) for d in datasets], files,
             "stored type (BitsAllocated, PixelRepresentation)", where)
    iops = [[float(v) for v in d.ImageOrientationPatient] for d in datasets]
    _uniform(iops, files, "ImageOrientationPatient", where,
             lambda a, b: np.allclose(a, b, atol=ORIENTATION_ATOL))
    spacings = [[float(v) for v in d.PixelSpacing] for d in datasets]
    _uniform(spacings, files, "PixelSpacing", where, lambda a, b: np.allclose(a, b, atol=1e-4))
    if len(datasets) < 2:
        raise DataError(f"{where}: the series has one slice ({files[0].name}); a CT volume "
                        f"needs two or more")
    row, col = _direction_cosines(iops[0], files[0])
    normal = np.cross(row, col)
    pos = np.array([[float(v) for v in d.ImagePositionPatient] for d in datasets])
    order = [int(i) for i in np.argsort(pos @ normal, kind="stable")]
    sorted_files = [files[i] for i in order]
    _check_spacing(pos[order] @ normal, sorted_files, where)
    _check_stacking(pos[order], normal, sorted_files, where,
                    datasets[0].get("GantryDetectorTilt", "not given"))
    thickness = datasets[0].get("SliceThickness")
    geometry = SeriesGeometry(
        orientation=tuple(float(v) for v in iops[0]),
        positions_mm=tuple((float(p[0]), float(p[1]), float(p[2])) for p in pos[order]),
        pixel_spacing_mm=(spacings[0][0], spacings[0][1]), rows=int(datasets[0].Rows),
        columns=int(datasets[0].Columns),
        slice_thickness_mm=float(thickness) if thickness not in (None, "") else None)
    return order, geometry


def _rescale(ds: Dataset, path: Path) -> tuple[float, float]:
    """(RescaleSlope, RescaleIntercept) of a slice (1, 0 when absent); DataError when unusable."""
    given = (ds.get("RescaleSlope"), ds.get("RescaleIntercept"))
    slope, inter = (float(v) if v not in (None, "") else default
                    for v, default in zip(given, (1.0, 0.0), strict=True))
    if not (math.isfinite(slope) and math.isfinite(inter) and slope != 0):
        raise DataError(f"{path}: RescaleSlope {slope} / RescaleIntercept {inter} cannot give HU")
    return slope, inter


def _slice_hu(ds: Dataset, path: Path, rescale: tuple[float, float],
              shape: tuple[int, int]) -> np.ndarray:
    """HU of one slice: (columns, rows) float32, i.e. (I, J); ``shape`` is (rows, columns)."""
    try:
        raw = np.asarray(ds.pixel_array)
    except Exception as exc:  # decoders raise anything from ValueError to RuntimeError
        raise DataError(f"{path}: pixel data could not be decoded "
                        f"({ds.file_meta.TransferSyntaxUID.name}: {exc})") from exc
    if raw.shape != shape:
        raise DataError(f"{path}: pixel data has shape {raw.shape}, Rows x Columns say {shape}")
    slope, inter = rescale
    return (raw.astype(np.float64) * slope + inter).astype(np.float32).T


def _nifti_header(storage: PixelStorage, affine: np.ndarray,
                  description: str) -> nib.Nifti1Header:
    """NIfTI header mirroring the stored type and rescale (float32 when the rescale varies
    between slices), with the affine as qform and sform."""
    header = nib.Nifti1Header()
    if len(set(storage.rescale)) == 1:
        header.set_data_dtype(storage.dtype)
        header.set_slope_inter(*storage.rescale[0])
    else:
        header.set_data_dtype(np.float32)
        header.set_slope_inter(1.0, 0.0)
    header.set_xyzt_units("mm", "sec")
    header.set_qform(affine, code=1)
    header.set_sform(affine, code=1)
    header["descrip"] = description.encode("ascii", "replace")[:79]
    return header


def _shared_tags(ds: Dataset) -> Dataset:
    """A copy of the patient, study and frame-of-reference tags of ``ds``."""
    shared = Dataset()
    for keyword in SHARED_KEYWORDS:
        if keyword in ds:
            shared.add(copy.deepcopy(ds[keyword]))
    return shared


def _series_of(source: SeriesSource, series_uid: str | None) -> tuple[SeriesInfo, Path]:
    """The series to read and the folder to name in messages."""
    if isinstance(source, SeriesInfo):
        return source, source.folder
    if isinstance(source, str | os.PathLike):
        where = Path(source)
        return _choose(find_series(where), series_uid, where), where
    files = [Path(p) for p in source]
    if not files:
        raise DataError("no DICOM files given")
    where = Path(os.path.commonpath([p.parent for p in files]))
    return _choose(_group_series(files), series_uid, where), where


def load_series(source: SeriesSource, series_uid: str | None = None) -> DicomSeries:
    """Read one CT series: a folder (searched recursively) holding it, its files, or a
    :class:`SeriesInfo`; ``series_uid`` picks one of several.

    Returns the volume ((I, J, K) float32 HU, RAS affine, header with the stored type and
    rescale; ``path`` the series' folder) and its :class:`DicomSource`. Raises DataError naming
    the folder (or file) and the problem: several series, not CT, no pixel data, one slice,
    mixed sizes or orientations, gantry tilt, slices at one position, missing slices, uneven
    spacing, a transfer syntax no installed decoder reads.
    """
    series, where = _series_of(source, series_uid)
    files = list(series.files)
    datasets = [_read_full(p) for p in files]
    for ds, path in zip(datasets, files, strict=True):
        _check_slice(ds, path)
    _check_decodable(datasets[0], files[0])
    order, geometry = _geometry(datasets, files, where)
    if math.prod(geometry.shape) > MAX_VOXELS:
        raise DataError(f"{where}: {geometry.shape} voxels is more than {MAX_VOXELS}")
    datasets, files = [datasets[i] for i in order], [files[i] for i in order]
    rescale = tuple(_rescale(ds, p) for ds, p in zip(datasets, files, strict=True))
    first = datasets[0]
    storage = PixelStorage(int(first.BitsAllocated), int(first.get("BitsStored",
                           first.BitsAllocated)), int(first.PixelRepresentation), rescale)
    hu = np.empty(geometry.shape, dtype=np.float32)
    for k, (ds, path) in enumerate(zip(datasets, files, strict=True)):
        _check_decodable(ds, path)
        hu[:, :, k] = _slice_hu(ds, path, rescale[k], (geometry.rows, geometry.columns))
    folder = series.folder
    affine = geometry.affine()
    number = first.get("SeriesNumber")
    dicom_source = DicomSource(
        folder=folder, series_uid=series.uid, series_description=series.description,
        series_number=int(number) if number not in (None, "") else None,
        sop_class_uid=str(first.get("SOPClassUID", "")),
        sop_instance_uids=tuple(str(ds.get("SOPInstanceUID", "")) for ds in datasets),
        geometry=geometry, storage=storage, shared=_shared_tags(first))
    header = _nifti_header(storage, affine, f"DICOM {series.description}")
    logger.debug("%s: read series %s, %s voxels", where, series.label(), geometry.shape)
    return DicomSeries(Volume(hu=hu, affine=affine, header=header, path=folder), dicom_source)


def read_series(source: SeriesSource, series_uid: str | None = None) -> Volume:
    """The volume of :func:`load_series` (same arguments and refusals) without its source."""
    return load_series(source, series_uid).volume
