"""A trained generator and everything needed to run it, loaded from a run folder without writing.

:class:`models.settings.GeneratorSettings` is the one definition of the options that describe a
trained generator (its architecture) and the input it expects (HU window, slice size,
direction): the options ``test.py`` adopts from the run's ``opt.json``, the architecture in
checkpoint metadata and the architecture check of ``train.py`` are all derived from its fields.
:func:`load_generator` is the one way to load a trained generator for inference (``test.py``,
``scripts/predict.py``, the benchmarks): it reads ``opt.json`` and ``<epoch>_net_G.pth``
(``weights_only``) and writes nothing; :func:`build_generator` builds the generator those
settings describe, for training and testing models alike.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.base_model import load_weights, weights_mismatch
from models.inference import StackPrediction, predict_hu
from models.networks import define_G, describe_network
from models.run_folder import read_run_options
from models.settings import ARCHITECTURE_NAMES, SETTING_NAMES, GeneratorSettings, InitSettings
from models.volume_inference import DEFAULT_OVERLAP
from util.errors import ConfigError
from util.file_set import committed_path
from util.phases import PHASE_CHANNELS, phase_label
from util.settings import settings_to_json

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainedGenerator:
    """A loaded generator in eval mode on its device, with its settings and weights file."""

    net: nn.Module
    settings: GeneratorSettings
    weights: Path
    device: torch.device

    def predict(self, stack_hu: np.ndarray, *, spacing_mm: Sequence[float] | None = None,
                batch_size: int = 1, samples: int = 1, seed: int = 0,
                amp_dtype: torch.dtype | None = None, overlap: float = DEFAULT_OVERLAP,
                phase_pct: float = 0.0) -> StackPrediction:
        """The prediction for a stack (S, H, W) of AVG slices in HU (stack order): (S, H, W)
        float32 HU, deterministic for ``samples`` 1, else the mean and std of that many
        passes with dropout, and a motion generator's displacement field
        (:func:`models.inference.predict_hu`). A volumetric generator covers the stack with
        windows overlapping by ``overlap``. ``phase_pct``: the breathing phase (%) to predict,
        0 (end-inhale) unless the generator is phase-conditioned. ``spacing_mm``: the stack's
        (slice thickness, row, column) spacing in mm
        (:attr:`data.ct_volumes.SliceStack.stack_spacing_mm`), needed when the generator runs
        at a working spacing (the prediction comes back on the stack's own grid)."""
        s = self.settings
        if phase_pct != 0 and not s.phase_input:
            raise ConfigError(f"{self.weights}: this generator predicts phase 0 only (trained "
                              f"without --phases); it cannot predict phase "
                              f"{phase_label(phase_pct)} %")
        return predict_hu(self.net, stack_hu, hu_min=s.hu_min, hu_max=s.hu_max,
                          samples=samples, seed=seed, resize_to=s.resize_to,
                          batch_size=batch_size, context_slices=s.context_slices,
                          device=self.device, amp_dtype=amp_dtype,
                          size_rule=s.size_rule(), windows=s.windows(overlap),
                          phase_pct=phase_pct if s.phase_input else None,
                          spacing_mm=spacing_mm, working_spacing_mm=s.working_spacing_mm,
                          residual_gate_hu=s.residual_gate_hu)


def read_settings(run_dir: Path) -> GeneratorSettings:
    """The generator settings recorded in ``<run_dir>/opt.json`` (ConfigError naming the file
    when it is missing, not JSON or names no generator)."""
    hint = "point --name and --checkpoints_dir at a run trained by train.py"
    try:
        options = read_run_options(run_dir)
    except ConfigError as exc:
        raise ConfigError(f"{exc}; {hint}") from exc
    try:
        return GeneratorSettings.from_options(options)
    except (ConfigError, TypeError, ValueError) as exc:  # values of the wrong kind included
        raise ConfigError(f"{run_dir / 'opt.json'}: cannot read the run's options ({exc}); "
                          f"{hint}") from exc


def build_generator(settings: GeneratorSettings, init: InitSettings | None = None) -> nn.Module:
    """An untrained generator (CPU) of the given architecture, its weights drawn as ``init``
    says (the options' defaults when None)."""
    init = init or InitSettings()
    return define_G(settings.input_nc, settings.output_nc, settings.ngf, settings.netG,
                    norm=settings.norm, use_dropout=not settings.no_dropout,
                    init_type=init.init_type, init_gain=init.init_gain,
                    residual=settings.residual,
                    conditioning_nc=PHASE_CHANNELS if settings.phase_input else 0)


def recorded_settings(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The generator settings a checkpoint's metadata records: every field of
    :class:`GeneratorSettings` (``generator_settings``) in metadata written since they were
    recorded there; in older metadata, the architecture, HU window, slice size, context slices
    and channels it has."""
    whole = meta.get("generator_settings")
    if isinstance(whole, Mapping):
        return {k: v for k, v in whole.items() if k in SETTING_NAMES}
    arch, pre = meta.get("architecture") or {}, meta.get("preprocessing") or {}
    window, inp = pre.get("hu_window") or {}, meta.get("input") or {}
    found = {k: arch[k] for k in ARCHITECTURE_NAMES if k in arch}
    found |= {k: window[k] for k in ("hu_min", "hu_max") if k in window}
    for key, section, name in (("resize_to", pre, "resize_to"),
                               ("context_slices", inp, "context_slices_each_side"),
                               ("input_nc", inp, "channels"),
                               ("output_nc", meta.get("output") or {}, "channels")):
        if name in section:
            found[key] = section[name]
    return found


def check_settings(settings: GeneratorSettings, run_dir: Path, epoch: str) -> None:
    """ConfigError when ``settings`` (from ``<run_dir>/opt.json``) differ from those recorded
    in ``<epoch>_metadata.json`` beside the weights, naming every value and both files; a
    warning when there is no metadata to check them against."""
    name = f"{epoch}_metadata.json"
    path = committed_path(run_dir, epoch, name)
    if not path.is_file():
        logger.warning("%s: not found; the options in %s could not be checked against the "
                       "settings the weights were trained with", run_dir / name,
                       run_dir / "opt.json")
        return
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{run_dir / name}: cannot read the checkpoint's metadata "
                          f"({exc})") from exc
    if not isinstance(meta, Mapping):
        raise ConfigError(f"{run_dir / name}: not checkpoint metadata (a JSON object expected)")
    current = settings_to_json(settings)
    diffs = [f"--{k} {v} in {run_dir / name} but {current[k]} in {run_dir / 'opt.json'}"
             for k, v in recorded_settings(meta).items() if _differ(v, current[k])]
    if diffs:
        raise ConfigError(f"{run_dir}: the run's options do not match the checkpoint "
                          f"'{epoch}' ({'; '.join(diffs)}); the options were changed or come "
                          f"from another training. Nothing was written")


def _differ(recorded: Any, current: Any) -> bool:
    """Whether a recorded setting and the current one differ (lists and tuples alike)."""
    if isinstance(recorded, list | tuple) and isinstance(current, list | tuple):
        return list(recorded) != list(current)
    return bool(recorded != current)


def load_generator(run_dir: str | Path, epoch: str = "latest",
                   device: torch.device | str = "cpu",
                   settings: GeneratorSettings | None = None) -> TrainedGenerator:
    """The trained generator ``<run_dir>/<epoch>_net_G.pth`` in eval mode on ``device``.

    ``settings`` default to the run's ``opt.json``; they must match those recorded in
    ``<epoch>_metadata.json`` beside the weights (:func:`check_settings`). Nothing is
    written: a save of ``epoch`` that a crash interrupted after it was complete is read from
    its staged file
    (:func:`util.file_set.committed_path`). Weights that do not fit the settings are a
    ConfigError describing both the network the settings build and the one the file holds.
    """
    run_dir, device = Path(run_dir), torch.device(device)
    settings = settings or read_settings(run_dir)
    check_settings(settings, run_dir, str(epoch))
    name = f"{epoch}_net_G.pth"
    path = committed_path(run_dir, str(epoch), name)
    net = build_generator(settings)
    state = load_weights(path, device)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise weights_mismatch(run_dir / name, net, state) from exc
    logger.info("loaded %s (%s)", run_dir / name, describe_network(net))
    return TrainedGenerator(net.to(device).eval(), settings, run_dir / name, device)

