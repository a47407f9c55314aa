"""File names made from outside text (patient folder names, visual labels) that stay in place."""

from __future__ import annotations

import re

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


def prediction_file_name(patient_id: str) -> str:
    """File name of a patient's predicted phase-0 volume: ``<safe id>_fake_B.nii.gz``."""
    return f"{safe_name(patient_id)}{PREDICTION_SUFFIX}.nii.gz"
