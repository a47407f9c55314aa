"""Pairing a 4DCT export: one AVG and one phase-0 file per patient folder, and patient splits.

An export is two trees, ``avg_root/<patient>/`` and ``phases_root/<patient>/``, matched by folder
name. A patient pairs when each folder holds exactly one matching NIfTI file, both read in full,
on the same world grid (shape and affine once phase 0 is in the AVG's voxel order: an LPS AVG
pairs with an RAS phase 0 of the same voxel centres). Every reason a patient does not pair is
collected, so one run reports all problems at once.

Every entry directly under either root is a patient: it ends up paired or reported, including a
broken symbolic link, a link loop or a stray file where a folder should be. Only hidden plain
files (``.DS_Store``) are skipped, and logged. Two folder names that become one file name
(``PT 1`` and ``PT_1``) are both left out.

A patient folder that holds no NIfTI file but DICOM files (in it or in subfolders) is read as
DICOM: the AVG and phase-0 series are picked by SeriesDescription (fnmatch, case-insensitive:
``avg_series``, ``phase0_series``) among the CT series found under it (:mod:`data.dicom_io`;
RTSTRUCT and other non-CT objects beside them are ignored), and read in full with the same
checks; a pair's ``avg_series``/``phase0_series`` then say which.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data.ct_volumes import AFFINE_ATOL_MM, load_ct_volume
from data.dicom_io import (
    DEFAULT_AVG_SERIES,
    DEFAULT_PHASE0_SERIES,
    SeriesInfo,
    find_series,
    is_dicom_folder,
    matching_series,
    read_series,
)
from data.nifti_io import VolumeInfo, is_nifti_file
from data.reorient import has_world_geometry
from data.voxel_grid import compare_grids, mismatch_text
from util.errors import DataError
from util.names import safe_name
from util.paths import folder_problem, is_hidden_file

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ExportLayout:
    """Where the export trees are, the globs (case-sensitive) picking a patient's NIfTI files,
    and the patterns (case-insensitive) picking its DICOM series by description."""

    avg_root: Path
    phases_root: Path
    avg_pattern: str = "*.nii*"
    phase0_pattern: str = "*Gated 0.0A*.nii*"
    avg_series: str = DEFAULT_AVG_SERIES
    phase0_series: str = DEFAULT_PHASE0_SERIES


@dataclass(frozen=True)
class PairedPatient:
    """A patient whose AVG and phase-0 files lie on one world grid; ``shape`` and ``spacing_mm``
    (along the voxel axes) are the AVG's. ``phase0_reorder``: (phase 0's, AVG's) voxel order as
    axis codes, e.g. ``("RAS", "LPS")``, when phase 0 stores its voxels in another order and
    must be reordered (:mod:`data.reorient`); None when both are stored alike.
    ``avg_series``/``phase0_series``: the DICOM series read, when that side is DICOM (its path
    is then the series' folder); None for a NIfTI file."""

    patient: str
    safe_id: str
    avg_path: Path
    phase0_path: Path
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    phase0_reorder: tuple[str, str] | None = None
    avg_series: SeriesInfo | None = None
    phase0_series: SeriesInfo | None = None


@dataclass(frozen=True)
class UnpairedPatient:
    """One reason why ``patient`` was left out (a patient can have several)."""

    patient: str
    reason: str


def safe_patient_id(name: str) -> str:
    """File-name-safe id of a patient folder name (:func:`util.names.safe_name`).

    A name with nothing usable left (``""``, ``"."``) becomes ``patient_<8 hex of its SHA-256>``.
    """
    try:
        return safe_name(name)
    except DataError:
        digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        return f"patient_{digest}"


def list_patients(avg_root: Path, phases_root: Path) -> list[str]:
    """Sorted names of every entry under either root: patient folders, and anything else
    (a stray file, a broken link), which :func:`check_patient` then reports. Hidden plain files
    (``.DS_Store``, ``._PT1``) are the only entries skipped; they are logged."""
    names: set[str] = set()
    for root in (avg_root, phases_root):
        try:
            entries = sorted(root.iterdir())
        except OSError as exc:
            raise DataError(f"{root}: cannot list the patient folders ({exc})") from exc
        hidden = [p.name for p in entries if is_hidden_file(p)]
        if hidden:
            logger.info("%s: ignoring hidden file%s %s", root, "s" if len(hidden) > 1 else "",
                        ", ".join(hidden))
        names.update(p.name for p in entries if p.name not in hidden)
    return sorted(names)


def matching_files(folder: Path, pattern: str) -> list[Path]:
    """NIfTI files directly in ``folder`` whose name matches ``pattern`` (case-sensitive)."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and is_nifti_file(p) and fnmatch.fnmatchcase(p.name, pattern))


@dataclass(frozen=True)
class _Source:
    """What was found for one side: a NIfTI file, or a DICOM series (``path`` its folder)."""

    path: Path
    series: SeriesInfo | None = None


def _holds_nifti(folder: Path) -> bool:
    """True when ``folder`` directly holds a NIfTI file (of any name)."""
    return any(p.is_file() and is_nifti_file(p) for p in folder.iterdir())


def _find_series(folder: Path, pattern: str, label: str) -> tuple[_Source | None, list[str]]:
    """The single series of ``label`` under ``folder`` whose description matches ``pattern``."""
    try:
        series = find_series(folder)
    except DataError as exc:
        return None, [f"unreadable DICOM: {exc}"]
    found = matching_series([s for s in series if s.modality == "CT"], pattern)
    names = "; ".join(s.label() for s in (found if len(found) > 1 else series)) or "none"
    if not found:
        return None, [f"no {label} series: no CT series under {folder} has a description "
                      f"matching {pattern!r} (case-insensitive); series found: {names}"]
    if len(found) > 1:
        return None, [f"ambiguous {label} series: {len(found)} CT series under {folder} "
                      f"match {pattern!r}: {names}"]
    return _Source(found[0].folder, found[0]), []


def _find_one(folder: Path, pattern: str, series_pattern: str, label: str,
              other_root: Path) -> tuple[_Source | None, list[str]]:
    """The single file of ``label`` in ``folder`` matching ``pattern`` (or, in a folder of DICOM
    series without NIfTI files, the series matching ``series_pattern``), or the problem."""
    if not os.path.lexists(folder):
        kind = "AVG" if label == "AVG" else "phases"
        return None, [f"no {kind} folder: {folder} does not exist (patient only in "
                      f"{other_root})"]
    problem = folder_problem(folder)
    if problem is not None:
        return None, [f"not a patient folder: {folder} {problem}"]
    try:
        found = matching_files(folder, pattern)
        dicom = not found and not _holds_nifti(folder) and is_dicom_folder(folder)
    except OSError as exc:
        return None, [f"unreadable folder: cannot list {folder} ({exc})"]
    if dicom:
        return _find_series(folder, series_pattern, label)
    if not found:
        return None, [f"no {label} file: nothing in {folder} matches {pattern!r} "
                      f"(NIfTI files, or DICOM series in a folder without NIfTI files)"]
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        return None, [f"ambiguous {label}: {len(found)} files in {folder} match {pattern!r}: "
                      f"{names}"]
    return _Source(found[0]), []


def _read_fully(source: _Source, problems: list[str]) -> VolumeInfo | None:
    """Read a file or series including its voxels (so truncation and constant volumes show);
    on failure note it in ``problems`` and return None."""
    if source.series is None:
        try:
            return load_ct_volume(source.path).info
        except DataError as exc:
            problems.append(f"unreadable file: {exc}")
            return None
    try:
        vol = read_series(source.series)
    except DataError as exc:
        problems.append(f"unreadable series {source.series.description!r}: {exc}")
        return None
    if float(vol.hu.min()) == float(vol.hu.max()):
        problems.append(f"unreadable series {source.series.description!r}: {source.path}: "
                        f"constant volume, every voxel is {float(vol.hu.min()):g} HU; not a CT "
                        f"image (an empty or failed export?)")
        return None
    return vol.info


def check_patient(patient: str, layout: ExportLayout, atol_mm: float = AFFINE_ATOL_MM
                  ) -> tuple[PairedPatient | None, list[str]]:
    """Pair one patient: the paired record, or every reason it cannot be paired (affines
    must agree within ``atol_mm``)."""
    avg_src, problems = _find_one(layout.avg_root / patient, layout.avg_pattern,
                                  layout.avg_series, "AVG", layout.phases_root)
    phase0_src, found = _find_one(layout.phases_root / patient, layout.phase0_pattern,
                                  layout.phase0_series, "phase-0", layout.avg_root)
    problems += found
    avg = _read_fully(avg_src, problems) if avg_src is not None else None
    phase0 = _read_fully(phase0_src, problems) if phase0_src is not None else None
    if problems:
        return None, problems
    if avg is None or phase0 is None or avg_src is None or phase0_src is None:
        # _find_one and _read_fully note why they give None
        raise RuntimeError(f"{patient}: an AVG or phase-0 file is missing, yet no problem was "
                           f"noted")
    match = compare_grids(avg, phase0, atol_mm)
    if match.differences:
        return None, [f"different voxel grids: {avg.path} and {phase0.path}: "
                      f"{mismatch_text(match, atol_mm)}"]
    reorder = (match.from_axcodes, match.to_axcodes) if match.reordered else None
    if reorder is not None:
        if not has_world_geometry(phase0.header):
            return None, [f"cannot reorder {phase0.path} ({reorder[0]}) into the voxel order of "
                          f"{avg.path} ({reorder[1]}): it has neither a qform nor an sform"]
        logger.info("%s: phase 0 stores its voxels %s, the AVG %s; same world grid, phase 0 "
                    "will be reordered", patient, *reorder)
    return PairedPatient(patient, safe_patient_id(patient), avg.path, phase0.path, avg.shape,
                         avg.spacing_mm, reorder, avg_src.series, phase0_src.series), []


def _quoted_list(names: list[str]) -> str:
    """``'a' and 'b'`` or ``'a', 'b' and 'c'``."""
    quoted = [repr(n) for n in names]
    return " and ".join([", ".join(quoted[:-1]), quoted[-1]]) if len(quoted) > 1 else quoted[0]


def file_name_collisions(patients: Iterable[str]) -> dict[str, str]:
    """Patient -> reason, for every patient whose file name (:func:`safe_patient_id`, compared
    case-insensitively, as on a macOS or Windows disk) is also another patient's.

    All patients of a collision are left out, not just the later ones: which folder would be
    kept must not depend on how the names sort.
    """
    groups: dict[str, list[str]] = {}
    for patient in patients:
        groups.setdefault(safe_patient_id(patient).casefold(), []).append(patient)
    reasons = {}
    for names in (sorted(g) for g in groups.values() if len(g) > 1):
        files = sorted({safe_patient_id(n) for n in names})
        both = "both" if len(names) == 2 else "all"
        target = (f"the file name {files[0]!r}" if len(files) == 1 else
                  f"the file names {_quoted_list(files)}, one name on a case-insensitive disk")
        reason = (f"file name collision: {_quoted_list(names)} {both} become {target}; rename "
                  f"one of the folders")
        reasons.update(dict.fromkeys(names, reason))
    return reasons


def pair_patients(layout: ExportLayout, progress: bool = True,
                  atol_mm: float = AFFINE_ATOL_MM) -> tuple[list[PairedPatient],
                                                            list[UnpairedPatient]]:
    """Check every patient folder; return the paired patients and every problem found.

    Every patient found under either root ends up in exactly one of the two lists.
    """
    paired, unpaired = [], []
    patients = list_patients(layout.avg_root, layout.phases_root)
    collisions = file_name_collisions(patients)
    for patient in tqdm(patients, desc="pairing", unit="patient", disable=not progress):
        pair, problems = check_patient(patient, layout, atol_mm)
        problems += [collisions[patient]] if patient in collisions else []
        unpaired += [UnpairedPatient(patient, reason) for reason in problems]
        if pair is not None and not problems:
            paired.append(pair)
    return paired, unpaired


def split_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """(train, val, test) patient counts for ``n`` paired patients.

    ``n >= 3``: at least one test (if ``test_fraction > 0``) and one val (if ``val_fraction > 0``),
    always at least one train; ``n == 2``: one train, one test; ``n == 1``: train only.
    """
    if n <= 1:
        return (n, 0, 0)
    if n == 2:
        return (1, 0, 1) if test_fraction > 0 else (1, 1, 0) if val_fraction > 0 else (2, 0, 0)
    min_val, min_test = int(val_fraction > 0), int(test_fraction > 0)
    n_val = max(min_val, math.floor(n * val_fraction + 0.5))
    n_test = max(min_test, math.floor(n * test_fraction + 0.5))
    while n_val + n_test > n - 1:  # keep one train patient; trim the larger of val and test
        if n_val > min_val and (n_val >= n_test or n_test <= min_test):
            n_val -= 1
        else:
            n_test -= 1
    return (n - n_val - n_test, n_val, n_test)


def assign_splits(patients: Iterable[str], val_fraction: float, test_fraction: float,
                  seed: int) -> dict[str, str]:
    """Patient -> split: sort the ids, shuffle with ``numpy.random.default_rng(seed)``, then
    take test, val and train in that order. Depends only on the seed and the set of ids."""
    ids = sorted(set(patients))
    _, n_val, n_test = split_counts(len(ids), val_fraction, test_fraction)
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    return {pid: "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            for rank, pid in enumerate(order)}
