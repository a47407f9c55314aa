"""The record of what a training trained on: each training patient's files by SHA-256, kept in
the training state so that a resume notices a changed training set.

A digest comes from ``<dataroot>/manifest.json`` (written by ``prepare_dataset.py``: the SHA-256
of the source the file was prepared from) when the manifest lists the file, else from the file's
own bytes (a DICOM folder: from its files' names and bytes), so that a file swapped for another
of the same size is noticed. Digests are written ``manifest:<hex>`` or ``file:<hex>``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

from data.base_dataset import BaseDataset
from data.nifti_aligned_dataset import NiftiAlignedDataset
from util.digests import file_sha256
from util.errors import ConfigError

logger = logging.getLogger(__name__)

#: {patient id: {"A": digest, "B": digest}} of a training set.
PatientDigests = Mapping[str, Mapping[str, str]]
#: Earlier training sets of a resumed run: [{"patients": [ids], "until_total_iters": n}].
DataHistory = list[dict[str, Any]]
_MANIFEST_SIDES = {"A": "avg_sha256", "B": "phase0_sha256"}


def manifest_digests(dataroot: Path) -> dict[Path, str]:
    """{resolved file path: ``manifest:<hex>``} of every file ``<dataroot>/manifest.json``
    lists; empty when there is no manifest or it cannot be read (with a warning)."""
    path = dataroot / "manifest.json"
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["patients"]
        return {(dataroot / entry["files"][side]).resolve(): f"manifest:{entry[key]}"
                for entry in entries for side, key in _MANIFEST_SIDES.items()
                if side in entry["files"] and entry.get(key)}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("%s: cannot read the digests (%s); hashing the training files instead",
                       path, exc)
        return {}


def path_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes; of a folder (a DICOM series), of its files' relative
    names and digests in sorted order."""
    if not path.is_dir():
        return file_sha256(path)
    digest = hashlib.sha256()
    for member in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{member.relative_to(path).as_posix()}\0{file_sha256(member)}\n"
                      .encode())
    return digest.hexdigest()


def training_digests(dataset: BaseDataset, dataroot: Path) -> dict[str, dict[str, str]]:
    """{patient: {"A": digest, "B": digest}} of a dataset of volumes (the files it reads);
    empty for a dataset of pictures."""
    if not isinstance(dataset, NiftiAlignedDataset):
        return {}
    known = manifest_digests(dataroot)
    files = [(pid, side, path) for pid, a, b in
             zip(dataset.patient_ids, dataset.paths_a, dataset.paths_b, strict=True)
             for side, path in (("A", a), ("B", b)) if path is not None]
    to_hash = [path for _, _, path in files if path.resolve() not in known]
    record: dict[str, dict[str, str]] = {pid: {} for pid in dataset.patient_ids}
    hashed = {path: f"file:{path_sha256(path)}" for path in
              tqdm(to_hash, desc="hashing training files", unit="file", leave=False,
                   disable=len(to_hash) < 10)}
    for pid, side, path in files:
        record[pid][side] = known.get(path.resolve()) or hashed[path]
    return record


def data_changes(saved: PatientDigests, current: PatientDigests) -> list[str]:
    """What differs between two training sets: patients removed, added, and whose files
    changed (empty when they are the same)."""
    removed = sorted(set(saved) - set(current))
    added = sorted(set(current) - set(saved))
    changed = [f"{pid} ({', '.join(_changed_sides(saved[pid], current[pid]))})"
               for pid in sorted(set(saved) & set(current)) if saved[pid] != current[pid]]
    return [f"{what}: {', '.join(ids)}" for what, ids in
            (("removed", removed), ("added", added), ("files changed", changed)) if ids]


def _changed_sides(saved: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """The sides ("A", "B") whose digest differs."""
    return [side for side in sorted({*saved, *current}) if saved.get(side) != current.get(side)]


def resumed_history(path: Path, saved: PatientDigests | None, current: PatientDigests | None,
                    history: DataHistory, total_iters: int, *,
                    allow_change: bool) -> tuple[DataHistory, bool]:
    """The earlier training sets to record for a training resumed from the training state
    ``path``, saved on the set ``saved`` (None: a state written before the record existed)
    after ``total_iters`` slices, now resumed on ``current`` (None: not checked); and whether
    the set changed.

    A changed set is a ConfigError naming what changed, unless ``allow_change``: then a warning,
    and ``saved`` joins the history."""
    if current is None:
        return history, False
    if saved is None:
        logger.warning("%s: saved without the record of its training data; the training set "
                       "could not be checked against the one the weights were trained on", path)
        return history, False
    changes = data_changes(saved, current)
    if not changes:
        return history, False
    what = "; ".join(changes)
    if not allow_change:
        raise ConfigError(f"{path}: the training data changed since this state was saved "
                          f"({what}). Nothing was written: resume with the same data, or add "
                          f"--allow_data_change to go on with the new set (both are recorded)")
    logger.warning("--allow_data_change: resuming on a changed training set (%s); the metadata "
                   "records the earlier set in patients.train_history", what)
    return [*history, {"patients": sorted(saved), "until_total_iters": total_iters}], True
