"""Per-patient pictures of a predicted phase-0 volume: an axial and a coronal plane, side by side.

Volumes are in the slice-stack frame of :mod:`util.geometry`: (S, R, C) = (axial slices inferior
-> superior, rows anterior -> posterior, columns patient right -> left), with spacing
``(thickness_mm, row_mm, col_mm)`` from :func:`util.geometry.stack_spacing_mm`. Both planes are
shown in the radiological convention (patient's right on the picture's left), axial with anterior
up and coronal with superior up, at their physical aspect ratio.

These are windowed pictures for looking at; the HU stay in the NIfTI outputs and the metrics.
Drawing uses matplotlib's object-oriented API only (no pyplot state), so it runs headless and from
any thread.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from display.windows import DisplayWindow, describe_window
from util.atomic import atomic_write_with

logger = logging.getLogger(__name__)

#: Resolution of the saved pictures, dots per inch.
VIEW_DPI = 100
#: Width of one picture column, inches.
_COLUMN_IN = 2.6
#: Smallest and largest height of one picture row, inches.
_ROW_IN_MIN, _ROW_IN_MAX = 1.4, 4.0
#: The colour map of the error column (perceptually uniform, dark = small error).
ERROR_CMAP = "magma"
#: Colour of the lines that mark where the other plane cuts.
_PLANE_LINE = {"color": "cyan", "linewidth": 0.7, "alpha": 0.7}


@dataclass(frozen=True)
class ViewPlanes:
    """Where to cut a (S, R, C) stack: the axial slice and the row that gives the coronal plane."""

    axial_index: int  # 0 .. S-1, 0 = most inferior slice
    coronal_row: int  # 0 .. R-1, 0 = most anterior row


def _check_stack_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"expected a non-empty 3-D slice stack (S, R, C), got shape {shape}")
    return int(shape[0]), int(shape[1]), int(shape[2])


def check_planes(shape: tuple[int, ...], planes: ViewPlanes) -> None:
    """Raise ValueError unless ``planes`` cut a (S, R, C) stack of ``shape``."""
    n_slices, n_rows, _ = _check_stack_shape(shape)
    if not 0 <= planes.axial_index < n_slices:
        raise ValueError(f"axial_index {planes.axial_index} is outside 0..{n_slices - 1} "
                         f"of a stack of shape {shape}")
    if not 0 <= planes.coronal_row < n_rows:
        raise ValueError(f"coronal_row {planes.coronal_row} is outside 0..{n_rows - 1} "
                         f"of a stack of shape {shape}")


def choose_planes(shape: tuple[int, int, int], motion: np.ndarray | None = None) -> ViewPlanes:
    """The planes worth looking at in a (S, R, C) stack of ``shape``.

    ``motion``: (S, R, C) bool, True where the anatomy moves (stack frame), or None. With a
    non-empty mask: the axial slice and the row (coronal plane) that hold the most motion voxels,
    the lowest index on ties. Otherwise, or for an empty mask, the middle slice and row.
    """
    n_slices, n_rows, _ = _check_stack_shape(tuple(shape))
    if motion is not None:
        motion = np.asarray(motion, dtype=bool)
        if motion.shape != tuple(shape):
            raise ValueError(f"motion mask has shape {motion.shape}, the stack {tuple(shape)}")
        if motion.any():
            return ViewPlanes(axial_index=int(np.argmax(motion.sum(axis=(1, 2)))),
                              coronal_row=int(np.argmax(motion.sum(axis=(0, 2)))))
    return ViewPlanes(axial_index=n_slices // 2, coronal_row=n_rows // 2)


def axial_view(stack: np.ndarray, planes: ViewPlanes) -> np.ndarray:
    """Axial slice ``planes.axial_index`` of ``stack`` (S, R, C) as a (R, C) picture.

    Row 0 (top) is anterior, column 0 (left) the patient's right: the radiological convention.
    Same dtype and unit as ``stack``; a view, not a copy.
    """
    check_planes(stack.shape, planes)
    return stack[planes.axial_index]


def coronal_view(stack: np.ndarray, planes: ViewPlanes) -> np.ndarray:
    """Coronal plane at row ``planes.coronal_row`` of ``stack`` (S, R, C) as a (S, C) picture.

    Row 0 (top) is the most superior slice, column 0 (left) the patient's right. Same dtype and
    unit as ``stack``; a view, not a copy.
    """
    check_planes(stack.shape, planes)
    return stack[::-1, planes.coronal_row, :]


def middle_coronal(stack: np.ndarray) -> np.ndarray:
    """:func:`coronal_view` through the middle row of ``stack`` (S, R, C): (S, C), superior up."""
    return coronal_view(stack, choose_planes(stack.shape))


def check_spacing(spacing_mm: tuple[float, float, float]) -> tuple[float, float, float]:
    """``spacing_mm`` (thickness, row, column) as floats; ValueError unless 3 finite sizes > 0."""
    values = tuple(float(s) for s in spacing_mm)
    if len(values) != 3 or not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing_mm must be 3 finite sizes > 0 mm (thickness, row, column), "
                         f"got {spacing_mm}")
    return values


def _check_volumes(avg: np.ndarray, pred: np.ndarray,
                   truth: np.ndarray | None) -> tuple[int, int, int]:
    shapes = {"avg": np.shape(avg), "prediction": np.shape(pred)}
    if truth is not None:
        shapes["truth"] = np.shape(truth)
    if len(set(shapes.values())) != 1 or len(shapes["avg"]) != 3:
        raise ValueError("avg, prediction and truth must be slice stacks (S, R, C) of one shape, "
                         "got " + ", ".join(f"{k} {v}" for k, v in shapes.items()))
    return _check_stack_shape(shapes["avg"])


def _row_heights_in(shape: tuple[int, int, int],
                    spacing_mm: tuple[float, float, float]) -> tuple[float, float]:
    """Heights (inches) of the axial and coronal rows for their physical aspect, clipped."""
    n_slices, n_rows, n_cols = shape
    thickness_mm, row_mm, col_mm = spacing_mm
    width_mm = n_cols * col_mm
    axial = _COLUMN_IN * n_rows * row_mm / width_mm
    coronal = _COLUMN_IN * n_slices * thickness_mm / width_mm
    return (min(max(axial, _ROW_IN_MIN), _ROW_IN_MAX), min(max(coronal, _ROW_IN_MIN), _ROW_IN_MAX))


def bare_axes(ax: Axes) -> None:
    """No ticks: a picture, not a plot."""
    ax.set_xticks([])
    ax.set_yticks([])


def orientation_letters(ax: Axes, top: str, left: str = "R", right: str = "L") -> None:
    """Letters at the picture's top edge (``top``) and its left and right edges."""
    style: dict[str, Any] = {"color": "yellow", "fontsize": 8, "fontweight": "bold",
                             "transform": ax.transAxes}
    ax.text(0.5, 0.98, top, ha="center", va="top", **style)
    ax.text(0.02, 0.5, left, ha="left", va="center", **style)
    ax.text(0.98, 0.5, right, ha="right", va="center", **style)


def patient_views_figure(avg: np.ndarray, pred: np.ndarray, truth: np.ndarray | None,
                         spacing_mm: tuple[float, float, float], planes: ViewPlanes,
                         window: DisplayWindow, title: str, error_max_hu: float = 300.0) -> Figure:
    """The figure that :func:`save_patient_views` saves; see there. Nothing global is touched."""
    shape = _check_volumes(avg, pred, truth)
    check_planes(shape, planes)
    thickness_mm, row_mm, col_mm = check_spacing(spacing_mm)
    if not (math.isfinite(error_max_hu) and error_max_hu > 0):
        raise ValueError(f"error_max_hu must be a finite HU > 0, got {error_max_hu}")
    columns = [("AVG (input)", avg), ("prediction", pred)]
    if truth is not None:
        columns.append(("truth (phase 0)", truth))
    n_cols = len(columns) + 1 if truth is not None else len(columns)
    axial_in, coronal_in = _row_heights_in(shape, (thickness_mm, row_mm, col_mm))
    width_in = n_cols * _COLUMN_IN + (1.0 if truth is not None else 0.4)
    fig = Figure(figsize=(width_in, axial_in + coronal_in + 0.9), dpi=VIEW_DPI,
                 layout="constrained")
    axes = fig.subplots(2, n_cols, squeeze=False,
                        gridspec_kw={"height_ratios": [axial_in, coronal_in]})
    rows = [(axial_view, row_mm / col_mm, planes.coronal_row, f"axial, slice {planes.axial_index}"),
            (coronal_view, thickness_mm / col_mm, shape[0] - 1 - planes.axial_index,
             f"coronal, row {planes.coronal_row}")]
    grey = {"cmap": "gray", "vmin": window.lower_hu, "vmax": window.upper_hu}
    error_image = None
    for i, (view, aspect, other_plane, row_label) in enumerate(rows):
        pictures = [view(np.asarray(vol), planes) for _, vol in columns]
        for j, picture in enumerate(pictures):
            axes[i, j].imshow(picture, aspect=aspect, **grey)
        if truth is not None:
            error = np.abs(pictures[1].astype(np.float32) - pictures[2].astype(np.float32))
            error_image = axes[i, -1].imshow(error, aspect=aspect, cmap=ERROR_CMAP, vmin=0.0,
                                             vmax=error_max_hu)
        for ax in axes[i]:
            ax.axhline(other_plane, **_PLANE_LINE)
            bare_axes(ax)
        axes[i, 0].set_ylabel(row_label)
        orientation_letters(axes[i, 0], "A" if i == 0 else "S")
    titles = [name for name, _ in columns] + (["|prediction - truth|"] if truth is not None
                                              else [])
    for ax, column_title in zip(axes[0], titles, strict=True):
        ax.set_title(column_title, fontsize=10)
    if error_image is not None:
        fig.colorbar(error_image, ax=list(axes[:, -1]), label="|pred - truth| (HU)",
                     extend="max", shrink=0.8)
    fig.suptitle(f"{title}: window {describe_window(window)}")
    return fig


def save_patient_views(path: str | os.PathLike[str], avg: np.ndarray, pred: np.ndarray,
                       truth: np.ndarray | None, spacing_mm: tuple[float, float, float],
                       planes: ViewPlanes, window: DisplayWindow, title: str,
                       error_max_hu: float = 300.0) -> Path:
    """Draw one patient's volumes in two planes to the PNG ``path`` (atomically); return ``path``.

    ``avg``, ``pred``, ``truth``: (S, R, C) float HU slice stacks of one shape (``truth`` may be
    None); ``spacing_mm``: (thickness, row, column) spacing of the stack, mm. Rows: the axial slice
    ``planes.axial_index`` and the coronal plane at row ``planes.coronal_row``, each marked on the
    other by a thin cyan line. Columns: AVG, prediction, and with a truth the truth and
    |prediction - truth| (``ERROR_CMAP`` from 0 to ``error_max_hu`` HU, with a colour bar). Grey
    pictures use ``window``; the figure is titled ``"{title}: window {window}"``. Raises
    ValueError for shapes that differ, planes outside the stack or bad spacing.
    """
    fig = patient_views_figure(avg, pred, truth, spacing_mm, planes, window, title, error_max_hu)
    out = atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=VIEW_DPI),
                            suffix=".png")
    logger.debug("wrote %s", out)
    return out
