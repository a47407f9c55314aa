"""A run's settings: one frozen, typed value, built once at the entry point and passed down.

:class:`RunSettings` gathers the parts, each a frozen dataclass whose fields are named as the
options they hold (:mod:`util.settings`):

- ``run`` (:class:`RunSetup`): which run, where, on which device, which checkpoint;
- ``data`` (:class:`data.settings.DataSettings`): the dataset and how it is served;
- ``generator`` (:class:`GeneratorSettings`): what the generator is and what input it takes;
- ``discriminator`` (:class:`DiscriminatorSettings`) and ``init`` (:class:`InitSettings`);
- ``losses`` (:class:`LossSettings`) and ``schedule`` (:class:`ScheduleSettings`), training's;
- ``speed`` (:class:`SpeedRequest`): the speed paths asked for (:mod:`util.speed`);
- ``regions`` (:class:`evaluation.metrics.RegionSettings`): the evaluation regions.

An option several parts need (the HU window: data, generator and regions) is in each of them,
and :class:`RunSettings` refuses parts that disagree on it. The value is written and read as
the flat {option: value} JSON of ``opt.json`` (:meth:`RunSettings.to_json`,
:meth:`RunSettings.from_json`): a run folder's ``opt.json``, also one recorded before some
option existed, gives back the settings the run had. ``options/`` turns the parsed command line
into it; library code takes it or its parts, never the parsed options.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from data.settings import DataSettings
from evaluation.metrics import RegionSettings
from models.networks import SliceSizeRule, slice_size_rule, volume_size_rule
from models.networks import is_volumetric as is_volumetric_name
from models.volume_inference import DEFAULT_OVERLAP, VolumeWindows
from util.errors import ConfigError
from util.resample import checked_working_spacing
from util.settings import settings_from_options, settings_to_json


@dataclass(frozen=True)
class GeneratorSettings:
    """What a trained generator is and what it takes: its architecture (``--netG`` ...
    ``--residual``; ``phase_input``: it reads the target phase as two planes after the image
    channels, recorded by a training with ``--phases``) and its input (``--resize_to`` pixels,
    0 = native; ``--patch_size`` (D, H, W) voxels a volumetric generator was trained on,
    0 = whole extent; ``--working_spacing_mm`` (slice, row, column) mm of the grid it runs on,
    0 = native axis; ``--residual_gate_hu``, the change from the AVG below which the AVG is
    kept (0 = off); the HU window mapped to [-1, 1]; ``--direction``). Field names are the
    option names."""

    netG: str
    ngf: int = 64
    norm: str = "instance"
    no_dropout: bool = False
    input_nc: int = 1
    output_nc: int = 1
    context_slices: int = 0
    residual: bool = False
    phase_input: bool = False
    resize_to: int = 0
    patch_size: tuple[int, int, int] = (0, 0, 0)
    working_spacing_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    residual_gate_hu: float = 0.0
    hu_min: float = -1024.0
    hu_max: float = 3071.0
    direction: str = "AtoB"

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> GeneratorSettings:
        """The settings in ``options`` (an ``opt.json`` dict); options a run recorded before
        they existed take their defaults. ConfigError for a missing ``--netG`` or a working
        spacing that is not 3 spacings >= 0 mm."""
        settings = settings_from_options(cls, options)
        depth, height, width = (int(v) for v in settings.patch_size)
        return dataclasses.replace(
            settings, patch_size=(depth, height, width),
            working_spacing_mm=checked_working_spacing(settings.working_spacing_mm))

    @property
    def volumetric(self) -> bool:
        """Whether the generator is a volumetric (3-D) one."""
        return is_volumetric_name(self.netG)

    def size_rule(self) -> SliceSizeRule:
        """The slice (2-D) or window (3-D) sides the generator takes."""
        return volume_size_rule(self.netG) if self.volumetric else slice_size_rule(self.netG)

    def windows(self, overlap: float = DEFAULT_OVERLAP) -> VolumeWindows | None:
        """How a volumetric generator covers a volume (None for a slice generator)."""
        if not self.volumetric:
            return None
        return VolumeWindows(self.patch_size, overlap, self.size_rule())


#: The options that describe a trained generator, in one place (derived from the fields).
SETTING_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(GeneratorSettings))
#: Of those, the ones that shape the weights (the rest say what input the network expects).
ARCHITECTURE_NAMES: tuple[str, ...] = SETTING_NAMES[:SETTING_NAMES.index("resize_to")]


@dataclass(frozen=True, kw_only=True)
class RunSetup:
    """Which run and how it runs: ``model`` (``--model``), the run folder
    ``<checkpoints_dir>/<name>``, ``is_train`` (a training, not a test), ``gpu_ids`` (resolved;
    empty: the CPU), ``seed``; the checkpoint loaded (``epoch``, or ``iter_<load_iter>`` when
    ``load_iter`` > 0) by a test or a resumed training (``continue_train``), of the generator
    ``G<model_suffix>`` for ``--model test``; a training's ``overwrite`` and
    ``allow_data_change``; ``verbose``: log the networks."""

    model: str = "pix2pix"
    name: str = "experiment_name"
    checkpoints_dir: str = "./checkpoints"
    is_train: bool = field(default=False, metadata={"option": "isTrain"})
    gpu_ids: tuple[int, ...] = ()
    seed: int = 0
    epoch: str = "latest"
    load_iter: int = 0
    continue_train: bool = False
    overwrite: bool = False
    allow_data_change: bool = False
    model_suffix: str = ""
    verbose: bool = False

    @property
    def run_dir(self) -> Path:
        """The run folder, ``<checkpoints_dir>/<name>``."""
        return Path(self.checkpoints_dir) / self.name

    @property
    def device(self) -> torch.device:
        """``cuda:<gpu_ids[0]>``, or the CPU without GPU ids."""
        return torch.device(f"cuda:{self.gpu_ids[0]}" if self.gpu_ids else "cpu")


@dataclass(frozen=True, kw_only=True)
class DiscriminatorSettings:
    """The PatchGAN of a training: ``netD``, ``ndf`` filters in its first convolution,
    ``n_layers_D`` layers of the ``n_layers`` kind."""

    netD: str = "basic"
    ndf: int = 64
    n_layers_D: int = 3


@dataclass(frozen=True, kw_only=True)
class InitSettings:
    """How new networks' weights are drawn: ``init_type`` with scale ``init_gain``."""

    init_type: str = "normal"
    init_gain: float = 0.02


@dataclass(frozen=True, kw_only=True)
class LossSettings:
    """The terms of the generator's loss (pix2pix): ``gan_mode`` and its weight
    ``lambda_GAN``; L1 (window units) weighted ``lambda_L1``, moving pixels counting
    ``1 + motion_weight`` times; the mean of the phases against the AVG, ``lambda_consistency``
    (phase-conditioned runs); a motion generator's field smoothness, ``lambda_smooth``."""

    gan_mode: str = "lsgan"
    lambda_L1: float = 100.0
    lambda_GAN: float = 1.0
    motion_weight: float = 0.0
    lambda_consistency: float = 0.0
    lambda_smooth: float = 1.0


@dataclass(frozen=True, kw_only=True)
class ScheduleSettings:
    """How a training proceeds: Adam (``lr``, ``beta1``), epochs ``epoch_count`` ..
    ``n_epochs + n_epochs_decay`` with the ``lr_policy`` (``lr_decay_iters`` for ``step``),
    the generator average (``ema_decay``, 0 = off), the pool of past fakes shown to D
    (``pool_size``); how often (in slices, iterations or epochs, as the options say) it
    displays, logs, validates and saves."""

    lr: float = 0.0002
    beta1: float = 0.5
    n_epochs: int = 100
    n_epochs_decay: int = 100
    epoch_count: int = 1
    lr_policy: str = "linear"
    lr_decay_iters: int = 50
    ema_decay: float = 0.0
    pool_size: int = 50
    display_freq: int = 400
    print_freq: int = 100
    val_freq: int = 1
    save_latest_freq: int = 5000
    save_epoch_freq: int = 5
    save_by_iter: bool = False

    @property
    def last_epoch(self) -> int:
        """The last epoch trained: ``n_epochs + n_epochs_decay``."""
        return self.n_epochs + self.n_epochs_decay

    def lr_schedule(self) -> dict[str, Any]:
        """The arguments of :func:`models.networks.get_scheduler` besides the optimizer."""
        return {"lr_policy": self.lr_policy, "epoch_count": self.epoch_count,
                "n_epochs": self.n_epochs, "n_epochs_decay": self.n_epochs_decay,
                "lr_decay_iters": self.lr_decay_iters}


@dataclass(frozen=True, kw_only=True)
class SpeedRequest:
    """The speed paths asked for (:mod:`util.speed` switches off, per device, those it
    cannot take): mixed precision ``amp``, ``channels_last``, ``compile``; TF32 and the cudnn
    autotuner unless ``no_tf32``/``no_cudnn_benchmark``."""

    amp: str = "off"
    channels_last: bool = False
    compile: bool = False
    no_tf32: bool = False
    no_cudnn_benchmark: bool = False


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """Every setting of a run, by part (see the module docstring); parts that disagree on an
    option they share are a ConfigError naming it."""

    run: RunSetup
    data: DataSettings
    generator: GeneratorSettings
    discriminator: DiscriminatorSettings = field(default_factory=DiscriminatorSettings)
    init: InitSettings = field(default_factory=InitSettings)
    losses: LossSettings = field(default_factory=LossSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    speed: SpeedRequest = field(default_factory=SpeedRequest)
    regions: RegionSettings = field(default_factory=RegionSettings)

    def __post_init__(self) -> None:
        seen: dict[str, tuple[str, Any]] = {}
        clashes = []
        for part, values in self._parts_json():
            for option, value in values.items():
                first = seen.setdefault(option, (part, value))
                if first[1] != value:
                    clashes.append(f"--{option} {first[1]} ({first[0]}) but {value} ({part})")
        if clashes:
            raise ConfigError(f"the parts of the run's settings disagree: {'; '.join(clashes)}")

    def _parts_json(self) -> list[tuple[str, dict[str, Any]]]:
        """(part name, its {option: JSON value}) of every part."""
        return [(f.name, settings_to_json(getattr(self, f.name)))
                for f in dataclasses.fields(self)]

    def to_json(self) -> dict[str, Any]:
        """{option: value} of every setting, as ``opt.json`` holds it (tuples as lists,
        infinity as null), sorted by option."""
        merged = {k: v for _, values in self._parts_json() for k, v in values.items()}
        return dict(sorted(merged.items()))

    def with_options(self, **values: Any) -> RunSettings:
        """These settings with some options changed ({option: value}, e.g. ``isTrain=False``),
        in every part that holds them."""
        return RunSettings.from_json({**self.to_json(), **values})

    @classmethod
    def from_json(cls, options: Mapping[str, Any]) -> RunSettings:
        """The settings in ``options`` ({option: value}: an ``opt.json``, or the parsed
        options as JSON): other names are ignored, a missing option takes its default (a run
        recorded before it existed). ConfigError for a missing ``--dataroot`` or ``--netG``
        and for values a part refuses."""
        try:
            return cls(run=settings_from_options(RunSetup, options),
                       data=settings_from_options(DataSettings, options),
                       generator=GeneratorSettings.from_options(options),
                       discriminator=settings_from_options(DiscriminatorSettings, options),
                       init=settings_from_options(InitSettings, options),
                       losses=settings_from_options(LossSettings, options),
                       schedule=settings_from_options(ScheduleSettings, options),
                       speed=settings_from_options(SpeedRequest, options),
                       regions=settings_from_options(RegionSettings, options))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"the options do not make a run's settings: {exc}") from exc
