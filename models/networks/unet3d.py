"""Volumetric U-Net generator: the pix2pix U-Net (Isola et al. 2017) with cubic kernels, for
volumes in the slice-stack frame (N, C, D, H, W): D axial slices inferior -> superior, H rows
anterior -> posterior, W columns right -> left.

Each of ``num_downs`` levels halves every side with a 4x4x4 stride-2 convolution and doubles it
back with a 4x4x4 stride-2 transposed convolution, the decoder seeing the encoder's features of
its level through a skip connection. One strided convolution per level keeps the CPU cost low:
the full-resolution volume meets only the first convolution (input_nc -> ngf, computed at half
resolution) and the last transposed convolution (2 ngf -> output_nc), so a forward pass costs
about as much as a single 3x3x3 convolution of ngf channels at full resolution would.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
from torch import nn

from models.networks._lookup import check_positive
from models.networks.norms import NormFactory, conv_bias, get_norm_layer
from models.networks.unet import decoder_block, encoder_block, run_unet
from util.errors import ConfigError

logger = logging.getLogger(__name__)

#: Output activations: ``tanh`` keeps the output in [-1, 1] (a volume); ``linear`` leaves it
#: unbounded (a displacement field in voxels).
FINALS = ("tanh", "linear")

#: Most decoders given dropout: the deepest intermediate levels, as pix2pix's three 8 ngf blocks.
_MAX_DROPOUT_LEVELS = 3


def dropout_levels(num_downs: int) -> range:
    """Levels whose decoder applies dropout 0.5 with ``use_dropout``: those between the image
    level (0) and the bottleneck (``num_downs - 1``), the three deepest at most."""
    innermost = num_downs - 1
    return range(max(1, innermost - _MAX_DROPOUT_LEVELS), innermost)


class UnetGenerator3d(nn.Module):
    """3-D U-Net mapping (N, input_nc, D, H, W) -> (N, output_nc, D, H, W) float32.

    D, H and W must be multiples of ``2 ** num_downs``. Level ``k`` has ``ngf * min(2**k, 8)``
    channels. Neither the outermost nor the innermost (bottleneck, 1x1x1 at the least size)
    encoder convolution is normalised, so no norm layer meets a 1x1x1 map. ``norm_layer`` must
    make 3-D layers (default: ``get_norm_layer("batch", dims=3)``). With ``final="tanh"`` the
    output is in [-1, 1]; with ``"linear"`` it is unbounded and :attr:`output_layer` (the last
    transposed convolution) can be zeroed to start from a zero output. A convolution has a bias
    unless a norm layer with its own bias (batch norm) follows it.
    """

    def __init__(self, input_nc: int, output_nc: int, num_downs: int, ngf: int = 32,
                 norm_layer: NormFactory | None = None, use_dropout: bool = False,
                 final: Literal["tanh", "linear"] = "tanh") -> None:
        super().__init__()
        check_positive(input_nc=input_nc, output_nc=output_nc, num_downs=num_downs, ngf=ngf)
        if final not in FINALS:
            raise ConfigError(f"final must be one of {', '.join(FINALS)}, got {final!r}")
        norm_layer = norm_layer or get_norm_layer("batch", dims=3)
        bias = conv_bias(norm_layer)
        self.num_downs = num_downs
        innermost = num_downs - 1
        self.encoders = nn.ModuleList()
        self.decoders = nn.ModuleList()  # innermost first, in the order they run
        for level in range(num_downs):
            self.encoders.append(encoder_block(level, innermost, input_nc, ngf, norm_layer,
                                               bias, nn.Conv3d))
        dropped = dropout_levels(num_downs) if use_dropout else range(0)
        for level in reversed(range(num_downs)):
            self.decoders.append(decoder_block(level, innermost, output_nc, ngf, norm_layer,
                                               bias, level in dropped, final == "tanh",
                                               nn.ConvTranspose3d))

    @property
    def output_layer(self) -> nn.ConvTranspose3d:
        """The transposed convolution that produces the output (2 ngf -> output_nc)."""
        last = self.decoders[-1]
        layer = last[1] if isinstance(last, nn.Sequential) else None
        if not isinstance(layer, nn.ConvTranspose3d):  # _decoder builds it so
            raise TypeError(f"the outermost decoder holds {layer!r}, not a ConvTranspose3d")
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, input_nc, D, H, W) float32 -> (N, output_nc, D, H, W) float32 ([-1, 1] with
        ``final="tanh"``). Raises ConfigError for another rank or a side that is not a multiple
        of ``2 ** num_downs``."""
        if x.ndim != 5:
            raise ConfigError(f"3-D U-Net expects volumes (N, C, D, H, W), got shape "
                              f"{tuple(x.shape)}")
        multiple = 2 ** self.num_downs
        if any(side % multiple for side in x.shape[2:]):
            size = "x".join(str(side) for side in x.shape[2:])
            raise ConfigError(f"3-D U-Net with {self.num_downs} levels needs volumes whose sides "
                              f"are multiples of {multiple}, got {size} (DxHxW)")
        return run_unet(self.encoders, self.decoders, x)
