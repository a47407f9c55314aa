"""The training pictures of a run page: their file names and the steps found among them.

A displayed step is a set of PNGs in ``web/images`` named
``epoch{E:03d}_iter{N:08d}_{label}.png``, one per visual; the page is rebuilt from the files
present, so the names are the record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from util.names import safe_name

#: Visual names shown first, in this order; others follow alphabetically.
LABEL_ORDER = ("real_A", "fake_B", "real_B")

_STEP_FILE = re.compile(r"^epoch(\d+)_iter(\d+)_(.+)\.png$")


def step_image_name(epoch: int, total_iters: int, label: str) -> str:
    """The file name of a training picture: ``epoch{E:03d}_iter{N:08d}_{label}.png``."""
    return f"epoch{epoch:03d}_iter{total_iters:08d}_{safe_name(label)}.png"


@dataclass(frozen=True)
class DisplayedStep:
    """A training step with pictures in ``web/images``: its epoch, iteration count and visuals."""

    epoch: int
    total_iters: int
    labels: tuple[str, ...]


def _label_key(label: str) -> tuple[int, str]:
    rank = LABEL_ORDER.index(label) if label in LABEL_ORDER else len(LABEL_ORDER)
    return rank, label


def displayed_steps(image_dir: Path) -> list[DisplayedStep]:
    """The steps whose pictures are in ``image_dir``, newest (epoch, iteration) first."""
    found: dict[tuple[int, int], list[str]] = {}
    if image_dir.is_dir():
        for path in image_dir.iterdir():
            match = _STEP_FILE.match(path.name)
            if match:
                found.setdefault((int(match[1]), int(match[2])), []).append(match[3])
    return [DisplayedStep(epoch, iters, tuple(sorted(labels, key=_label_key)))
            for (epoch, iters), labels in sorted(found.items(), reverse=True)]
