"""Training pictures and losses: a run's web page, its loss log, and optional visdom / wandb.

Layout under ``run_dir``::

    loss_log.txt                                    one line per logged step or validation, a
                                                    header per session
    loss_log.jsonl                                  one JSON object per logged step: epoch,
                                                    epoch_iter, epoch_progress, losses
    val_log.jsonl                                   one JSON object per validation: epoch,
                                                    metrics (HU)
    web/index.html                                  training curves, then every displayed step,
                                                    newest first, + log tail
    web/curves.png                                  losses and validation errors vs epoch, redrawn
                                                    from the two .jsonl logs with the page
    web/images/epoch{E:03d}_iter{N:08d}_{label}.png first sample of each visual, in a CT window

The page is rebuilt from the PNGs present in ``web/images`` (:mod:`display.step_images`) and
the ``.jsonl`` logs, so the record of the run survives a restart without a second copy of it.
Pictures are 8-bit windowed previews, not data. visdom and wandb are reached through
:mod:`display.remote`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import deque
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from display.curves import append_jsonl, plot_training_curves, read_jsonl
from display.remote import connect_visdom, start_wandb
from display.step_images import displayed_steps, step_image_name
from display.windows import (
    DEFAULT_WINDOW,
    DisplayWindow,
    describe_window,
    get_window,
    save_png,
    unit_tensor_to_hu,
    window_to_uint8,
)
from util.atomic import atomic_write_text
from util.errors import ConfigError
from util.html import HTMLPage
from util.hu_window import check_window

logger = logging.getLogger(__name__)

#: How many of the loss log's last lines the run page shows.
LOSS_TAIL_LINES = 50
#: How often (seconds) a browser reloads the run page.
PAGE_REFRESH_S = 60
#: Width (pixels) of the training curves on the run page.
CURVES_WIDTH_PX = 900


def tail_lines(path: Path, n: int) -> list[str]:
    """The last ``n`` lines of the text file ``path`` (no newlines); [] if it does not exist."""
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\n") for line in deque(f, maxlen=n)]


def _first_sample_uint8(label: str, visual: torch.Tensor, hu_min: float, hu_max: float,
                        window: DisplayWindow) -> np.ndarray:
    """Visual ``(N, C, H, W)`` in [-1, 1] -> its first sample's first channel, (H, W) uint8."""
    if visual.ndim != 4 or visual.shape[0] == 0:
        raise ValueError(f"visual {label!r}: expected a non-empty (N, C, H, W) tensor, got "
                         f"shape {tuple(visual.shape)}")
    return window_to_uint8(unit_tensor_to_hu(visual[0], hu_min, hu_max), window)


_LOSS_LINE = re.compile(r"^\(epoch: (\d+), iters: (\d+),")
_VALIDATION_LINE = re.compile(r"^\(epoch: (\d+), validation\)")


def _after(epoch: int, epoch_iter: int | None, resumed_epoch: int, resumed_iter: int) -> bool:
    """Whether a log point lies after the resumed point: a loss line at (``epoch``,
    ``epoch_iter`` slices into it), or a validation (``epoch_iter`` None, logged at the end of
    ``epoch``); the resumed point is ``resumed_iter`` slices into ``resumed_epoch``."""
    if epoch_iter is None:
        return epoch >= resumed_epoch
    return epoch > resumed_epoch or (epoch == resumed_epoch and epoch_iter > resumed_iter)


def _keep_text_line(line: str, epoch: int, epoch_iter: int) -> bool:
    """Whether a ``loss_log.txt`` line was logged up to the resumed point (headers stay)."""
    if loss := _LOSS_LINE.match(line):
        return not _after(int(loss[1]), int(loss[2]), epoch, epoch_iter)
    if val := _VALIDATION_LINE.match(line):
        return not _after(int(val[1]), None, epoch, epoch_iter)
    return True


def rewind_logs(run_dir: str | os.PathLike[str], epoch: int, epoch_iter: int) -> int:
    """Drop the lines of ``loss_log.txt``, ``loss_log.jsonl`` and ``val_log.jsonl`` that an
    interrupted training logged after the point a resume starts from (``epoch_iter`` slices into
    ``epoch``): the resumed training logs them again. Each file is rewritten atomically, the text
    log with a line saying where training resumed. Returns the number of lines dropped."""
    run_dir = Path(run_dir)
    dropped = 0
    for name, key_iter in (("loss_log.jsonl", "epoch_iter"), ("val_log.jsonl", None)):
        path = run_dir / name
        try:
            records = read_jsonl(path)
        except ValueError as exc:
            logger.warning("%s: not rewound to the resumed point (%s)", path, exc)
            continue
        kept = [r for r in records if not _after(int(r.get("epoch", 0)),
                                                 None if key_iter is None
                                                 else int(r.get(key_iter, 0)),
                                                 epoch, epoch_iter)]
        if len(kept) < len(records):
            atomic_write_text(path, "".join(json.dumps(r, allow_nan=False) + "\n"
                                            for r in kept))
            dropped += len(records) - len(kept)
    text = run_dir / "loss_log.txt"
    if text.is_file():
        lines = text.read_text(encoding="utf-8", errors="replace").splitlines()
        kept_lines = [line for line in lines if _keep_text_line(line, epoch, epoch_iter)]
        dropped += len(lines) - len(kept_lines)
        kept_lines.append(f"(resumed at epoch {epoch} after {epoch_iter} slices; "
                          f"{len(lines) - len(kept_lines)} lines logged after that point by "
                          f"the interrupted training were dropped)")
        atomic_write_text(text, "\n".join(kept_lines) + "\n")
    if dropped:
        logger.info("dropped %d log lines of the interrupted training after the resumed point",
                    dropped)
    return dropped


class Visualizer:
    """Shows a training run: PNGs and ``web/index.html``, ``loss_log.txt``, visdom, wandb.

    ``hu_min``/``hu_max``: the HU that the network's -1/+1 stand for. ``display_id > 0`` sends
    pictures and loss curves to the visdom server ``display_server:display_port`` (environment
    ``display_env``); ``use_wandb`` logs them to the wandb project ``wandb_project``. Both
    packages are imported only when asked for. ``no_html`` skips the PNGs and the page.
    ``display_window``: a name in :data:`display.windows.WINDOWS`; ``display_winsize``: picture
    width on the page, pixels. The page is (re)written on construction, listing the steps
    already shown, and at every :meth:`display_current_results` and :meth:`log_validation`; its
    training curves (``web/curves.png``) and loss-log tail are redrawn then, and only then.
    """

    def __init__(self, run_dir: str | os.PathLike[str], name: str, *, hu_min: float,
                 hu_max: float, display_id: int = 0, display_server: str = "http://localhost",
                 display_port: int = 8097, display_env: str = "main", use_wandb: bool = False,
                 wandb_project: str = "CT-pix2pix", no_html: bool = False,
                 display_window: str = DEFAULT_WINDOW, display_winsize: int = 256) -> None:
        try:
            check_window(hu_min, hu_max)
        except ValueError as exc:
            raise ConfigError(f"--hu_min/--hu_max: {exc}") from exc
        self.run_dir = Path(run_dir)
        self.name = name
        self.hu_min, self.hu_max = hu_min, hu_max
        self.window = get_window(display_window)
        self.display_id = display_id
        self.display_winsize = display_winsize
        self.no_html = no_html
        self.web_dir = self.run_dir / "web"
        self.image_dir = self.web_dir / "images"
        self.log_path = self.run_dir / "loss_log.txt"
        self.loss_records_path = self.run_dir / "loss_log.jsonl"
        self.val_records_path = self.run_dir / "val_log.jsonl"
        self.curves_path = self.web_dir / "curves.png"
        self._visdom = (connect_visdom(display_id, display_server, display_port, display_env)
                        if display_id > 0 else None)
        self._wandb: ModuleType | None = None
        self._wandb_run: Any = None
        if use_wandb:
            self._wandb, self._wandb_run = start_wandb(wandb_project, name, self.run_dir)
        self._loss_points = 0
        self._val_points = 0
        stamp = datetime.now().astimezone().isoformat(timespec="seconds")
        self._append_log(f"================ Training loss ({stamp}) ================")
        if not no_html:
            self._write_page()

    def _append_log(self, line: str) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()

    def display_current_results(self, visuals: Mapping[str, torch.Tensor], epoch: int,
                                total_iters: int) -> None:
        """Show the first sample of each visual (name -> (N, C, H, W) in [-1, 1]).

        Writes ``web/images/epoch{epoch:03d}_iter{total_iters:08d}_{label}.png`` and rebuilds
        ``web/index.html`` (unless ``no_html``), and sends the pictures to visdom / wandb.
        """
        images = {label: _first_sample_uint8(label, visual, self.hu_min, self.hu_max, self.window)
                  for label, visual in visuals.items()}
        if not self.no_html:
            for label, img in images.items():
                save_png(img, self.image_dir / step_image_name(epoch, total_iters, label))
            self._write_page()
        caption = f"epoch {epoch}, iters {total_iters}, {describe_window(self.window)}"
        if self._visdom is not None:
            for label, img in images.items():
                self._visdom.image(img, win=f"{self.display_id}_{label}",
                                   opts={"title": f"{self.name}: {label}", "caption": caption})
        if self._wandb is not None and self._wandb_run is not None:
            self._wandb_run.log({**{label: self._wandb.Image(img, caption=f"{label}, {caption}")
                                    for label, img in images.items()},
                                 "epoch": epoch, "total_iters": total_iters})

    def _plot_curves(self) -> bool:
        """Redraw ``web/curves.png`` from the .jsonl logs; False if there is nothing to plot.

        A log that cannot be read or plotted costs the page its curves (with a warning), never
        the training run.
        """
        try:
            loss_records = read_jsonl(self.loss_records_path)
            val_records = read_jsonl(self.val_records_path)
            if not (loss_records or val_records):
                return False
            plot_training_curves(loss_records, val_records, self.curves_path,
                                 f"{self.name}: training curves")
        except ValueError as exc:
            logger.warning("run page without training curves: %s", exc)
            return False
        return True

    def _write_page(self) -> Path:
        page = HTMLPage(self.web_dir, f"Experiment name = {self.name}", refresh_s=PAGE_REFRESH_S)
        if self._plot_curves():
            page.add_header("Training curves")
            page.add_images([self.curves_path.name],
                            [f"from {self.loss_records_path.name} and "
                             f"{self.val_records_path.name}"], CURVES_WIDTH_PX)
        page.add_header(f"Pictures newest first, window {describe_window(self.window)}")
        for step in displayed_steps(self.image_dir):
            page.add_header(f"epoch {step.epoch}, iters {step.total_iters}")
            page.add_images([f"images/{step_image_name(step.epoch, step.total_iters, label)}"
                             for label in step.labels], list(step.labels), self.display_winsize)
        page.add_header(f"Loss log: last {LOSS_TAIL_LINES} lines of {self.log_path.name}")
        page.add_text_block("\n".join(tail_lines(self.log_path, LOSS_TAIL_LINES)))
        return page.save()

    def print_current_losses(self, epoch: int, epoch_iter: int, losses: Mapping[str, float],
                             t_comp: float, t_data: float,
                             epoch_progress: float | None = None) -> str:
        """Log one line of losses, append it to ``loss_log.txt`` (and visdom / wandb); return it.

        ``epoch_iter``: slices seen this epoch; ``t_comp``/``t_data``: seconds per slice spent
        computing / waiting for data; ``epoch_progress``: the fractional epoch of this point, the
        x of the training curves (default ``float(epoch)``). Also appends ``{"epoch",
        "epoch_iter", "epoch_progress", "losses"}`` to ``loss_log.jsonl``.
        """
        values = {key: float(value) for key, value in losses.items()}
        line = " ".join([f"(epoch: {epoch}, iters: {epoch_iter}, time: {t_comp:.3f}, "
                         f"data: {t_data:.3f})"] + [f"{k}: {v:.4g}" for k, v in values.items()])
        logger.info("%s", line)
        self._append_log(line)
        progress = float(epoch) if epoch_progress is None else float(epoch_progress)
        append_jsonl(self.loss_records_path, {"epoch": epoch, "epoch_iter": epoch_iter,
                                              "epoch_progress": progress, "losses": values})
        self._visdom_line("loss", values, self._loss_points, self._loss_points == 0,
                          "log point", "loss")
        self._loss_points += 1
        if self._wandb_run is not None:
            self._wandb_run.log({**values, "epoch": epoch})
        return line

    def _visdom_line(self, kind: str, values: Mapping[str, float], x: float, first: bool,
                     xlabel: str, ylabel: str) -> None:
        """Add one point per value to the visdom plot ``{display_id}_{kind}`` (new if ``first``)."""
        if self._visdom is None or not values:
            return
        y = np.array([list(values.values())])
        title = {"loss": "losses", "val": "validation"}.get(kind, kind)
        self._visdom.line(Y=y, X=np.full_like(y, x), win=f"{self.display_id}_{kind}",
                          update=None if first else "append",
                          opts={"title": f"{self.name}: {title}", "legend": list(values),
                                "xlabel": xlabel, "ylabel": ylabel})

    def log_validation(self, epoch: int, metrics: Mapping[str, float],
                       train_seconds: float | None = None) -> str:
        """Log one line of validation metrics at the end of ``epoch``; return it.

        ``metrics``: name -> value, HU (the names say so, e.g. ``val_motion_mae_hu``);
        ``train_seconds``: seconds spent training so far by this process (validation and
        checkpoints left out). The line ``(epoch: E, validation) name: value ...`` (1 decimal)
        goes to the log and ``loss_log.txt``, ``{"epoch", "metrics"[, "train_seconds"]}`` to
        ``val_log.jsonl``, the values to visdom
        (window ``{display_id}_val``) / wandb, and the run page is rebuilt with its curves.
        """
        values = {key: float(value) for key, value in metrics.items()}
        line = " ".join([f"(epoch: {epoch}, validation)"]
                        + [f"{k}: {v:.1f}" for k, v in values.items()])
        logger.info("%s", line)
        self._append_log(line)
        record: dict[str, object] = {"epoch": epoch, "metrics": values}
        if train_seconds is not None:
            record["train_seconds"] = round(train_seconds, 3)
        append_jsonl(self.val_records_path, record)
        self._visdom_line("val", values, epoch, self._val_points == 0, "epoch", "HU")
        self._val_points += 1
        if self._wandb_run is not None:
            self._wandb_run.log({**values, "epoch": epoch})
        if not self.no_html:
            self._write_page()
        return line
