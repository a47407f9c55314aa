"""Respiratory phases of a 4DCT: their percentages, folder names and the cyclic encoding.

A gated 4DCT holds ten phases named by the percentage of the breathing cycle they sample
(``*Gated 0.0A*`` = 0 %, end-inhale, ... ``*Gated 90.0A*``). A dataset prepared with
``prepare_dataset.py --phases`` keeps phase 0 where a phase-0 dataset has it
(``<split>B/<id>.nii.gz``) and every other phase p in ``<split>B_p<p>/<id>.nii.gz`` (``trainB_p50``;
``trainB_p12.5`` for a fractional percentage), so a phase-0 model reads such a dataset unchanged.

A phase-conditioned generator sees its target phase as two constant input planes appended after
the image channels: (sin, cos) of 2 pi p / 100. The encoding is cyclic: 90 % sits next to 0 %,
as the breathing cycle does, which a class index would not say.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import numpy as np

from util.errors import ConfigError

#: The ten phases of a standard gated 4DCT export, in %.
STANDARD_PHASES: tuple[float, ...] = tuple(float(p) for p in range(0, 100, 10))
#: Input planes that carry the target phase: sin and cos of its angle in the cycle.
PHASE_CHANNELS = 2

_GATED = re.compile(r"gated\s*([0-9]+(?:\.[0-9]+)?)\s*%?\s*a?", re.IGNORECASE)
_FOLDER = re.compile(r"^(?P<split>.+)B_p(?P<pct>[0-9]+(?:\.[0-9]+)?)$")


def phase_label(percent: float) -> str:
    """A phase's percentage as written in names: 50.0 -> ``"50"``, 12.5 -> ``"12.5"``."""
    return f"{percent:g}"


def phase_folder(split: str, percent: float) -> str:
    """The dataset folder holding phase ``percent`` of ``split``: ``trainB`` for phase 0 (where
    a phase-0 dataset has it), ``trainB_p50`` for 50 %."""
    return f"{split}B" if percent == 0 else f"{split}B_p{phase_label(percent)}"


def folder_phase(name: str, split: str) -> float | None:
    """The phase (%) a dataset folder of ``split`` holds (inverse of :func:`phase_folder`), None
    for a folder that holds no phase of that split."""
    if name == f"{split}B":
        return 0.0
    match = _FOLDER.match(name)
    if match is None or match["split"] != split:
        return None
    return float(match["pct"])


def gated_percent(name: str) -> float | None:
    """The phase (%) named by a file or series name: ``"PT1 Gated 50.0A.nii.gz"`` -> 50.0; None
    when the name names no gated phase. Percentages outside [0, 100) are refused (None)."""
    match = _GATED.search(name)
    if match is None:
        return None
    percent = float(match.group(1))
    return percent if 0.0 <= percent < 100.0 else None


def parse_phases(text: str) -> tuple[float, ...]:
    """``--phases`` -> sorted unique percentages: ``"all"`` = the ten standard phases (a
    preparation takes every phase it finds), or a comma-separated list such as ``"0,50"``.
    ConfigError for anything else."""
    if text.strip().lower() == "all":
        return STANDARD_PHASES
    try:
        values = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError as exc:
        raise ConfigError(f"--phases takes 'all' or percentages such as 0,50; got {text!r}"
                          ) from exc
    if not values or any(not 0.0 <= v < 100.0 for v in values):
        raise ConfigError(f"--phases takes 'all' or percentages in [0, 100) such as 0,50; "
                          f"got {text!r}")
    return tuple(values)


def phase_angle(percent: float) -> float:
    """The phase's angle in the breathing cycle, radians: 2 pi p / 100."""
    return 2.0 * math.pi * percent / 100.0


def phase_encoding(percent: float) -> tuple[float, float]:
    """(sin, cos) of the phase's angle: the cyclic code a phase-conditioned generator reads."""
    angle = phase_angle(percent)
    return math.sin(angle), math.cos(angle)


def phase_planes(percent: float, shape: Iterable[int]) -> np.ndarray:
    """(2, *shape) float32 constant planes (sin, cos) of the phase, to append after the image
    channels of a network input of spatial ``shape``."""
    sides = tuple(shape)
    sin, cos = phase_encoding(percent)
    planes = np.empty((PHASE_CHANNELS, *sides), dtype=np.float32)
    planes[0], planes[1] = sin, cos
    return planes
