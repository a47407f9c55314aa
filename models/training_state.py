"""What a resumed training needs besides the weights, in one weights-only file.

``<tag>_training_state.pth``, written next to ``<tag>_net_<name>.pth``, holds the optimizers' and
schedulers' state dicts, where training stands (:class:`Progress`), the random generators'
states, the settings that fix the batch order (:data:`Plan`), the SHA-256 of the weight files
saved with it, the contents of the model's image pools (``--pool_size``) and the record of the
training data (:mod:`models.training_data`: each patient's file digests, and the earlier sets
of a run resumed on changed data). Format 1 (before the pools and the data record) still
loads. It holds tensors and plain Python values only, so it loads with
``torch.load(..., weights_only=True)``. It is a member of the checkpoint set of its tag
(:mod:`util.file_set`), committed together with the weights and metadata, so a crash never
leaves it beside weights of another save; the digests still turn files mixed by hand into an
error rather than a silent mix.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from models.base_model import BaseModel, load_weights, serialize
from models.training_data import DataHistory, PatientDigests, resumed_history
from util.digests import file_sha256
from util.errors import ConfigError, DataError
from util.file_set import FileSet

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
#: Formats :func:`load_training_state` reads (1: no image pools, no data record).
READABLE_VERSIONS = (1, 2)
#: Settings a mid-epoch resume must share with the run it resumes, e.g.
#: {"seed": 0, "batch_size": 1, "slices": 120, "shuffle": 1, "epoch_count": 1}.
Plan = Mapping[str, int]


@dataclass(frozen=True)
class Progress:
    """Where training stands: batch ``batches_done`` (0-based) of ``epoch`` (1-based) is the next
    to run, and ``total_iters`` slices have been trained on since the start."""

    epoch: int
    batches_done: int
    total_iters: int


@dataclass(frozen=True)
class TrainingState:
    """A loaded training state: optimizers and schedulers are already restored; ``rng`` is to
    be applied with :func:`restore_rng` just before training goes on. ``data_history``: the
    earlier training sets of the run, the one the state was saved with included when the
    resume goes on with another (see :mod:`models.training_data`)."""

    path: Path
    progress: Progress
    rng: dict[str, Any]
    data_history: DataHistory = field(default_factory=list)


def state_path(model: BaseModel, tag: str | int) -> Path:
    """``<save_dir>/<tag>_training_state.pth``."""
    return model.save_dir / f"{tag}_training_state.pth"


def seed_everything(seed: int) -> None:
    """Seed Python's and torch's (CPU and CUDA) global random generators; data loader workers
    derive their own seeds from torch's. numpy's global generator is not used by the project
    (ruff NPY002), so it is not seeded."""
    random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The states of Python's and torch's (CPU and CUDA) global generators, as tensors and
    plain values (numpy's legacy global generator is not used in this project: ruff NPY002)."""
    return {"python": random.getstate(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_rng(state: Mapping[str, Any]) -> None:
    """Set the global generators to a state from :func:`rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _weight_files(model: BaseModel, tag: str | int) -> dict[str, Path]:
    return {name: model.checkpoint_path(tag, name) for name in model.saved_networks()}


def stage_training_state(stage: FileSet, model: BaseModel, tag: str | int, progress: Progress,
                         plan: Plan, weights_sha256: Mapping[str, str],
                         data: Mapping[str, Mapping[str, str]] | None = None,
                         data_history: Sequence[Mapping[str, Any]] = ()) -> Path:
    """Stage ``<tag>_training_state.pth`` in the checkpoint set ``stage`` that holds the
    weights whose SHA-256 (by network name) are ``weights_sha256``; ``data``: the training
    patients' file digests, ``data_history``: earlier training sets. Returns its path."""
    state = {"format_version": FORMAT_VERSION, "progress": asdict(progress), "plan": dict(plan),
             "optimizers": [o.state_dict() for o in model.optimizers],
             "schedulers": [s.state_dict() for s in model.schedulers],
             "rng": rng_state(),
             "weights_sha256": dict(weights_sha256),
             "pools": {name: pool.state_dict() for name, pool in model.image_pools().items()},
             "data": {pid: dict(sides) for pid, sides in (data or {}).items()},
             "data_history": [dict(entry) for entry in data_history]}
    return stage.stage_bytes(state_path(model, tag).name, serialize(state))


def _check_plan(path: Path, saved: Plan, current: Plan) -> None:
    """ConfigError listing every setting that differs between the saved and the current run."""
    diffs = [f"{k} {saved.get(k)} -> {current.get(k)}" for k in sorted({*saved, *current})
             if saved.get(k) != current.get(k)]
    if diffs:
        raise ConfigError(f"{path}: cannot resume where that run stopped, it was saved with other "
                          f"settings ({', '.join(diffs)}); resume with the same data and "
                          f"options, or delete this file to resume from the weights alone")


def _check_weights(path: Path, digests: Mapping[str, str], files: Mapping[str, Path]) -> None:
    """DataError unless every weight file is the one the state was saved with."""
    for name, weights in files.items():
        if digests.get(name) != file_sha256(weights):
            raise DataError(f"{path}: does not belong to {weights} (they come from different "
                            f"saves; the last save was probably interrupted). Resume from another "
                            f"checkpoint with --epoch, or delete this file to resume from the "
                            f"weights alone")


def load_training_state(model: BaseModel, tag: str | int, plan: Plan,
                        data: PatientDigests | None = None, *,
                        allow_data_change: bool = False) -> TrainingState | None:
    """Restore the optimizers, schedulers and image pools from ``<tag>_training_state.pth``
    (weights-only load) and return where training stands; None when there is no such file.

    ``data``: the training patients' file digests now, checked against those the state was
    saved with (:func:`models.training_data.resumed_history`; ConfigError naming what changed
    unless ``allow_data_change``, and then the count of slices may differ too)."""
    path = state_path(model, tag)
    if not path.is_file():
        return None
    state = load_weights(path, model.device)
    try:
        version = state["format_version"]
        if version not in READABLE_VERSIONS:
            raise DataError(f"{path}: training-state format {version}, expected one of "
                            f"{', '.join(map(str, READABLE_VERSIONS))}")
        progress, saved_plan = Progress(**state["progress"]), state["plan"]
        optimizers, schedulers = state["optimizers"], state["schedulers"]
        rng, digests = state["rng"], state["weights_sha256"]
        pools = state["pools"] if version >= 2 else None
        saved_data = state["data"] if version >= 2 else None
        history = list(state["data_history"]) if version >= 2 else []
    except (KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a training-state file (missing or bad {exc})") from exc
    _check_weights(path, digests, _weight_files(model, tag))
    history, changed = resumed_history(path, saved_data, data, history, progress.total_iters,
                                       allow_change=allow_data_change)
    if changed:  # a set of another size has another count of slices
        saved_plan, plan = ({k: v for k, v in p.items() if k != "slices"}
                            for p in (saved_plan, plan))
    _check_plan(path, saved_plan, plan)
    if len(optimizers) != len(model.optimizers) or len(schedulers) != len(model.schedulers):
        raise ConfigError(f"{path}: holds {len(optimizers)} optimizers and {len(schedulers)} "
                          f"schedulers, the model has {len(model.optimizers)} and "
                          f"{len(model.schedulers)}")
    try:
        for target, saved in [*zip(model.optimizers, optimizers, strict=True),
                              *zip(model.schedulers, schedulers, strict=True)]:
            target.load_state_dict(saved)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise ConfigError(f"{path}: does not fit the optimizers built from the options "
                          f"({exc})") from exc
    _restore_pools(path, model, pools)
    logger.info("resuming from %s: epoch %d after %d batches, %d slices trained", path,
                progress.epoch, progress.batches_done, progress.total_iters)
    return TrainingState(path=path, progress=progress, rng=rng, data_history=history)


def _restore_pools(path: Path, model: BaseModel, saved: Mapping[str, Any] | None) -> None:
    """Refill the model's image pools from a state (a warning for format 1, which has none)."""
    pools = model.image_pools()
    if saved is None:
        if any(pool.size for pool in pools.values()):
            logger.warning("%s: saved without the image pool; it starts empty, so the resumed "
                           "training differs from an uninterrupted one", path)
        return
    for name, pool in pools.items():
        try:
            pool.load_state_dict(saved[name])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot restore the image pool {name!r} ({exc})"
                              ) from exc
