"""PatchGAN discriminators (Isola et al. 2017): a convolutional classifier that scores every
overlapping patch of the (input, output) pair, and its 1x1 ("pixel") limit."""

from __future__ import annotations

import torch
from torch import nn

from models.networks._lookup import check_positive
from models.networks.norms import NormFactory, conv_bias, get_norm_layer

#: Cap on the width multiplier of the discriminator's layers (ndf * 8 at most).
_MAX_MULT = 8


def patch_receptive_field(n_layers: int) -> int:
    """Side in pixels of the input patch that one output logit of an ``n_layers`` PatchGAN sees.

    The two last 4x4 stride-1 layers see 4 then 7 units; each 4x4 stride-2 layer below maps r
    units to 2r + 2 pixels: 16, 34, 70 (n_layers = 3, the 70x70 PatchGAN), 142, ...
    """
    field = 7
    for _ in range(n_layers):
        field = 2 * field + 2
    return field


class NLayerDiscriminator(nn.Module):
    """PatchGAN with ``n_layers`` stride-2 4x4 convolutions, then two stride-1 4x4 convolutions.

    x: (N, input_nc, H, W) float -> (N, 1, h, w) logits (no sigmoid), h = H / 2**n_layers - 2
    for H a multiple of 2**n_layers (e.g. 256 -> 30 with 3 layers). The first layer is not
    normalised; a convolution has a bias unless a norm layer with its own bias follows it.
    """

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3,
                 norm_layer: NormFactory | None = None) -> None:
        super().__init__()
        check_positive(input_nc=input_nc, ndf=ndf, n_layers=n_layers)
        norm_layer = norm_layer or get_norm_layer("batch")
        bias = conv_bias(norm_layer)
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, kernel_size=4, stride=2, padding=1),
                                   nn.LeakyReLU(0.2, inplace=True)]
        c_in = ndf
        for k in range(1, n_layers + 1):
            c_out = ndf * min(2 ** k, _MAX_MULT)
            stride = 2 if k < n_layers else 1
            layers += [nn.Conv2d(c_in, c_out, kernel_size=4, stride=stride, padding=1, bias=bias),
                       norm_layer(c_out), nn.LeakyReLU(0.2, inplace=True)]
            c_in = c_out
        layers.append(nn.Conv2d(c_in, 1, kernel_size=4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, input_nc, H, W) float in [-1, 1] -> (N, 1, h, w) float logits."""
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN: judges every pixel on its own (colour/intensity statistics only).

    x: (N, input_nc, H, W) float -> (N, 1, H, W) logits.
    """

    def __init__(self, input_nc: int, ndf: int = 64, norm_layer: NormFactory | None = None) -> None:
        super().__init__()
        check_positive(input_nc=input_nc, ndf=ndf)
        norm_layer = norm_layer or get_norm_layer("batch")
        self.model = nn.Sequential(
            nn.Conv2d(input_nc, ndf, kernel_size=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, 2 * ndf, kernel_size=1, bias=conv_bias(norm_layer)),
            norm_layer(2 * ndf),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * ndf, 1, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, input_nc, H, W) float in [-1, 1] -> (N, 1, H, W) float logits."""
        return self.model(x)
