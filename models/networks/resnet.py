"""ResNet generator (Johnson et al. 2016, the CycleGAN generator): two stride-2 downsamplings,
``n_blocks`` residual blocks at 4 ngf channels, two stride-2 upsamplings."""

from __future__ import annotations

import torch
from torch import nn

from models.networks._lookup import check_positive
from models.networks.norms import NormFactory, conv_bias, get_norm_layer

#: Stride-2 downsamplings (and upsamplings) around the residual blocks.
N_DOWNSAMPLING = 2


class ResnetBlock(nn.Module):
    """x + F(x), F = [reflect-pad 3x3 conv -> norm -> ReLU (-> dropout 0.5)] -> reflect-pad 3x3
    conv -> norm. x: (N, C, H, W) -> (N, C, H, W); H, W >= 2 (reflection padding)."""

    def __init__(self, channels: int, norm_layer: NormFactory, use_dropout: bool,
                 bias: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(channels, channels, kernel_size=3, padding=1, padding_mode="reflect",
                      bias=bias),
            norm_layer(channels),
            nn.ReLU(inplace=True),
        ]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [
            nn.Conv2d(channels, channels, kernel_size=3, padding=1, padding_mode="reflect",
                      bias=bias),
            norm_layer(channels),
        ]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) -> (N, C, H, W)."""
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """ResNet mapping (N, input_nc, H, W) -> (N, output_nc, H, W) in [-1, 1] (Tanh).

    H and W must be multiples of 4 (two exact halvings) and at least 8, so that the residual
    blocks' 2x2-or-larger maps can be reflection-padded. A convolution has a bias unless a norm
    layer with its own bias (batch norm) follows it.
    """

    def __init__(self, input_nc: int, output_nc: int, ngf: int = 64,
                 norm_layer: NormFactory | None = None, use_dropout: bool = False,
                 n_blocks: int = 9) -> None:
        super().__init__()
        check_positive(input_nc=input_nc, output_nc=output_nc, ngf=ngf, n_blocks=n_blocks)
        norm_layer = norm_layer or get_norm_layer("batch")
        bias = conv_bias(norm_layer)
        layers: list[nn.Module] = [
            nn.Conv2d(input_nc, ngf, kernel_size=7, padding=3, padding_mode="reflect", bias=bias),
            norm_layer(ngf),
            nn.ReLU(inplace=True),
        ]
        for i in range(N_DOWNSAMPLING):
            c_in = ngf * 2 ** i
            layers += [nn.Conv2d(c_in, 2 * c_in, kernel_size=3, stride=2, padding=1, bias=bias),
                       norm_layer(2 * c_in), nn.ReLU(inplace=True)]
        width = ngf * 2 ** N_DOWNSAMPLING
        layers += [ResnetBlock(width, norm_layer, use_dropout, bias) for _ in range(n_blocks)]
        for i in range(N_DOWNSAMPLING, 0, -1):
            c_in = ngf * 2 ** i
            layers += [nn.ConvTranspose2d(c_in, c_in // 2, kernel_size=3, stride=2, padding=1,
                                          output_padding=1, bias=bias),
                       norm_layer(c_in // 2), nn.ReLU(inplace=True)]
        layers += [
            nn.Conv2d(ngf, output_nc, kernel_size=7, padding=3, padding_mode="reflect"),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, input_nc, H, W) float32 in [-1, 1] -> (N, output_nc, H, W) float32 in [-1, 1]."""
        return self.model(x)
