"""File names made from outside text (patient folder names, visual labels) that stay in place."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping

from util.errors import DataError

_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_DOT_RUNS = re.compile(r"\.{2,}")


def safe_name(text: str) -> str:
    """``text`` made safe as (part of) a file name in one folder.

    Characters other than letters, digits, ``.``, ``_`` and ``-`` become ``_``, runs of dots
    become ``_`` and leading dots are dropped, so no path separator, ``..`` or hidden name is
    left. Raises :class:`DataError` if nothing usable remains.
    """
    name = _DOT_RUNS.sub("_", _UNSAFE_CHARS.sub("_", text)).lstrip(".")
    if not name:
        raise DataError(f"{text!r}: nothing usable as a file name")
    return name


#: What ``test.py`` appends to a patient's safe name for its predicted volume.
PREDICTION_SUFFIX = "_fake_B"
#: What is appended to a prediction's name for its voxelwise standard deviation (``--samples``).
STD_SUFFIX = "_std"


def prediction_file_name(patient_id: str) -> str:
    """File name of a patient's predicted phase-0 volume: ``<safe id>_fake_B.nii.gz``."""
    return f"{safe_name(patient_id)}{PREDICTION_SUFFIX}.nii.gz"


def std_file_name(patient_id: str) -> str:
    """File name of a patient's standard-deviation volume: ``<safe id>_fake_B_std.nii.gz``."""
    return f"{safe_name(patient_id)}{PREDICTION_SUFFIX}{STD_SUFFIX}.nii.gz"


def phase_suffix(percent: float) -> str:
    """What names a phase other than 0 in output names: ``""`` for 0 %, ``"_p50"`` for 50 %."""
    return "" if percent == 0 else f"_p{percent:g}"


def phase_prediction_file_name(patient_id: str, percent: float) -> str:
    """File name of a patient's predicted phase: ``<safe id>_fake_B.nii.gz`` for phase 0 (as a
    phase-0 model writes it), ``<safe id>_fake_B_p50.nii.gz`` for 50 %."""
    return f"{safe_name(patient_id)}{PREDICTION_SUFFIX}{phase_suffix(percent)}.nii.gz"


#: Volumes derived from a synthetic cycle: the maximum-intensity projection of the phases,
#: the mean of the whole ten-phase cycle (the synthetic AVG), and the mean of fewer phases.
CYCLE_KINDS = ("mip", "avg", "mean")


def cycle_suffix(kind: float | str) -> str:
    """What names a volume of a cycle after the patient's: ``"_p50"`` for phase 50 %, ``""``
    for phase 0, ``"_mip"``, ``"_avg"`` or ``"_mean"`` for one of :data:`CYCLE_KINDS`."""
    if isinstance(kind, str):
        if kind not in CYCLE_KINDS:
            raise ValueError(f"unknown cycle volume {kind!r}; one of {', '.join(CYCLE_KINDS)}")
        return f"_{kind}"
    return phase_suffix(kind)


def cycle_file_name(patient_id: str, kind: str) -> str:
    """File name of a volume derived from a patient's synthetic cycle, ``kind`` in
    :data:`CYCLE_KINDS`: ``<safe id>_fake_B_mip.nii.gz``, ``<safe id>_fake_B_avg.nii.gz``."""
    return f"{safe_name(patient_id)}{PREDICTION_SUFFIX}{cycle_suffix(kind)}.nii.gz"


#: Suffix of a motion generator's displacement field: ``<id>_displacement.nii.gz``.
DISPLACEMENT_SUFFIX = "_displacement"


def displacement_file_name(patient_id: str, percent: float = 0.0) -> str:
    """File name of a patient's displacement field (NIfTI vector image, world mm), of phase 0
    or of ``percent`` (``<safe id>_displacement_p50.nii.gz``)."""
    return f"{safe_name(patient_id)}{DISPLACEMENT_SUFFIX}{phase_suffix(percent)}.nii.gz"


def unique_output_names(sources: Mapping[str, str | os.PathLike[str]],
                        name_of: Callable[[str], str],
                        relation: str = "would both be written as",
                        fold_case: bool = True) -> dict[str, str]:
    """``{id: name_of(id)}`` for every id of ``sources``, refusing two ids with one name.

    ``sources``: {id: the input it comes from (a path), named in the message}. Names to be
    created are compared case-insensitively (``fold_case``): on macOS and Windows disks two
    names that differ only in case are one file; names of existing files need not be. Raises
    :class:`DataError` in one line listing every collision, each naming both inputs,
    ``relation`` and the name they share, so a command can refuse before it writes.
    """
    names = {pid: name_of(pid) for pid in sources}
    owner: dict[str, str] = {}
    clashes = []
    for pid, name in names.items():
        first = owner.setdefault(name.casefold() if fold_case else name, pid)
        if first != pid:
            clashes.append(f"{os.fspath(sources[first])} and {os.fspath(sources[pid])} "
                           f"{relation} {names[first]}")
    if clashes:
        count = (f"{len(clashes)} output name collisions: " if len(clashes) > 1
                 else "output name collision: ")
        raise DataError(f"{count}{'; '.join(clashes)}; rename the inputs so that their safe "
                        f"names (letters, digits, '.', '_', '-') differ, in more than case")
    return names
