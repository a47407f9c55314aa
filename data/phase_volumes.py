"""The respiratory phases of a prepared dataset: which phases a split holds, their files, and
their volumes loaded against the AVGs' grids (for :class:`data.nifti_aligned_dataset
.NiftiAlignedDataset` and its 3-D subclass with ``--phases``).

Phase 0 is ``<split>B/``; phase p is ``<split>B_p<p>/`` beside it (:mod:`util.phases`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from data.ct_volumes import SliceStack, check_same_geometry, load_slice_stack
from data.image_folder import make_dataset
from data.nifti_io import VolumeInfo, nifti_stem
from data.volume_cache import LazyStacks
from util.errors import ConfigError, DataError
from util.phases import folder_phase, parse_phases, phase_folder, phase_label

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhaseStacks:
    """The target volumes of one respiratory phase: ``stacks[rows[v]]`` is patient v's, for
    the patients v in ``rows`` (those with a file of that phase)."""

    percent: float
    rows: dict[int, int]
    stacks: Sequence[SliceStack]

    def get(self, patient_index: int) -> SliceStack | None:
        """Patient ``patient_index``'s stack of this phase (decoded now when lazy), None when the
        patient has no file of it."""
        row = self.rows.get(patient_index)
        return None if row is None else self.stacks[row]


def checked_phases(phases: Sequence[float] | None, a_to_b: bool) -> tuple[float, ...]:
    """The phases a dataset serves as sorted unique % (``()`` for None: phase 0 alone, no
    phase planes); ConfigError for an empty list, a percentage outside [0, 100) or BtoA."""
    if phases is None:
        return ()
    values = tuple(sorted({float(p) for p in phases}))
    if not values or any(not 0.0 <= p < 100.0 for p in values):
        raise ConfigError(f"phases must be percentages in [0, 100), at least one; got "
                          f"{list(phases)}")
    if not a_to_b:
        raise ConfigError("--phases trains AVG -> phase p; --direction BtoA has no phase to "
                          "condition on: pass --direction AtoB")
    return values


def find_phases(root: Path, split: str) -> tuple[float, ...]:
    """Sorted phases (%) of the folders of ``split`` under ``root`` (``<split>B`` = 0,
    ``<split>B_p<p>``: see :func:`util.phases.folder_phase`)."""
    if not root.is_dir():
        return ()
    found = (folder_phase(d.name, split) for d in root.iterdir() if d.is_dir())
    return tuple(sorted(p for p in found if p is not None))


def dataset_phases(text: str, root: Path, split: str) -> tuple[float, ...] | None:
    """``--phases`` for the ``split`` of dataroot ``root``: None for ``""`` (phase 0 alone, as
    before); ``"all"``: every phase folder of the split there (the ten standard phases when the
    split has no truth folder at all: prediction without truth); else :func:`parse_phases`."""
    if not text.strip():
        return None
    if text.strip().lower() != "all":
        return parse_phases(text)
    found = find_phases(root, split)
    if not found:
        logger.info("%s: no %sB folders, --phases all = the standard ten phases", root, split)
        return parse_phases("all")
    if found == (0.0,):
        logger.warning("%s: --phases all finds phase 0 alone (%sB/); prepare_dataset.py "
                       "--phases all writes the others", root, split)
    return found


def phase_files(folder_b: Path, phases: Sequence[float], patient_ids: Sequence[str],
                known_ids: set[str]) -> dict[float, dict[int, Path]]:
    """{phase: {patient index: file}} of every phase but 0 (phase 0 is ``folder_b``, paired
    beforehand), read from ``folder_b.parent / phase_folder(split, p)``.

    ConfigError naming every missing phase folder and what to run; DataError for files of no
    known patient (``known_ids``: every AVG's id) or duplicated ids, reported together. A
    patient without some phases is logged once, naming them; its samples of them left out.
    """
    others = [p for p in phases if p != 0]
    if not others:
        return {}
    split = folder_b.name[:-1] if folder_b.name.endswith("B") else ""
    if not split:
        raise ConfigError(f"{folder_b}: phases are read beside a phase-0 folder named "
                          f"<split>B (trainB, testB); this one is not")
    folders = {p: folder_b.parent / phase_folder(split, p) for p in others}
    missing = [str(f) for f in folders.values() if not f.is_dir()]
    if missing:
        raise ConfigError(f"phase folder(s) not found: {', '.join(missing)}; write them with "
                          f"prepare_dataset.py --phases all (or --phases {phase_labels(phases)}), "
                          f"or ask for the phases present")
    files: dict[float, dict[int, Path]] = {}
    problems: list[str] = []
    lacking: dict[int, list[float]] = {}
    for percent, folder in folders.items():
        by_id, found = _files_by_id(folder, known_ids)
        problems += found
        files[percent] = {v: by_id[pid] for v, pid in enumerate(patient_ids) if pid in by_id}
        for v in set(range(len(patient_ids))) - files[percent].keys():
            lacking.setdefault(v, []).append(percent)
    if problems:
        raise DataError("phase volumes without their AVG:\n  " + "\n  ".join(problems))
    for v, absent in sorted(lacking.items()):
        logger.warning("%s: no volume of phase(s) %s %% in %s; its samples of those phases are "
                       "left out", patient_ids[v], phase_labels(absent),
                       ", ".join(str(folders[p]) for p in absent))
    return files


def _files_by_id(folder: Path, known_ids: set[str]) -> tuple[dict[str, Path], list[str]]:
    """{id: NIfTI file} of ``folder`` (searched as :func:`data.image_folder.make_dataset`
    does), and the problems: files of an id not in ``known_ids``, ids found twice."""
    by_id: dict[str, Path] = {}
    problems: list[str] = []
    for path in make_dataset(folder, nifti_only=True):
        pid = nifti_stem(path)
        if pid in by_id:
            problems.append(f"{path}: same patient id '{pid}' as {by_id[pid]}")
        elif pid not in known_ids:
            problems.append(f"{path}: no matching AVG file (no patient '{pid}')")
        else:
            by_id[pid] = path
    return by_id, problems


def phase_labels(phases: Sequence[float]) -> str:
    """Phases as written in messages and options: ``"0,30,60"``."""
    return ",".join(phase_label(p) for p in phases)


def load_against(paths: list[Path], refs: list[VolumeInfo], atol_mm: float, label: str
                  ) -> tuple[list[SliceStack], list[str]]:
    """Decode the volumes at ``paths`` (one phase's), each checked against the geometry of its
    AVG ``refs[i]``; the stacks and every problem found."""
    stacks: list[SliceStack] = []
    problems: list[str] = []
    for path, ref in tqdm(list(zip(paths, refs, strict=True)), unit="patient",
                          desc=f"loading phase {label}"):
        try:
            stack = load_slice_stack(path)
            check_pair_geometry(ref, stack.info, atol_mm, "every phase")
        except DataError as exc:
            problems.append(str(exc))
            continue
        stacks.append(stack)
    return stacks, problems


def lazy_against(paths: list[Path], refs: list[VolumeInfo], capacity: int, atol_mm: float
                  ) -> tuple[LazyStacks, list[str]]:
    """Headers of the volumes at ``paths``, voxels decoded on use; every geometry that
    differs from its AVG's (``refs[i]``) reported."""
    stacks = LazyStacks(paths, capacity)
    problems: list[str] = []
    for ref, info in zip(refs, stacks.infos, strict=True):
        try:
            check_pair_geometry(ref, info, atol_mm, "every phase")
        except DataError as exc:
            problems.append(str(exc))
    return stacks, problems


def check_pair_geometry(a: VolumeInfo, b: VolumeInfo, atol_mm: float,
                         what: str = "phase 0") -> None:
    """:func:`check_same_geometry` of an A/B pair, pointing a hand-made folder's user to
    prepare_dataset.py when it fails (``what``: the B volumes it writes)."""
    try:
        check_same_geometry(a, b, atol_mm)
    except DataError as exc:
        raise DataError(f"{exc}; prepare_dataset.py checks each pair's world grid and writes "
                        f"{what} in its AVG's voxel order") from exc
