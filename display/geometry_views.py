"""Where the lungs end: pictures of a predicted phase 0's geometry.

:func:`save_lung_base_views` draws a coronal and a sagittal plane through the lung base of the
prediction, with the lung outlines of the truth, the prediction and the AVG over it, so a reader
sees at a glance whether the predicted diaphragm sits where the true one does (and where the AVG's
blurred one is). :func:`save_diaphragm_error_plot` draws the diaphragm position error of every
patient, the model's against the AVG's, patients ordered by breathing amplitude.

Volumes and lung masks are slice stacks (S, R, C) as in :mod:`display.ct_views` (axial slices
inferior -> superior, rows anterior -> posterior, columns patient right -> left) with spacing
``(thickness_mm, row_mm, col_mm)``. The lung masks are given, not computed here (``display/``
imports nothing of ``evaluation/``). Drawing uses matplotlib's object-oriented API only.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.typing import LineStyleType

from display.ct_views import VIEW_DPI, bare_axes, check_spacing, orientation_letters
from display.windows import DisplayWindow, describe_window
from util.atomic import atomic_write_with

logger = logging.getLogger(__name__)

#: The lung base: the lowest this fraction of the lungs' superior-inferior extent.
BASE_FRACTION = 0.25
#: Slices whose lung area is below this fraction of the largest are not counted as lung.
MIN_AREA_FRACTION = 0.1
#: Outline colours and line styles, one per volume (colour-blind-safe, visible on grey).
OUTLINES: dict[str, tuple[str, LineStyleType]] = {
    "truth": ("#ffd400", "solid"), "prediction": ("#00c8ff", "solid"),
    "AVG": ("#ff5cf0", "dashed")}
#: Colours of the model and the AVG in the per-patient plot.
MODEL_COLOUR, AVG_COLOUR = "#0072b2", "#999999"
#: Largest and smallest width and height (inches) of the two lung-base panels together.
_PANELS_MAX_IN = (10.0, 4.5)
_PANELS_MIN_IN = (6.0, 1.5)


@dataclass(frozen=True)
class BasePlanes:
    """The planes through the lung base: a row (coronal plane) and a column (sagittal plane)."""

    coronal_row: int  # 0 .. R-1, 0 = most anterior row
    sagittal_col: int  # 0 .. C-1, 0 = the patient's rightmost column


def lung_base_planes(lung: np.ndarray) -> BasePlanes:
    """The row and the column of a (S, R, C) bool lung mask that hold the most lung voxels in
    the lung base; the lowest index on ties; the middle row and column for an empty mask.

    The lungs span the slices whose lung area is at least :data:`MIN_AREA_FRACTION` of the
    largest (so a few voxels of gas below the diaphragm do not count); the base is the lowest
    :data:`BASE_FRACTION` of them, at least one slice.
    """
    lung = np.asarray(lung, dtype=bool)
    if lung.ndim != 3 or min(lung.shape) < 1:
        raise ValueError(f"expected a non-empty 3-D lung mask (S, R, C), got shape {lung.shape}")
    area = lung.sum(axis=(1, 2))
    if not area.any():
        return BasePlanes(lung.shape[1] // 2, lung.shape[2] // 2)
    slices = np.flatnonzero(area >= MIN_AREA_FRACTION * area.max())
    extent = int(slices[-1] - slices[0] + 1)
    top = int(slices[0]) + max(1, math.ceil(BASE_FRACTION * extent))
    base = lung[slices[0]:top]
    return BasePlanes(coronal_row=int(np.argmax(base.sum(axis=(0, 2)))),
                      sagittal_col=int(np.argmax(base.sum(axis=(0, 1)))))


def _check_inputs(pred: np.ndarray, lungs: dict[str, np.ndarray | None],
                  planes: BasePlanes) -> None:
    shape = np.shape(pred)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"expected a non-empty 3-D prediction (S, R, C), got shape {shape}")
    wrong = {name: np.shape(m) for name, m in lungs.items() if m is not None
             and np.shape(m) != shape}
    if wrong:
        raise ValueError(f"lung masks must have the prediction's shape {shape}, got "
                         + ", ".join(f"{name} {s}" for name, s in wrong.items()))
    if not (0 <= planes.coronal_row < shape[1] and 0 <= planes.sagittal_col < shape[2]):
        raise ValueError(f"{planes} is outside a stack of shape {shape}")


def _panels_size_in(width_mm: float, height_mm: float) -> tuple[float, float]:
    """Width and height (inches) of the two panels side by side at their physical aspect
    within :data:`_PANELS_MAX_IN`, then widened or heightened to :data:`_PANELS_MIN_IN` (room
    for the title and the legend; the pictures keep their aspect)."""
    max_width, max_height = _PANELS_MAX_IN
    width, height = max_width, max_width * height_mm / width_mm
    if height > max_height:
        width, height = max_height * width_mm / height_mm, max_height
    return max(width, _PANELS_MIN_IN[0]), max(height, _PANELS_MIN_IN[1])


def _outline(ax: Axes, mask: np.ndarray, name: str) -> None:
    """The boundary of a 2-D bool ``mask`` drawn in ``name``'s colour (nothing if uniform)."""
    if mask.any() and not mask.all():
        colour, style = OUTLINES[name]
        ax.contour(mask.astype(np.float32), levels=[0.5], colors=[colour], linewidths=1.3,
                   linestyles=style)


def lung_base_figure(pred: np.ndarray, truth_lung: np.ndarray | None, pred_lung: np.ndarray,
                     avg_lung: np.ndarray | None, spacing_mm: tuple[float, float, float],
                     planes: BasePlanes, window: DisplayWindow, title: str) -> Figure:
    """The figure that :func:`save_lung_base_views` saves; see there."""
    lungs = {"truth": truth_lung, "prediction": pred_lung, "AVG": avg_lung}
    _check_inputs(pred, lungs, planes)
    thickness_mm, row_mm, col_mm = check_spacing(spacing_mm)
    n_slices, n_rows, n_cols = np.shape(pred)
    widths_mm = (n_cols * col_mm, n_rows * row_mm)
    panels_in = _panels_size_in(sum(widths_mm), n_slices * thickness_mm)
    fig = Figure(figsize=(panels_in[0] + 0.3, panels_in[1] + 1.0), dpi=VIEW_DPI,
                 layout="constrained")
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": list(widths_mm)})
    panels = [(lambda v: np.asarray(v)[::-1, planes.coronal_row, :], thickness_mm / col_mm,
               f"coronal, row {planes.coronal_row}", ("S", "R", "L")),
              (lambda v: np.asarray(v)[::-1, :, planes.sagittal_col], thickness_mm / row_mm,
               f"sagittal, column {planes.sagittal_col}", ("S", "A", "P"))]
    for ax, (cut, aspect, label, letters) in zip(axes, panels, strict=True):
        ax.imshow(cut(pred), cmap="gray", vmin=window.lower_hu, vmax=window.upper_hu,
                  aspect=aspect, interpolation="nearest")
        for name, mask in lungs.items():
            if mask is not None:
                _outline(ax, cut(mask), name)
        ax.set_title(label, fontsize=10)
        bare_axes(ax)
        orientation_letters(ax, *letters)
    handles = [Line2D([], [], color=OUTLINES[name][0], linestyle=OUTLINES[name][1], lw=1.5,
                      label=f"lungs: {name}") for name, mask in lungs.items() if mask is not None]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9,
               frameon=False)
    fig.suptitle(f"{title}: lung base over the prediction, window {describe_window(window)}",
                 fontsize=10)
    return fig


def save_lung_base_views(path: str | os.PathLike[str], pred: np.ndarray,
                         truth_lung: np.ndarray | None, pred_lung: np.ndarray,
                         avg_lung: np.ndarray | None, spacing_mm: tuple[float, float, float],
                         planes: BasePlanes, window: DisplayWindow, title: str) -> Path:
    """Draw the prediction's coronal and sagittal planes through ``planes`` with the lung
    outlines over them to the PNG ``path`` (atomically); return ``path``.

    ``pred``: (S, R, C) float HU; ``truth_lung``, ``pred_lung``, ``avg_lung``: (S, R, C) bool lung
    masks of the truth, the prediction and the AVG (truth and AVG may be None, and are then not
    drawn); ``spacing_mm``: (thickness, row, column), mm, which gives the physical aspect ratio.
    Coronal: superior up, the patient's right on the left; sagittal: superior up, anterior on the
    left. A legend names the outline colours (:data:`OUTLINES`). ValueError for masks of another
    shape, planes outside the stack or bad spacing.
    """
    fig = lung_base_figure(pred, truth_lung, pred_lung, avg_lung, spacing_mm, planes, window,
                           title)
    out = atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=VIEW_DPI),
                            suffix=".png")
    logger.debug("wrote %s", out)
    return out


@dataclass(frozen=True)
class DiaphragmErrors:
    """One patient's mean diaphragm position error (mm) for the model and the AVG (NaN when not
    scored) and breathing amplitude (mm, None when unknown)."""

    patient_id: str
    amplitude_mm: float | None
    model_mm: float
    avg_mm: float


def by_amplitude(rows: Sequence[DiaphragmErrors]) -> list[DiaphragmErrors]:
    """``rows`` by increasing breathing amplitude, those without one last (stable)."""
    return sorted(rows, key=lambda r: (r.amplitude_mm is None, r.amplitude_mm or 0.0))


def diaphragm_error_figure(rows: Sequence[DiaphragmErrors]) -> Figure:
    """The figure that :func:`save_diaphragm_error_plot` saves; see there."""
    if not rows:
        raise ValueError("no patients to plot")
    ordered = by_amplitude(rows)
    x = np.arange(len(ordered))
    fig = Figure(figsize=(min(max(4.0, 0.7 * len(ordered) + 2.0), 11.0), 3.4), dpi=VIEW_DPI,
                 layout="constrained")
    ax = fig.subplots()
    bar = 0.38
    ax.bar(x - bar / 2, [r.model_mm for r in ordered], bar, color=MODEL_COLOUR, label="model")
    ax.bar(x + bar / 2, [r.avg_mm for r in ordered], bar, color=AVG_COLOUR, label="AVG")
    ax.set_xticks(x, [f"{r.patient_id}\n" + ("? mm" if r.amplitude_mm is None
                                              else f"{r.amplitude_mm:.0f} mm") for r in ordered],
                  fontsize=8)
    ax.set_xlabel("patient, breathing amplitude (smallest first)")
    ax.set_ylabel("mean diaphragm error (mm)")
    ax.set_ylim(bottom=0.0)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(frameon=False)
    return fig


def save_diaphragm_error_plot(path: str | os.PathLike[str],
                              rows: Sequence[DiaphragmErrors]) -> Path:
    """A bar chart (PNG, atomically) of each patient's mean diaphragm position error, mm, the
    model beside the AVG, patients ordered by breathing amplitude (:func:`by_amplitude`) and
    labelled with it; return ``path``. ValueError for no rows."""
    fig = diaphragm_error_figure(rows)
    out = atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=VIEW_DPI),
                            suffix=".png")
    logger.debug("wrote %s", out)
    return out
