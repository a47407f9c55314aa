"""PatchGAN discriminators (Isola et al. 2017): a convolutional classifier that scores every
overlapping patch of the (input, output) pair, and its 1x1 ("pixel") limit; for 2-D slices
(N, C, H, W) or, with ``dims=3``, 3-D volumes (N, C, D, H, W) with cubic kernels."""

from __future__ import annotations

import torch
from torch import nn

from models.networks._lookup import check_positive
from models.networks.norms import NormFactory, check_dims, conv_bias, get_norm_layer

#: Cap on the width multiplier of the discriminator's layers (ndf * 8 at most).
_MAX_MULT = 8

#: Number of spatial dimensions -> convolution class.
_CONVS: dict[int, type[nn.Conv2d] | type[nn.Conv3d]] = {2: nn.Conv2d, 3: nn.Conv3d}


def _conv_class(dims: int) -> type[nn.Conv2d] | type[nn.Conv3d]:
    """nn.Conv2d or nn.Conv3d for ``dims`` 2 or 3 (ConfigError otherwise)."""
    check_dims(dims)
    return _CONVS[dims]


def patch_receptive_field(n_layers: int) -> int:
    """Side in pixels (voxels in 3-D) of the input patch that one output logit of an
    ``n_layers`` PatchGAN sees.

    The two last 4x4 stride-1 layers see 4 then 7 units; each 4x4 stride-2 layer below maps r
    units to 2r + 2 pixels: 16, 34, 70 (n_layers = 3, the 70x70 PatchGAN), 142, ...
    """
    field = 7
    for _ in range(n_layers):
        field = 2 * field + 2
    return field


def patch_min_side(n_layers: int) -> int:
    """Least input side (pixels or voxels, on every axis) an ``n_layers`` PatchGAN takes: its
    ``n_layers`` halvings must leave 3 units for the two 4x4 stride-1 layers (24 for 3 layers)."""
    return 3 * 2 ** n_layers


class NLayerDiscriminator(nn.Module):
    """PatchGAN with ``n_layers`` stride-2 4x4 convolutions, then two stride-1 4x4 convolutions.

    x: (N, input_nc, H, W) float -> (N, 1, h, w) logits (no sigmoid), h = H / 2**n_layers - 2
    for H a multiple of 2**n_layers (e.g. 256 -> 30 with 3 layers). With ``dims=3`` the kernels
    are 4x4x4 and (N, input_nc, D, H, W) -> (N, 1, d, h, w), each side shrinking the same way.
    The first layer is not normalised; a convolution has a bias unless a norm layer with its own
    bias follows it. ``norm_layer`` must make layers of ``dims`` dimensions (default: batch norm).
    """

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3,
                 norm_layer: NormFactory | None = None, dims: int = 2) -> None:
        super().__init__()
        check_positive(input_nc=input_nc, ndf=ndf, n_layers=n_layers)
        conv = _conv_class(dims)
        norm_layer = norm_layer or get_norm_layer("batch", dims)
        bias = conv_bias(norm_layer)
        layers: list[nn.Module] = [conv(input_nc, ndf, kernel_size=4, stride=2, padding=1),
                                   nn.LeakyReLU(0.2, inplace=True)]
        c_in = ndf
        for k in range(1, n_layers + 1):
            c_out = ndf * min(2 ** k, _MAX_MULT)
            stride = 2 if k < n_layers else 1
            layers += [conv(c_in, c_out, kernel_size=4, stride=stride, padding=1, bias=bias),
                       norm_layer(c_out), nn.LeakyReLU(0.2, inplace=True)]
            c_in = c_out
        layers.append(conv(c_in, 1, kernel_size=4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, input_nc, H, W) (or (N, input_nc, D, H, W)) float in [-1, 1] -> (N, 1, h, w)
        (or (N, 1, d, h, w)) float logits."""
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN: judges every pixel on its own (colour/intensity statistics only).

    x: (N, input_nc, H, W) float -> (N, 1, H, W) logits; with ``dims=3`` (N, input_nc, D, H, W)
    -> (N, 1, D, H, W). ``norm_layer`` must make layers of ``dims`` dimensions.
    """

    def __init__(self, input_nc: int, ndf: int = 64, norm_layer: NormFactory | None = None,
                 dims: int = 2) -> None:
        super().__init__()
        check_positive(input_nc=input_nc, ndf=ndf)
        conv = _conv_class(dims)
        norm_layer = norm_layer or get_norm_layer("batch", dims)
        self.model = nn.Sequential(
            conv(input_nc, ndf, kernel_size=1),
            nn.LeakyReLU(0.2, inplace=True),
            conv(ndf, 2 * ndf, kernel_size=1, bias=conv_bias(norm_layer)),
            norm_layer(2 * ndf),
            nn.LeakyReLU(0.2, inplace=True),
            conv(2 * ndf, 1, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, input_nc, H, W) (or (N, input_nc, D, H, W)) float in [-1, 1] -> logits of the
        same spatial shape, one channel."""
        return self.model(x)
