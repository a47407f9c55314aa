"""The model template: subclasses define networks, losses and one optimisation step; this class
does device placement, schedules, checkpoints (atomic, ``weights_only`` loading) and visuals."""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import pickle
from abc import ABC, abstractmethod
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.image_pool import ImagePool
from models.networks import describe_network, describe_weights, get_scheduler
from models.settings import RunSettings
from util.distributed import unwrap, wrap_ddp
from util.errors import ConfigError, DataError
from util.file_set import FileSet, file_set, recover
from util.speed import (
    autocast,
    configure_backends,
    make_grad_scaler,
    resolve_speed,
    speed_up_network,
    to_memory_format,
)

logger = logging.getLogger(__name__)


class BaseModel(ABC):
    """Template for ``--model`` classes, built from the run's settings
    (:class:`models.settings.RunSettings`).

    Subclasses set ``loss_names`` (``loss_<name>`` attributes), ``model_names`` (``net<name>``
    attributes), ``visual_names`` (tensor attributes shown in pages) and ``optimizers``.
    """

    def __init__(self, settings: RunSettings) -> None:
        run, speed = settings.run, settings.speed
        self.is_train = run.is_train
        self.device = run.device
        self.save_dir = run.run_dir
        self.continue_train = run.continue_train
        self.load_suffix = checkpoint_tag(run.epoch, run.load_iter)
        self.verbose = run.verbose
        self.schedule: dict[str, Any] = settings.schedule.lr_schedule()
        configure_backends(self.device, tf32=not speed.no_tf32,
                           cudnn_benchmark=not speed.no_cudnn_benchmark)
        self.speed = resolve_speed(self.device, amp=speed.amp,
                                   channels_last=speed.channels_last,
                                   use_compile=speed.compile)
        self.grad_scaler = make_grad_scaler(self.device, self.speed.amp_dtype)
        self.loss_names: list[str] = []
        self.model_names: list[str] = []
        self.visual_names: list[str] = []
        self.optimizers: list[torch.optim.Optimizer] = []
        self.schedulers: list[Any] = []

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser,
                                   is_train: bool) -> argparse.ArgumentParser:  # noqa: ARG004
        """Add model-specific options or change defaults; returns the parser."""
        return parser

    @abstractmethod
    def set_input(self, batch: dict[str, Any]) -> None:
        """Take a batch from the data loader and move it to the device."""

    @abstractmethod
    def forward(self) -> None:
        """Compute the outputs (e.g. ``fake_B``) from the current input."""

    @abstractmethod
    def optimize_parameters(self) -> None:
        """One training step: forward, losses, backward, optimiser steps."""

    def networks(self) -> dict[str, nn.Module]:
        """{name: network} for every entry of ``model_names``."""
        return {name: getattr(self, f"net{name}") for name in self.model_names}

    def saved_networks(self) -> dict[str, nn.Module]:
        """{name: network} as checkpoints hold them (``<tag>_net_<name>.pth``): the networks of
        :meth:`networks` unless a model saves another under a name (pix2pix with
        ``--ema_decay`` saves its averaged generator as ``G``, the trained one as ``G_train``).
        """
        return self.networks()

    def image_pools(self) -> dict[str, ImagePool]:
        """{name: image pool} of a training model that keeps past fakes (none by default); the
        training state saves their contents."""
        return {}

    def setup(self) -> None:
        """Create schedulers (training) and load checkpoints (testing or resuming)."""
        if self.is_train:
            self.schedulers = [get_scheduler(o, **self.schedule) for o in self.optimizers]
        if not self.is_train or self.continue_train:
            self.load_networks(self.load_suffix)
        self.log_networks()
        self.speed_up_networks()

    def speed_up_networks(self) -> None:
        """Put each network in channels_last order, in DistributedDataParallel (training in a
        torchrun job) and through ``torch.compile``, as the options ask; weights are untouched."""
        wrap = (lambda net: wrap_ddp(net, self.device)) if self.is_train else None
        for name, net in self.networks().items():
            setattr(self, f"net{name}", speed_up_network(net, self.speed, wrap))

    def autocast(self) -> AbstractContextManager:
        """Mixed-precision context for forward passes and losses (a no-op without ``--amp``)."""
        return autocast(self.device, self.speed.amp_dtype)

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """A batch (N, C, H, W) on the model's device, in its memory format."""
        return to_memory_format(x.to(self.device, non_blocking=True), self.speed.channels_last)

    def eval(self) -> None:
        """Put every network in eval mode."""
        for net in self.networks().values():
            net.eval()

    def test(self) -> None:
        """Forward pass without gradients."""
        with torch.no_grad():
            self.forward()

    def update_learning_rate(self, metric: float | None = None) -> float:
        """Step every scheduler once (an epoch); return the new learning rate."""
        for scheduler in self.schedulers:
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(metric if metric is not None else 0.0)
            else:
                scheduler.step()
        lr = self.optimizers[0].param_groups[0]["lr"]
        logger.info("learning rate = %.7f", lr)
        return lr

    def get_current_visuals(self) -> dict[str, torch.Tensor]:
        """{name: (N, C, H, W) tensor in [-1, 1]} for the visuals that exist now; of a
        volumetric (N, C, D, H, W) patch, its middle axial slice."""
        visuals = {}
        for name in self.visual_names:
            value = getattr(self, name, None)
            if isinstance(value, torch.Tensor):
                value = value[:, :, value.shape[2] // 2] if value.ndim == 5 else value
                visuals[name] = value.detach().float()
        return visuals

    def get_current_losses(self) -> dict[str, float]:
        """{name: value} of the latest losses."""
        return {name: getattr(self, f"loss_{name}").item() for name in self.loss_names}

    def checkpoint_path(self, epoch: str | int, name: str) -> Path:
        """``<save_dir>/<epoch>_net_<name>.pth``."""
        return self.save_dir / f"{epoch}_net_{name}.pth"

    def stage_networks(self, stage: FileSet, epoch: str | int) -> dict[str, str]:
        """Stage every network's weights (CPU tensors) as ``<epoch>_net_<name>.pth`` in the
        checkpoint set ``stage`` (committed with the rest of the set); returns {name: SHA-256
        of the file's bytes}."""
        digests = {}
        for name, net in self.saved_networks().items():
            state = {k: v.detach().cpu() for k, v in unwrap(net).state_dict().items()}
            data = serialize(state)
            stage.stage_bytes(self.checkpoint_path(epoch, name).name, data)
            digests[name] = hashlib.sha256(data).hexdigest()
        return digests

    def save_networks(self, epoch: str | int) -> list[Path]:
        """Save every network's weights as ``<epoch>_net_<name>.pth``, as one set: after a
        crash at any moment the folder holds either all the new files or all the old ones."""
        with file_set(self.save_dir, str(epoch)) as stage:
            self.stage_networks(stage, epoch)
        return [self.checkpoint_path(epoch, name) for name in self.saved_networks()]

    def load_networks(self, epoch: str | int) -> None:
        """Load ``<epoch>_net_<name>.pth`` for every network, refusing anything but weights.
        A save of the folder's checkpoint sets that a crash interrupted after it was complete on
        disk is finished first (:func:`util.file_set.recover`)."""
        if self.save_dir.is_dir():
            recover(self.save_dir)
        for name, net in self.saved_networks().items():
            path = self.checkpoint_path(epoch, name)
            state = load_weights(path, self.device)
            try:
                unwrap(net).load_state_dict(state)
            except RuntimeError as exc:
                raise weights_mismatch(path, unwrap(net), state) from exc
            logger.info("loaded %s", path)

    def log_networks(self) -> None:
        """Log each network's parameter count (and the architecture with ``--verbose``)."""
        for name, net in self.networks().items():
            n_params = sum(p.numel() for p in net.parameters())
            if self.verbose:
                logger.info("%s", net)
            logger.info("network %s: %.3f M parameters", name, n_params / 1e6)

    @staticmethod
    def set_requires_grad(nets: Iterable[nn.Module], requires_grad: bool) -> None:
        """Switch gradients of all parameters of ``nets`` on or off."""
        for net in nets:
            for p in net.parameters():
                p.requires_grad_(requires_grad)


def weights_mismatch(path: Path, net: nn.Module, state: dict[str, torch.Tensor]) -> ConfigError:
    """The error for weights ``state`` (from ``path``) that do not fit ``net``: what the options
    built and what the file holds, both read from tensors, never from metadata."""
    return ConfigError(f"{path}: does not fit the network built from the options "
                       f"({describe_network(net)}); the file holds {describe_weights(state)}")


def checkpoint_tag(epoch: str | int, load_iter: int = 0) -> str:
    """The tag of the checkpoint to load: ``iter_<load_iter>`` when ``load_iter`` > 0, else
    ``epoch`` (``latest``, ``best`` or a number)."""
    return f"iter_{load_iter}" if load_iter > 0 else str(epoch)


def serialize(obj: Any) -> bytes:
    """``torch.save`` of ``obj`` into memory, so that writing it to disk is plain file I/O
    (a full disk is an OSError, handled by :mod:`util.atomic`)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def load_weights(path: Path, device: torch.device) -> dict[str, Any]:
    """Load a state dict with ``weights_only=True``: pickled code is refused, not run.

    A network's weights map names to tensors; a training state also holds numbers, strings and
    nested dicts (optimizer and scheduler states, the plan)."""
    if not path.is_file():
        found = sorted(p.name for p in path.parent.glob("*_net_*.pth")) if path.parent.is_dir() \
            else []
        raise ConfigError(f"{path}: checkpoint not found; available: "
                          f"{', '.join(found) or 'none'}")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise DataError(f"{path}: refused, not a plain weights file ({exc})") from exc
    if not isinstance(state, dict):
        raise DataError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state
