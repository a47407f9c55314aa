"""U-Net generator (Ronneberger et al. 2015, as used by pix2pix, Isola et al. 2017).

``num_downs`` levels, each halving the slice with a 4x4 stride-2 convolution on the way down and
doubling it back with a 4x4 stride-2 transposed convolution on the way up; the decoder sees the
encoder's features of the same level through a skip connection (channel concatenation).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from models.networks._lookup import check_positive
from models.networks.norms import NormFactory, conv_bias, get_norm_layer
from util.errors import ConfigError

logger = logging.getLogger(__name__)

#: Number of the first level (counted from 0 at the image) whose encoder maps 8 ngf -> 8 ngf.
_FIRST_FLAT_LEVEL = 4


def level_width(ngf: int, level: int) -> int:
    """Channels produced by the encoder of ``level``: ngf, 2 ngf, 4 ngf, then 8 ngf."""
    return ngf * min(2 ** level, 8)


class UnetGenerator(nn.Module):
    """U-Net mapping (N, input_nc, H, W) -> (N, output_nc, H, W) in [-1, 1] (Tanh).

    H and W must be multiples of ``2 ** num_downs`` (see ``check_slice_size``). Level 0 is the
    outermost (image) level, level ``num_downs - 1`` the innermost (bottleneck, 1x1 at the minimum
    size). Neither the outermost nor the innermost encoder convolution is normalised, so a
    (1, C, 1, 1) bottleneck never meets a norm layer. With ``use_dropout``, the decoders of the
    deeper 8 ngf levels (levels 4 .. num_downs - 2) apply dropout 0.5, the noise source of pix2pix.
    A convolution has a bias unless a norm layer with its own bias (batch norm) follows it.
    """

    def __init__(self, input_nc: int, output_nc: int, num_downs: int, ngf: int = 64,
                 norm_layer: NormFactory | None = None, use_dropout: bool = False) -> None:
        super().__init__()
        check_positive(input_nc=input_nc, output_nc=output_nc, num_downs=num_downs, ngf=ngf)
        norm_layer = norm_layer or get_norm_layer("batch")
        bias = conv_bias(norm_layer)
        self.num_downs = num_downs
        innermost = num_downs - 1
        self.encoders = nn.ModuleList()
        self.decoders = nn.ModuleList()  # innermost first, in the order they run
        for level in range(num_downs):
            self.encoders.append(encoder_block(level, innermost, input_nc, ngf, norm_layer,
                                               bias, nn.Conv2d))
        for level in reversed(range(num_downs)):
            dropout = use_dropout and _FIRST_FLAT_LEVEL <= level < innermost
            self.decoders.append(decoder_block(level, innermost, output_nc, ngf, norm_layer,
                                               bias, dropout, True, nn.ConvTranspose2d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, input_nc, H, W) float32 in [-1, 1] -> (N, output_nc, H, W) float32 in [-1, 1]."""
        multiple = 2 ** self.num_downs
        if x.shape[-2] % multiple or x.shape[-1] % multiple:
            raise ConfigError(f"U-Net with {self.num_downs} levels needs slices whose sides are "
                              f"multiples of {multiple}, got {x.shape[-2]}x{x.shape[-1]}")
        return run_unet(self.encoders, self.decoders, x)


def encoder_block(level: int, innermost: int, input_nc: int, ngf: int, norm_layer: NormFactory,
                  bias: bool, conv: type[nn.Conv2d] | type[nn.Conv3d]) -> nn.Sequential:
    """[LeakyReLU ->] 4x4(x4) stride-2 ``conv`` [-> norm] of one level of a 2-D or 3-D U-Net:
    input_nc (level 0) or the width of the level below -> :func:`level_width`. Neither the
    outermost nor the innermost level is normalised (so a 1x1 bottleneck never meets a norm)."""
    c_in = input_nc if level == 0 else level_width(ngf, level - 1)
    normed = 0 < level < innermost
    # Not in place: the level's input is also the skip of the level above.
    layers: list[nn.Module] = [] if level == 0 else [nn.LeakyReLU(0.2)]
    layers.append(conv(c_in, level_width(ngf, level), kernel_size=4, stride=2, padding=1,
                       bias=bias or not normed))
    if normed:
        layers.append(norm_layer(level_width(ngf, level)))
    return nn.Sequential(*layers)


def decoder_block(level: int, innermost: int, output_nc: int, ngf: int, norm_layer: NormFactory,
                  bias: bool, dropout: bool, tanh: bool,
                  conv_t: type[nn.ConvTranspose2d] | type[nn.ConvTranspose3d]) -> nn.Sequential:
    """ReLU -> 4x4(x4) stride-2 transposed ``conv_t`` -> norm [-> dropout 0.5], or at level 0
    [-> Tanh when ``tanh``].

    The input is the bottleneck (innermost level) or the concatenation of the skip and the deeper
    decoder's output (2x the level's width); the output has the width of the level above, or
    output_nc at level 0.
    """
    width = level_width(ngf, level)
    c_in = width if level == innermost else 2 * width
    c_out = output_nc if level == 0 else level_width(ngf, level - 1)
    layers: list[nn.Module] = [nn.ReLU(inplace=True),
                               conv_t(c_in, c_out, kernel_size=4, stride=2, padding=1,
                                      bias=bias or level == 0)]
    if level == 0:
        layers += [nn.Tanh()] if tanh else []
        return nn.Sequential(*layers)
    layers.append(norm_layer(c_out))
    if dropout:
        layers.append(nn.Dropout(0.5))
    return nn.Sequential(*layers)


def run_unet(encoders: nn.ModuleList, decoders: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    """A U-Net pass: the encoders in turn, then the decoders (innermost first), each decoder's
    output joined with the skip of its level (channel concatenation)."""
    skips: list[torch.Tensor] = []
    h = x
    for encoder in encoders:
        h = encoder(h)
        skips.append(h)
    skips.pop()  # the bottleneck goes straight into the innermost decoder
    for decoder in decoders:
        h = decoder(h)
        if skips:
            h = torch.cat((skips.pop(), h), dim=1)
    return h
