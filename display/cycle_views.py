"""Pictures of a synthesised breathing cycle: trajectories against the truth's, and the phases
side by side.

Both are PNGs for the results pages and the README, written atomically; HU are windowed to
8 bits here and only here, for display.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from display.windows import get_window
from util.atomic import atomic_write_with

CYCLE_DPI = 100
#: Line styles of the answers in a trajectory plot.
_STYLES = {"truth": ("#222222", "-", "o"), "model": ("#1f77b4", "--", "s"),
           "AVG": ("#c2185b", ":", None)}


def save_trajectory_plot(path: str | Path,
                         panels: Mapping[str, Mapping[str, Mapping[float, float]]],
                         title: str) -> Path:
    """One panel per trajectory (e.g. "diaphragm height (mm)", "GTV superior-inferior (mm)"),
    each {answer: {phase %: position mm}} with answers among truth, model and AVG (the AVG, one
    position, drawn flat); phases on the x axis. Returns ``path``."""
    fig = Figure(figsize=(4.2 * max(1, len(panels)), 3.2), dpi=CYCLE_DPI, layout="constrained")
    axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0]
    for ax, (label, answers) in zip(axes, panels.items(), strict=False):
        for answer, positions in answers.items():
            colour, line, marker = _STYLES.get(answer, ("#888888", "-", None))
            phases = sorted(p for p, v in positions.items() if math.isfinite(v))
            ax.plot(phases, [positions[p] for p in phases], color=colour, linestyle=line,
                    marker=marker, markersize=4, label=answer)
        ax.set_xlabel("breathing phase (%)")
        ax.set_ylabel(label)
        ax.set_xticks(range(0, 100, 10))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=CYCLE_DPI),
                             suffix=".png")


def save_cycle_strip(path: str | Path, rows: Mapping[str, Sequence[np.ndarray]],
                     phases: Sequence[float], title: str, window: str = "lung",
                     spacing_mm: tuple[float, float] = (1.0, 1.0)) -> Path:
    """The phases side by side, one row per answer (e.g. "synthetic", "truth"): each image a
    (rows, columns) HU coronal plane, superior up, shown in the display ``window`` with its
    aspect from ``spacing_mm`` (row, column). Returns ``path``."""
    shown = get_window(window)
    lo, hi = shown.level_hu - shown.width_hu / 2, shown.level_hu + shown.width_hu / 2
    n_rows, n_cols = len(rows), len(phases)
    fig = Figure(figsize=(1.3 * n_cols + 0.6, 1.6 * n_rows + 0.5), dpi=CYCLE_DPI,
                 layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for c, (image, percent) in enumerate(zip(images, phases, strict=True)):
            ax = axes[r][c]
            ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest",
                      aspect=spacing_mm[0] / spacing_mm[1])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{percent:g} %", fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.suptitle(title, fontsize=10)
    return atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=CYCLE_DPI),
                             suffix=".png")
