"""A training run's folder (``<checkpoints_dir>/<name>/``): what makes it a trained run, when a
new training may start in it, and tidying it once every check of a new training has passed.

Nothing here writes before :func:`tidy_run_folder` or :func:`clear_run`, which ``train.py`` calls
only after the data, the networks and the training state were all accepted.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from util.errors import ConfigError, OutputError
from util.file_set import JOURNAL_SUFFIX, recover, remove_stale_temp_files

logger = logging.getLogger(__name__)

#: Files a training writes in its run folder (globs); ``web`` is its page folder.
RUN_FILE_GLOBS = ("*_net_*.pth", "*_metadata.json", "*_training_state.pth", "opt.json",
                  "opt.txt", "plan.json", "*_opt.json", "*_opt.txt", "loss_log.txt",
                  "loss_log.jsonl", "val_log.jsonl", f".*{JOURNAL_SUFFIX}")
RUN_PAGE_FOLDER = "web"


def checkpoint_files(run_dir: Path) -> list[Path]:
    """The weight files (``*_net_*.pth``) in ``run_dir``, sorted; empty when there is none."""
    return sorted(run_dir.glob("*_net_*.pth")) if run_dir.is_dir() else []


def read_run_options(run_dir: Path) -> dict[str, object]:
    """The options a training recorded in ``<run_dir>/opt.json``; ConfigError naming the file
    when it is missing, not JSON or not an object."""
    path = run_dir / "opt.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the run's options ({exc})") from exc
    if not isinstance(saved, dict):
        raise ConfigError(f"{path}: cannot read the run's options (a JSON object expected, got "
                          f"{type(saved).__name__})")
    return saved


def _saved_options(run_dir: Path) -> Mapping[str, object]:
    """:func:`read_run_options`, empty when there is none to read."""
    try:
        return read_run_options(run_dir)
    except ConfigError:
        return {}


def architecture_changes(run_dir: Path, current: Mapping[str, object],
                         keys: Iterable[str]) -> list[str]:
    """``--key saved -> new`` for each of ``keys`` whose value in the run's ``opt.json``
    differs from ``current``."""
    saved = _saved_options(run_dir)
    return [f"--{k} {saved[k]} -> {current.get(k)}" for k in keys
            if k in saved and saved[k] != current.get(k)]


def check_new_training(run_dir: Path, *, continue_train: bool, overwrite: bool,
                       current: Mapping[str, object], architecture_keys: Iterable[str]) -> None:
    """ConfigError when a training that does not resume (no ``--continue_train``) would start
    in a folder that holds checkpoints, unless ``--overwrite`` says to replace them."""
    if continue_train and overwrite:
        raise ConfigError("--continue_train resumes the run and --overwrite replaces it: give "
                          "one of them")
    found = checkpoint_files(run_dir)
    if continue_train or overwrite or not found:
        return
    changes = architecture_changes(run_dir, current, architecture_keys)
    what = (f"; it was trained with another architecture ({', '.join(changes)})" if changes
            else "")
    names = ", ".join(p.name for p in found[:4]) + (" ..." if len(found) > 4 else "")
    raise ConfigError(f"{run_dir}: holds a trained run ({names}){what}. Nothing was written: "
                      f"add --continue_train to resume it, --overwrite to replace it, or "
                      f"choose another --name")


def clear_run(run_dir: Path) -> list[Path]:
    """Delete what an earlier training wrote in ``run_dir`` (checkpoints, metadata, training
    states, options, logs, the page folder), for ``--overwrite``; other files stay. Returns the
    deleted paths."""
    doomed = sorted({p for pattern in RUN_FILE_GLOBS for p in run_dir.glob(pattern)
                     if p.is_file()})
    page = run_dir / RUN_PAGE_FOLDER
    try:
        for path in doomed:
            path.unlink()
        if page.is_dir():
            shutil.rmtree(page)
            doomed.append(page)
    except OSError as exc:
        raise OutputError(f"{run_dir}: cannot remove the earlier run for --overwrite "
                          f"({exc})") from exc
    if doomed:
        logger.warning("--overwrite: removed %d files of the earlier run in %s", len(doomed),
                       run_dir)
    return doomed


def tidy_run_folder(run_dir: Path) -> None:
    """Finish interrupted checkpoint saves and delete temp files an interrupted write left."""
    if run_dir.is_dir():
        recover(run_dir)
        remove_stale_temp_files(run_dir)
