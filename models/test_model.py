"""Inference with a generator alone (``--model test``), e.g. for new patients without truth."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from models.base_model import BaseModel
from models.settings import RunSettings
from models.trained_run import build_generator
from util.errors import ConfigError


class TestModel(BaseModel):
    """Loads ``<epoch>_net_G<model_suffix>.pth`` and computes ``fake = G(real)``."""

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser,
                                   is_train: bool) -> argparse.ArgumentParser:
        """Test-only; ``--model_suffix`` picks e.g. ``net_G_A`` of a two-generator run."""
        if is_train:
            raise ConfigError("--model test is for test.py only; train with --model pix2pix")
        parser.add_argument("--model_suffix", default="",
                            help="load <epoch>_net_G<suffix>.pth")
        return parser

    def __init__(self, settings: RunSettings) -> None:
        super().__init__(settings)
        suffix = settings.run.model_suffix
        self.loss_names = []
        self.visual_names = ["real_A", "fake_B", "real_B"]
        self.model_names = [f"G{suffix}"]
        net = build_generator(settings.generator, settings.init).to(self.device)
        setattr(self, f"netG{suffix}", net)
        self.generator = net
        self.real_A: torch.Tensor | None = None
        self.real_B: torch.Tensor | None = None
        self.fake_B: torch.Tensor | None = None

    def set_input(self, batch: dict[str, Any]) -> None:
        """batch: ``A`` (N, input_nc, H, W) in [-1, 1]; ``B`` kept for pictures when present."""
        self.real_A = batch["A"].to(self.device, non_blocking=True)
        self.real_B = batch["B"].to(self.device) if "B" in batch else None

    def forward(self) -> None:
        """fake_B = G(real_A)."""
        self.fake_B = self.generator(self.real_A)

    def optimize_parameters(self) -> None:
        """A test model does not train."""
        raise ConfigError("--model test cannot be trained")
