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

With a :class:`PhaseRequest` (``prepare_dataset.py --phases``), a paired patient's other gated
phases are found in its phases folder by the percentage their file name (or series description)
names (:func:`util.phases.gated_percent`), each read in full and checked against the AVG like
phase 0 (:func:`check_phases`). Phase 0 still decides whether the patient pairs: a phase that is
missing, named by two files, unreadable or off the AVG's grid is left out of the patient with its
reason (:class:`PatientPhases`), the patient itself is kept.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
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
from util.phases import gated_percent, parse_phases, phase_label

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
class PhaseRequest:
    """The gated phases asked for beside phase 0 (``--phases``): ``percents`` (sorted, %), and
    with ``every`` (``--phases all``) any other phase found in a patient's folder as well."""

    percents: tuple[float, ...]
    every: bool = False

    @classmethod
    def parse(cls, text: str) -> PhaseRequest:
        """``"all"`` or a list such as ``"0,50"`` (:func:`util.phases.parse_phases`; ConfigError
        for anything else)."""
        return cls(parse_phases(text), text.strip().lower() == "all")

    def wants(self, percent: float) -> bool:
        """True for a phase other than 0 that is to be prepared when a patient has it."""
        return percent != 0 and (self.every or percent in self.percents)


@dataclass(frozen=True)
class PhaseSource:
    """A gated phase of a patient, read in full and on its AVG's world grid: ``path`` the file
    (or the series' folder, ``series`` then the DICOM series); ``reorder`` as
    :attr:`PairedPatient.phase0_reorder`."""

    percent: float
    path: Path
    reorder: tuple[str, str] | None = None
    series: SeriesInfo | None = None


@dataclass(frozen=True)
class PhaseProblem:
    """Why phase ``percent`` of a patient was left out (duplicate, unreadable, off-grid)."""

    percent: float
    reason: str


@dataclass(frozen=True)
class PatientPhases:
    """The gated phases of a paired patient beside phase 0, looked for in ``folder`` (NIfTI
    files, or DICOM series when ``dicom``): those ``found`` and checked, those asked for but
    ``missing`` (no file names them, %), and those left out with a ``problems`` reason."""

    folder: Path
    dicom: bool
    found: tuple[PhaseSource, ...] = ()
    missing: tuple[float, ...] = ()
    problems: tuple[PhaseProblem, ...] = ()

    @property
    def seen(self) -> frozenset[float]:
        """Every phase (%) some file or series of the folder names: found or left out."""
        return frozenset([s.percent for s in self.found] + [p.percent for p in self.problems])

    def missing_reason(self, percent: float) -> str:
        """Why phase ``percent`` counts as missing, naming the folder looked in."""
        label = phase_label(percent)
        if self.dicom:
            return (f"missing: no CT series under {self.folder} names phase {label} % in its "
                    f"description ('Gated {label}...')")
        return (f"missing: no NIfTI file in {self.folder} names phase {label} % in its name "
                f"('Gated {label}...')")

    def left_out(self) -> list[tuple[float, str]]:
        """(phase %, reason) of every phase missing or left out, sorted by phase."""
        reasons = [(p, self.missing_reason(p)) for p in self.missing]
        reasons += [(p.percent, p.reason) for p in self.problems]
        return sorted(reasons, key=lambda item: item[0])


@dataclass(frozen=True)
class PairedPatient:
    """A patient whose AVG and phase-0 files lie on one world grid; ``shape`` and ``spacing_mm``
    (along the voxel axes) are the AVG's. ``phase0_reorder``: (phase 0's, AVG's) voxel order as
    axis codes, e.g. ``("RAS", "LPS")``, when phase 0 stores its voxels in another order and
    must be reordered (:mod:`data.reorient`); None when both are stored alike.
    ``avg_series``/``phase0_series``: the DICOM series read, when that side is DICOM (its path
    is then the series' folder); None for a NIfTI file. ``phases``: its other gated phases
    when phases were asked for (:class:`PatientPhases`), else None."""

    patient: str
    safe_id: str
    avg_path: Path
    phase0_path: Path
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    phase0_reorder: tuple[str, str] | None = None
    avg_series: SeriesInfo | None = None
    phase0_series: SeriesInfo | None = None
    phases: PatientPhases | None = None


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


def _grid_problem(avg: VolumeInfo, other: VolumeInfo, atol_mm: float
                  ) -> tuple[tuple[str, str] | None, str | None]:
    """(reorder, None) when ``other`` lies on the AVG's world grid (reorder: its voxel order and
    the AVG's, or None when stored alike); (None, reason naming both files) when it does not."""
    match = compare_grids(avg, other, atol_mm)
    if match.differences:
        return None, (f"different voxel grids: {avg.path} and {other.path}: "
                      f"{mismatch_text(match, atol_mm)}")
    reorder = (match.from_axcodes, match.to_axcodes) if match.reordered else None
    if reorder is not None and not has_world_geometry(other.header):
        return None, (f"cannot reorder {other.path} ({reorder[0]}) into the voxel order of "
                      f"{avg.path} ({reorder[1]}): it has neither a qform nor an sform")
    return reorder, None


def _phase_groups(folder: Path, dicom: bool, request: PhaseRequest
                  ) -> dict[float, list[_Source]]:
    """The files directly in ``folder`` (or the CT series under it, when ``dicom``) naming a
    phase the request wants, by phase (%); DataError naming the folder when it cannot be read."""
    groups: dict[float, list[_Source]] = {}
    if dicom:
        sources = [(s.description, _Source(s.folder, s)) for s in find_series(folder)
                   if s.modality == "CT"]
    else:
        try:
            files = sorted(p for p in folder.iterdir() if p.is_file() and is_nifti_file(p))
        except OSError as exc:
            raise DataError(f"{folder}: cannot list the phase files ({exc})") from exc
        sources = [(p.name, _Source(p)) for p in files]
    for name, source in sources:
        percent = gated_percent(name)
        if percent is not None and request.wants(percent):
            groups.setdefault(percent, []).append(source)
    return groups


def _duplicate_reason(folder: Path, percent: float, sources: list[_Source]) -> str:
    """``duplicate: 2 files in <folder> name phase 50 %: a.nii.gz, b.nii.gz`` (or series)."""
    label = phase_label(percent)
    if sources[0].series is not None:
        names = "; ".join(s.series.label() for s in sources if s.series is not None)
        return (f"duplicate: {len(sources)} CT series under {folder} name phase {label} %: "
                f"{names}; which one is meant is unclear, so neither is used")
    names = ", ".join(s.path.name for s in sources)
    return (f"duplicate: {len(sources)} files in {folder} name phase {label} %: {names}; which "
            f"one is meant is unclear, so neither is used")


def check_phases(folder: Path, dicom: bool, avg: VolumeInfo, request: PhaseRequest,
                 atol_mm: float = AFFINE_ATOL_MM) -> PatientPhases:
    """The gated phases other than 0 that ``request`` wants, found in a patient's phases
    ``folder`` (NIfTI files by the percentage in their name, or, when ``dicom``, CT series by
    the one in their description), each read in full and checked to lie on the AVG's world
    grid like phase 0. ``missing`` is left empty: which phases a patient lacks depends on the
    other patients (:func:`pair_patients`)."""
    found, problems = [], []
    for percent, sources in sorted(_phase_groups(folder, dicom, request).items()):
        if len(sources) > 1:
            problems.append(PhaseProblem(percent, _duplicate_reason(folder, percent, sources)))
            continue
        reasons: list[str] = []
        info = _read_fully(sources[0], reasons)
        reorder, reason = _grid_problem(avg, info, atol_mm) if info is not None else (None, None)
        if reason is not None:
            reasons.append(reason)
        if reasons:
            problems += [PhaseProblem(percent, r) for r in reasons]
            continue
        found.append(PhaseSource(percent, sources[0].path, reorder, sources[0].series))
    return PatientPhases(folder, dicom, tuple(found), (), tuple(problems))


def check_patient(patient: str, layout: ExportLayout, atol_mm: float = AFFINE_ATOL_MM,
                  phases: PhaseRequest | None = None
                  ) -> tuple[PairedPatient | None, list[str]]:
    """Pair one patient: the paired record, or every reason it cannot be paired (affines
    must agree within ``atol_mm``). With ``phases``, a paired patient's other gated phases are
    checked too (:func:`check_phases`)."""
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
    reorder, reason = _grid_problem(avg, phase0, atol_mm)
    if reason is not None:
        return None, [reason]
    if reorder is not None:
        logger.info("%s: phase 0 stores its voxels %s, the AVG %s; same world grid, phase 0 "
                    "will be reordered", patient, *reorder)
    others = None if phases is None else check_phases(
        layout.phases_root / patient, phase0_src.series is not None, avg, phases, atol_mm)
    return PairedPatient(patient, safe_patient_id(patient), avg.path, phase0.path, avg.shape,
                         avg.spacing_mm, reorder, avg_src.series, phase0_src.series, others), []


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


def prepared_phases(paired: Iterable[PairedPatient], request: PhaseRequest) -> tuple[float, ...]:
    """The phases (%) a dataset prepared with ``request`` holds, sorted: 0 (always: the
    anchor), every phase asked for, and with ``request.every`` any phase a patient has."""
    seen = {p for pair in paired if pair.phases is not None for p in pair.phases.seen}
    return tuple(sorted({0.0, *request.percents} | (seen if request.every else set())))


def _with_missing_phases(paired: list[PairedPatient], request: PhaseRequest
                         ) -> list[PairedPatient]:
    """The pairs with ``phases.missing`` filled in: every prepared phase (other than 0) that no
    file or series of the patient names."""
    wanted = [p for p in prepared_phases(paired, request) if p != 0]
    filled = []
    for pair in paired:
        if pair.phases is not None:
            missing = tuple(p for p in wanted if p not in pair.phases.seen)
            pair = replace(pair, phases=replace(pair.phases, missing=missing))
        filled.append(pair)
    return filled


def pair_patients(layout: ExportLayout, progress: bool = True,
                  atol_mm: float = AFFINE_ATOL_MM, phases: PhaseRequest | None = None
                  ) -> tuple[list[PairedPatient], list[UnpairedPatient]]:
    """Check every patient folder; return the paired patients and every problem found.

    Every patient found under either root ends up in exactly one of the two lists. With
    ``phases``, each paired patient carries its other gated phases (:class:`PatientPhases`),
    missing ones included.
    """
    paired, unpaired = [], []
    patients = list_patients(layout.avg_root, layout.phases_root)
    collisions = file_name_collisions(patients)
    for patient in tqdm(patients, desc="pairing", unit="patient", disable=not progress):
        pair, problems = check_patient(patient, layout, atol_mm, phases)
        problems += [collisions[patient]] if patient in collisions else []
        unpaired += [UnpairedPatient(patient, reason) for reason in problems]
        if pair is not None and not problems:
            paired.append(pair)
    return (paired if phases is None else _with_missing_phases(paired, phases)), unpaired


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
