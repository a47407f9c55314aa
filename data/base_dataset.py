"""The dataset contract and the 2-D image transforms of the plain ``aligned`` mode."""

from __future__ import annotations

import argparse
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from data.settings import DataSettings
from util.errors import ConfigError

PREPROCESS_MODES = ("resize_and_crop", "crop", "resize", "scale_width", "scale_width_and_crop",
                    "none")


class BaseDataset(Dataset, ABC):
    """A dataset selectable with ``--dataset_mode``.

    Subclasses read what they need from the run's :class:`~data.settings.DataSettings` and keep
    plain values.
    """

    def __init__(self, settings: DataSettings) -> None:
        self.root = settings.dataroot

    @classmethod
    def from_settings(cls, settings: DataSettings) -> BaseDataset:
        """The dataset ``settings`` describe; what the ``--dataset_mode`` registry calls. A
        subclass with a keyword constructor adapts ``settings`` here."""
        return cls(settings)

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser,
                                   is_train: bool) -> argparse.ArgumentParser:  # noqa: ARG004
        """Add dataset-specific options or change defaults; returns the parser."""
        return parser

    @abstractmethod
    def __len__(self) -> int:
        """Number of samples."""

    @abstractmethod
    def __getitem__(self, index: int) -> dict[str, Any]:
        """One sample: ``A`` (C, H, W) float32 in [-1, 1], ``A_paths``, and ``B``/``B_paths``."""


@dataclass(frozen=True)
class ImageTransform:
    """Geometry of one random draw, applied identically to the A and B halves of a pair.

    ``resize``: (width, height) in pixels or None; ``crop``: (left, top, size) or None;
    ``flip``: mirror left-right.
    """

    resize: tuple[int, int] | None
    crop: tuple[int, int, int] | None
    flip: bool


def draw_transform(size: tuple[int, int], preprocess: str, load_size: int, crop_size: int,
                   flip: bool, rng: random.Random) -> ImageTransform:
    """Draw the resize/crop/flip of one sample of ``size`` = (width, height) pixels."""
    if preprocess not in PREPROCESS_MODES:
        raise ConfigError(f"unknown --preprocess '{preprocess}'; valid: "
                          f"{', '.join(PREPROCESS_MODES)}")
    width, height = size
    resize = None
    if preprocess.startswith("resize"):
        resize = (load_size, load_size)
    elif preprocess.startswith("scale_width"):
        resize = (load_size, max(crop_size, round(load_size * height / width)))
    w, h = resize or size
    crop = None
    if preprocess.endswith("crop"):
        if crop_size > min(w, h):
            raise ConfigError(f"--crop_size {crop_size} is larger than the image ({w}x{h})")
        crop = (rng.randint(0, w - crop_size), rng.randint(0, h - crop_size), crop_size)
    return ImageTransform(resize=resize, crop=crop, flip=flip and rng.random() < 0.5)


def apply_transform(img: Image.Image, t: ImageTransform, channels: int) -> torch.Tensor:
    """Apply ``t`` to a PIL image and return (channels, H, W) float32 in [-1, 1]."""
    img = img.convert("L" if channels == 1 else "RGB")
    if t.resize is not None:
        img = img.resize(t.resize, Image.Resampling.BICUBIC)
    if t.crop is not None:
        left, top, size = t.crop
        img = img.crop((left, top, left + size, top + size))
    if t.flip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    arr = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr))
