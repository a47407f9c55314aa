"""Training curves: JSON-lines logs of losses and validation errors, and their plot.

A log is one JSON object per line, appended as training goes (:func:`append_jsonl`). A crash in
the middle of a write leaves at most the last line torn: :func:`read_jsonl` skips it with a
warning, and the next :func:`append_jsonl` removes it before writing.

Plots use matplotlib's object-oriented API only (no pyplot state), so they run headless and from
any thread.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from util.atomic import atomic_write_with

logger = logging.getLogger(__name__)

#: Resolution of the saved plot, dots per inch.
CURVES_DPI = 100
#: Validation metric names: ``val_<region>`` for the model, ``baseline_<region>`` for the AVG.
_VAL_NAME = re.compile(r"^(val|baseline)_(.+)$")
_CHUNK_BYTES = 65536


def _jsonable(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers and non-finite floats as None (null)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def _parse_object(raw: bytes) -> dict | None:
    """The JSON object in ``raw``, or None if it is not one (torn, not UTF-8, not an object)."""
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def _repair_tail(f: IO[bytes], path: Path) -> None:
    """Make the file ``f`` (opened ``a+b``) end with a newline before an append.

    A last line without its newline is either complete (a newline is added) or torn by a crash
    (it is cut off, with a warning).
    """
    end = f.seek(0, os.SEEK_END)
    if end == 0:
        return
    f.seek(end - 1)
    if f.read(1) == b"\n":
        return
    pos, cut = end, 0
    while pos > 0:
        start = max(0, pos - _CHUNK_BYTES)
        f.seek(start)
        newline = f.read(pos - start).rfind(b"\n")
        if newline >= 0:
            cut = start + newline + 1
            break
        pos = start
    f.seek(cut)
    if _parse_object(f.read(end - cut)) is not None:
        f.write(b"\n")
        return
    f.truncate(cut)
    logger.warning("%s: removed a last line torn by an earlier crash (%d bytes)", path, end - cut)


def append_jsonl(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Append ``record`` as one line of JSON to ``path`` (created with its folder if missing).

    Numpy numbers are written as Python numbers and non-finite floats as ``null``, so the file
    stays strict JSON. A torn last line left by a crash is removed first.
    """
    path = Path(path)
    line = json.dumps(_jsonable(record), allow_nan=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as f:
        _repair_tail(f, path)
        f.write(line.encode("utf-8"))
        f.flush()


def read_jsonl(path: str | os.PathLike[str]) -> list[dict]:
    """The JSON objects of the lines of ``path``, in order; [] if the file does not exist.

    Blank lines are skipped. A last line without its newline that is not a JSON object (torn by a
    crash mid-write) is skipped with a warning; any other line that is not a JSON object raises
    ValueError naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_bytes().split(b"\n")
    records = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        obj = _parse_object(raw)
        if obj is None and number == len(lines):
            logger.warning("%s, line %d: skipped a torn last line (a write was cut short)",
                           path, number)
        elif obj is None:
            raise ValueError(f"{path}, line {number}: not a JSON object: {raw[:80]!r}")
        else:
            records.append(obj)
    return records


def latest_run(xs: Sequence[float], *, ties_supersede: bool = False) -> list[int]:
    """Indices of ``xs`` (x positions in log order) to plot when a restart repeats some of them.

    When x goes back (training resumed from an earlier epoch), the earlier points at or after the
    new x are dropped: the newer run supersedes them. With ``ties_supersede`` an equal x also
    replaces the earlier point (one validation per epoch).
    """
    kept: list[int] = []
    for i, x in enumerate(xs):
        if kept and (xs[kept[-1]] > x or (ties_supersede and xs[kept[-1]] == x)):
            while kept and xs[kept[-1]] >= x:
                kept.pop()
        kept.append(i)
    return kept


def _as_float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _series(records: Sequence[Mapping[str, Any]], x_keys: tuple[str, ...], values_key: str,
            what: str, ties_supersede: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """x (N,) and name -> y (N,) (NaN where a record lacks the name) of the kept records."""
    xs, rows = [], []
    for i, record in enumerate(records):
        x = next((record[k] for k in x_keys if record.get(k) is not None), None)
        values = record.get(values_key)
        if x is None or not isinstance(values, Mapping):
            raise ValueError(f"{what} record {i}: expected {' or '.join(x_keys)} and a "
                             f"{values_key!r} mapping, got keys {sorted(record)}")
        xs.append(float(x))
        rows.append(values)
    kept = latest_run(xs, ties_supersede=ties_supersede)
    names = list(dict.fromkeys(name for i in kept for name in rows[i]))
    series = {name: np.array([_as_float(rows[i].get(name)) for i in kept]) for name in names}
    return np.array([xs[i] for i in kept]), series


def _say_empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_losses(ax: Axes, loss_records: Sequence[Mapping[str, Any]]) -> None:
    ax.set_title("training losses")
    x, series = _series(loss_records, ("epoch_progress", "epoch"), "losses", "loss", False)
    if not series:
        _say_empty(ax, "no losses yet")
        return
    for name, y in series.items():
        ax.plot(x, y, label=name, linewidth=1.0)
    finite = np.concatenate([y[np.isfinite(y)] for y in series.values()])
    if finite.size and (finite > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _draw_validation(ax: Axes, val_records: Sequence[Mapping[str, Any]]) -> None:
    ax.set_title("validation")
    x, series = _series(val_records, ("epoch",), "metrics", "validation", True)
    if not series:
        _say_empty(ax, "no validation yet")
        return
    colours: dict[str, str] = {}
    for name, y in series.items():
        match = _VAL_NAME.match(name)
        region = match[2] if match else name
        colour = colours.setdefault(region, f"C{len(colours) % 10}")
        style = "--" if match and match[1] == "baseline" else "-"
        ax.plot(x, y, style, color=colour, marker="o", markersize=3, linewidth=1.2, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean absolute error (HU)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def training_curves_figure(loss_records: Sequence[Mapping[str, Any]],
                           val_records: Sequence[Mapping[str, Any]], title: str) -> Figure:
    """The figure that :func:`plot_training_curves` saves; see there. Nothing global is touched."""
    fig = Figure(figsize=(11.0, 4.0), dpi=CURVES_DPI, layout="constrained")
    ax_loss, ax_val = fig.subplots(1, 2)
    _draw_losses(ax_loss, loss_records)
    _draw_validation(ax_val, val_records)
    fig.suptitle(title)
    return fig


def plot_training_curves(loss_records: Sequence[Mapping[str, Any]],
                         val_records: Sequence[Mapping[str, Any]],
                         path: str | os.PathLike[str], title: str) -> Path:
    """Plot losses and validation errors against epoch to the PNG ``path`` (atomically).

    ``loss_records``: ``{"epoch": int, "epoch_progress": float (fractional epoch, the x axis;
    ``epoch`` if missing), "losses": {name: value}}``, one line per loss, log y axis when every
    value is > 0. ``val_records``: ``{"epoch": int, "metrics": {name: HU}}``; ``val_<region>``
    (model) solid and ``baseline_<region>`` (AVG as the prediction) dashed in the region's colour.
    None values leave gaps; where a resumed run repeats epochs its newer points replace the older
    ones (:func:`latest_run`). Raises ValueError for a record without its x or values. Returns
    ``path``.
    """
    fig = training_curves_figure(loss_records, val_records, title)
    out = atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=CURVES_DPI),
                            suffix=".png")
    logger.debug("wrote %s", out)
    return out
