"""The split folders ``output/{train,val,test}{A,B}/<safe id>.nii.gz``, kept in step
with the paired patients.

Sources are copied byte for byte (``.nii.gz``) or gzip-compressed (``.nii``); a phase 0 that stores
its voxels in another order than its AVG is written reordered into the AVG's voxel order
(:mod:`data.reorient`, same raw values and world positions). A destination that already holds
those bytes is left alone, NIfTI files no patient owns are removed, and temp files
an interrupted run left behind are cleaned. Every write is atomic (:mod:`util.atomic`).

The other gated phases of a ``--phases`` run go to ``output/<split>B_p<p>/<safe id>.nii.gz``
(:func:`util.phases.phase_folder`) by the same rules (:func:`sync_phase_folders`); every run
also removes what phase folders (and their ``_structures`` folders) hold that the run did not
write, and a phase folder no longer prepared once it is empty, so a run without ``--phases``
leaves none behind.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import re
import shutil
import zlib
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from data.nifti_io import is_nifti_file
from data.pairing import SPLITS, PairedPatient
from data.reorient import reoriented_bytes
from data.structures import (
    STRUCTURES_SUFFIX,
    StructureSource,
    phase_structures_dir,
    structures_folder_phase,
)
from util.atomic import atomic_write_with, make_dirs
from util.digests import file_sha256
from util.errors import DataError, OutputError
from util.phases import folder_phase, phase_folder, phase_label

logger = logging.getLogger(__name__)

SIDES = ("A", "B")  # A: AVG (input), B: phase 0 (target)
REPORT_FILES = ("manifest.json", "unpaired.json", "unpaired.txt")
# util.atomic temp names: ".<dest name>.<8 mkstemp chars>.tmp<suffix>"
_SPLIT_TEMP = re.compile(r"^\..+\.nii\.gz\.[A-Za-z0-9_]{8}\.tmp\.nii\.gz$")
_REPORT_TEMP = re.compile(rf"^\.(?:{'|'.join(map(re.escape, REPORT_FILES))})\.[A-Za-z0-9_]{{8}}"
                          r"\.tmp$")
_CHUNK_BYTES = 1 << 20


def make_folder(path: Path) -> None:
    """Create the folder ``path`` and missing parents (:func:`util.atomic.make_dirs`: an
    OutputError naming it, or the file in the way, when that fails)."""
    make_dirs(path)


def _listing(folder: Path) -> list[Path]:
    """The entries of an output folder, sorted; OutputError naming it if it cannot be read."""
    try:
        return sorted(folder.iterdir())
    except OSError as exc:
        raise OutputError(f"{folder}: cannot list the folder ({exc.strerror or exc})") from exc


def _remove(path: Path) -> None:
    """Delete the file ``path``; OutputError naming it if that fails."""
    try:
        path.unlink()
    except OSError as exc:
        raise OutputError(f"{path}: cannot remove the file ({exc.strerror or exc})") from exc


def _source_sha256(path: Path) -> str:
    """:func:`util.digests.file_sha256` of a source file, DataError naming it if it can no
    longer be read."""
    try:
        return file_sha256(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def _is_gzipped_name(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def _is_up_to_date(src: Path, src_sha256: str, dest: Path) -> bool:
    """True when ``dest`` already holds what copying ``src`` would write (same NIfTI bytes)."""
    if _is_gzipped_name(src):
        try:
            return dest.is_file() and not dest.is_symlink() and \
                dest.stat().st_size == src.stat().st_size and file_sha256(dest) == src_sha256
        except OSError:
            return False
    return _holds_nifti(dest, src_sha256)


def _holds_nifti(dest: Path, nii_sha256: str) -> bool:
    """True when ``dest`` is a plain gzip file whose decompressed bytes have ``nii_sha256``."""
    if dest.is_symlink() or not dest.is_file():
        return False
    try:
        return file_sha256(dest, gunzip=True) == nii_sha256
    except (OSError, EOFError, zlib.error):
        return False


def _gzip_into(fin: BinaryIO, tmp: Path) -> None:
    """gzip the stream ``fin`` into ``tmp`` with a fixed header (no name, mtime 0), so the same
    bytes always give the same file."""
    with tmp.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        shutil.copyfileobj(fin, gz, _CHUNK_BYTES)


def _gzip_file_into(src: Path, tmp: Path) -> None:
    """:func:`_gzip_into` of the file ``src``."""
    with src.open("rb") as fin:
        _gzip_into(fin, tmp)


def _copy_source(src: Path, dest: Path) -> None:
    """Atomically place ``src`` at ``dest`` (.nii.gz): byte copy, or gzip of a ``.nii``."""
    if _is_gzipped_name(src):
        atomic_write_with(dest, lambda tmp: shutil.copyfile(src, tmp), suffix=".nii.gz")
    else:
        atomic_write_with(dest, lambda tmp: _gzip_file_into(src, tmp), suffix=".nii.gz")


def place_source(src: Path, src_sha256: str, dest: Path,
                 reorder: tuple[str, str] | None = None) -> bool:
    """Make ``dest`` (.nii.gz) hold ``src``: copied, or with its voxels reordered from
    ``reorder[0]`` to ``reorder[1]`` axis codes. Returns False when ``dest`` already held it
    (a reordered copy is checked against the bytes it would get, so it follows its source)."""
    if reorder is None:
        if _is_up_to_date(src, src_sha256, dest):
            return False
        _copy_source(src, dest)
        return True
    nii = reoriented_bytes(src, *reorder)
    if _holds_nifti(dest, hashlib.sha256(nii).hexdigest()):
        return False
    atomic_write_with(dest, lambda tmp: _gzip_into(io.BytesIO(nii), tmp), suffix=".nii.gz")
    return True


def _inside(path: Path, root: Path) -> bool:
    """True when ``path`` (its folder resolved, links followed) lies inside resolved ``root``."""
    return (path.parent.resolve() / path.name).is_relative_to(root)


def plain_folder(output: Path, name: str) -> Path:
    """``output/<name>``, created; DataError unless it is a plain folder inside ``output``
    (resolved)."""
    folder = output / name
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()) \
            or not folder.resolve().is_relative_to(output):
        raise DataError(f"{folder}: expected a plain folder inside {output}; "
                        f"move it away and run again")
    make_folder(folder)
    return folder


def phase_dir(output: Path, split: str, percent: float) -> Path:
    """``output/<split>B_p<p>`` (:func:`util.phases.phase_folder`), created, checked like the
    split folders."""
    return plain_folder(output, phase_folder(split, percent))


def _split_folders(output: Path) -> list[Path]:
    """The six split folders, created, each checked to resolve inside ``output``."""
    return [plain_folder(output, f"{split}{side}") for split in SPLITS for side in SIDES]


def clean_temp_files(output: Path, folders: list[Path]) -> int:
    """Delete temp files an interrupted run left in ``output`` and the split folders."""
    removed = 0
    for folder, pattern in [(output, _REPORT_TEMP)] + [(f, _SPLIT_TEMP) for f in folders]:
        for path in _listing(folder):
            if pattern.match(path.name) and (path.is_file() or path.is_symlink()):
                _remove(path)
                removed += 1
    if removed:
        logger.info("removed %d temp files left by an interrupted run", removed)
    return removed


def sync_split_folders(paired: list[PairedPatient], splits: dict[str, str], output: Path,
                       progress: bool = True) -> tuple[list[dict], int, int, int]:
    """Make the six split folders hold exactly the paired patients' files.

    Returns (manifest entries, files copied, files already identical, stale files removed).
    """
    folders = _split_folders(output)
    clean_temp_files(output, folders)
    entries, expected, copied, skipped = [], set(), 0, 0
    for pair in tqdm(paired, desc="copying", unit="patient", disable=not progress):
        split, files, digests = splits[pair.patient], {}, {}
        for side, src in zip(SIDES, (pair.avg_path, pair.phase0_path), strict=True):
            dest = output / f"{split}{side}" / f"{pair.safe_id}.nii.gz"
            if not _inside(dest, output):
                raise DataError(f"{dest}: destination for patient {pair.patient!r} resolves "
                                f"outside {output}")
            digests[side] = _source_sha256(src)
            if place_source(src, digests[side], dest, pair.phase0_reorder if side == "B"
                            else None):
                copied += 1
            else:
                skipped += 1
            expected.add(dest)
            files[side] = dest.relative_to(output).as_posix()
        entries.append({"patient": pair.patient, "safe_id": pair.safe_id, "split": split,
                        "avg": str(pair.avg_path.absolute()),
                        "phase0": str(pair.phase0_path.absolute()),
                        "avg_sha256": digests["A"], "phase0_sha256": digests["B"],
                        "phase0_reoriented": None if pair.phase0_reorder is None else
                        dict(zip(("from", "to"), pair.phase0_reorder, strict=True)),
                        "shape": list(pair.shape), "spacing_mm": [round(s, 6) for s in
                                                                  pair.spacing_mm],
                        "files": files})
    removed = 0
    for folder in folders:
        for path in _listing(folder):
            if is_nifti_file(path) and path not in expected and (path.is_file()
                                                                  or path.is_symlink()):
                logger.info("removing stale %s", path)
                _remove(path)
                removed += 1
    return entries, copied, skipped, removed


def sync_structure_folders(sources: dict[str, list[StructureSource]],
                           paired: list[PairedPatient], splits: dict[str, str],
                           output: Path, percent: float = 0.0) -> tuple[dict[str, dict], int]:
    """Make ``<split>B_structures/<structure>/<safe id>.nii.gz`` (for another phase
    ``percent``: ``<split>B_p<p>_structures/``) hold exactly the masks in ``sources`` (patient
    -> masks), copied or reordered into the AVG's voxel order like phase 0. Returns ({patient:
    {structure: manifest entry}}, files written); stale masks of patients no longer there are
    removed."""
    entries: dict[str, dict] = {}
    expected: set[Path] = set()
    written = 0
    for pair in paired:
        for source in sources.get(pair.patient, []):
            dest = (phase_structures_dir(output, splits[pair.patient], percent) / source.name
                    / f"{pair.safe_id}.nii.gz")
            if not _inside(dest, output):
                raise DataError(f"{dest}: destination of {source.path} resolves outside {output}")
            make_folder(dest.parent)
            digest = _source_sha256(source.path)
            written += place_source(source.path, digest, dest, source.reorder)
            expected.add(dest)
            entries.setdefault(pair.patient, {})[source.name] = {
                "source": str(source.path.absolute()), "sha256": digest,
                "file": dest.relative_to(output).as_posix(),
                "reoriented": None if source.reorder is None else
                dict(zip(("from", "to"), source.reorder, strict=True))}
    for split in SPLITS:
        folder = phase_structures_dir(output, split, percent)
        for sub in _listing(folder) if folder.is_dir() else []:
            for path in _listing(sub) if sub.is_dir() and not sub.is_symlink() else []:
                if is_nifti_file(path) and path not in expected:
                    logger.info("removing stale %s", path)
                    _remove(path)
    return entries, written


def _phase_folders_present(output: Path) -> dict[Path, float]:
    """{folder: phase %} of every plain ``<split>B_p<p>`` and ``<split>B_p<p>_structures``
    folder in ``output`` (phase 0's folders excluded)."""
    found = {}
    for path in _listing(output):
        if path.is_symlink() or not path.is_dir():
            continue
        for split in SPLITS:
            percent = folder_phase(path.name, split)
            percent = structures_folder_phase(path.name, split) if percent is None else percent
            if percent is not None and percent != 0:
                found[path] = percent
    return found


def _remove_stale(folder: Path, expected: set[Path], depth: int) -> int:
    """Delete the NIfTI files in ``folder`` (``depth`` 2: in its plain subfolders, as in a
    structures folder) that are not in ``expected``; returns how many."""
    removed = 0
    for path in _listing(folder):
        if depth > 1:
            removed += _remove_stale(path, expected, depth - 1) if path.is_dir() \
                and not path.is_symlink() else 0
        elif is_nifti_file(path) and path not in expected and (path.is_file()
                                                               or path.is_symlink()):
            logger.info("removing stale %s", path)
            _remove(path)
            removed += 1
    return removed


def _remove_if_empty(folder: Path) -> None:
    """Delete ``folder`` and its empty subfolders when nothing else is in them."""
    for sub in _listing(folder):
        if sub.is_dir() and not sub.is_symlink() and not any(sub.iterdir()):
            sub.rmdir()
    if not any(folder.iterdir()):
        logger.info("removing %s: its phase is no longer prepared", folder)
        folder.rmdir()


def sweep_phase_folders(output: Path, percents: tuple[float, ...],
                        expected: set[Path]) -> int:
    """Delete what phase folders hold that no longer belongs: the NIfTI files of every
    ``<split>B_p<p>`` folder that are not in ``expected`` (written by this run), the masks of
    the ``_structures`` folders of phases not in ``percents``, and then those phases' folders
    once empty (other files, e.g. a user's notes, are kept with their folder). The structures
    of prepared phases are kept in step by :func:`sync_structure_folders`, as phase 0's.
    Returns the number of files removed."""
    present = _phase_folders_present(output)
    structures = {f for f in present if f.name.endswith(STRUCTURES_SUFFIX)}
    clean_temp_files(output, sorted(set(present) - structures))
    removed = 0
    for folder, percent in sorted(present.items()):
        if folder in structures:
            removed += 0 if percent in percents else _remove_stale(folder, set(), depth=2)
        else:
            removed += _remove_stale(folder, expected, depth=1)
        if percent not in percents:
            _remove_if_empty(folder)
    return removed


def sync_phase_folders(paired: list[PairedPatient], splits: dict[str, str], output: Path,
                       percents: tuple[float, ...], progress: bool = True
                       ) -> tuple[dict[str, dict[str, dict]], int, int, set[Path]]:
    """Make ``<split>B_p<p>/<safe id>.nii.gz`` hold each paired patient's checked phases
    (:attr:`PairedPatient.phases`) other than 0, copied or reordered into the AVG's voxel order
    like phase 0; the folders of every phase in ``percents`` are created for every split.

    Returns ({patient: {phase label: manifest entry}}, files copied, files already identical,
    the destinations written), for :func:`sweep_phase_folders` to remove everything else.
    """
    folders = [phase_dir(output, split, p) for split in SPLITS for p in percents if p != 0]
    clean_temp_files(output, folders)
    entries: dict[str, dict[str, dict]] = {}
    expected: set[Path] = set()
    copied = skipped = 0
    with_phases = [p for p in paired if p.phases is not None and p.phases.found]
    for pair in tqdm(with_phases, desc="copying phases", unit="patient", disable=not progress):
        for source in pair.phases.found if pair.phases is not None else ():
            dest = output / phase_folder(splits[pair.patient], source.percent) / \
                f"{pair.safe_id}.nii.gz"
            if not _inside(dest, output):
                raise DataError(f"{dest}: destination of {source.path} resolves outside {output}")
            make_folder(dest.parent)
            digest = _source_sha256(source.path)
            if place_source(source.path, digest, dest, source.reorder):
                copied += 1
            else:
                skipped += 1
            expected.add(dest)
            entries.setdefault(pair.patient, {})[phase_label(source.percent)] = {
                "source": str(source.path.absolute()), "sha256": digest,
                "file": dest.relative_to(output).as_posix(),
                "reoriented": None if source.reorder is None else
                dict(zip(("from", "to"), source.reorder, strict=True))}
    return entries, copied, skipped, expected
