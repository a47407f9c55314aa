"""Residual output: the generator predicts the change from its input slice, not the slice.

For AVG -> phase 0 most voxels barely change (only moving anatomy differs), so learning
``phase 0 - AVG`` starts from the identity answer and spends capacity on the motion alone.
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualGenerator(nn.Module):
    """``y = clip(x[:, skip_channel] + net(x), -1, 1)``.

    x: (N, C, H, W) in [-1, 1]; ``skip_channel`` is the input channel the output is added to
    (the centre slice of a 2.5-D input). Returns (N, 1, H, W) in [-1, 1]; ``net`` must output
    (N, 1, H, W).
    """

    def __init__(self, net: nn.Module, skip_channel: int) -> None:
        super().__init__()
        if skip_channel < 0:
            raise ValueError(f"skip_channel must be >= 0, got {skip_channel}")
        self.net = net
        self.skip_channel = skip_channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, 1, H, W), both in [-1, 1]."""
        skip = x[:, self.skip_channel:self.skip_channel + 1]
        return (skip + self.net(x)).clamp(-1.0, 1.0)
