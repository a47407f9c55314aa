"""Generators and discriminators by name (``--netG``, ``--netD``), and the slice sizes they take."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from torch import nn

from models.networks._lookup import check_positive, lookup
from models.networks.norms import get_norm_layer
from models.networks.patchgan import NLayerDiscriminator, PixelDiscriminator
from models.networks.residual import ResidualGenerator
from models.networks.resnet import N_DOWNSAMPLING, ResnetGenerator
from models.networks.unet import UnetGenerator
from models.networks.weight_init import init_weights, lookup_init_type
from util.errors import ConfigError
from util.geometry import unet_min_multiple

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GeneratorSpec:
    """A ``--netG`` choice: a U-Net with ``depth`` downsamplings or a ResNet with ``depth``
    residual blocks."""

    family: Literal["unet", "resnet"]
    depth: int


@dataclass(frozen=True)
class DiscriminatorSpec:
    """A ``--netD`` choice: a PatchGAN with ``n_layers`` layers (None: ``--n_layers_D``), or the
    1x1 pixel discriminator."""

    family: Literal["patch", "pixel"]
    n_layers: int | None = None


#: ``--netG`` name -> spec. unet_S takes S x S slices at the least (log2 S downsamplings).
GENERATORS: dict[str, GeneratorSpec] = {
    "unet_64": GeneratorSpec("unet", 6),
    "unet_128": GeneratorSpec("unet", 7),
    "unet_256": GeneratorSpec("unet", 8),
    "unet_512": GeneratorSpec("unet", 9),
    "resnet_6blocks": GeneratorSpec("resnet", 6),
    "resnet_9blocks": GeneratorSpec("resnet", 9),
}

#: ``--netD`` name -> spec. basic: the 70x70 PatchGAN.
DISCRIMINATORS: dict[str, DiscriminatorSpec] = {
    "basic": DiscriminatorSpec("patch", 3),
    "n_layers": DiscriminatorSpec("patch"),
    "pixel": DiscriminatorSpec("pixel"),
}

#: Side multiple of the ResNet generators (two exact halvings) and their least side (the
#: residual blocks' maps must be at least 2x2 to be reflection-padded).
RESNET_MULTIPLE = 2 ** N_DOWNSAMPLING
RESNET_MIN_SIZE = 2 * RESNET_MULTIPLE


def define_G(input_nc: int, output_nc: int, ngf: int, netG: str, norm: str = "batch",
             use_dropout: bool = False, init_type: str = "normal",
             init_gain: float = 0.02, residual: bool = False) -> nn.Module:
    """Initialised generator (on the CPU): (N, input_nc, H, W) -> (N, output_nc, H, W) in [-1, 1].

    With ``residual`` the network's output is added to the middle input channel (the centre
    slice of a 2.5-D input; :class:`ResidualGenerator`), which needs ``output_nc`` 1.
    Raises ConfigError (listing the valid names) for an unknown netG, norm or init_type.
    """
    if residual and output_nc != 1:
        raise ConfigError(f"--residual adds the output to one input slice: it needs "
                          f"--output_nc 1, got {output_nc}")
    spec = lookup(GENERATORS, netG, "--netG")
    norm_layer = get_norm_layer(norm)
    lookup_init_type(init_type)
    if spec.family == "unet":
        net: nn.Module = UnetGenerator(input_nc, output_nc, spec.depth, ngf, norm_layer,
                                       use_dropout)
    else:
        net = ResnetGenerator(input_nc, output_nc, ngf, norm_layer, use_dropout, spec.depth)
    init_weights(net, init_type, init_gain)
    logger.info("generator %s: %d parameters, norm %s, dropout %s%s", netG, count_parameters(net),
                norm, use_dropout, ", residual" if residual else "")
    return ResidualGenerator(net, input_nc // 2) if residual else net


def define_D(input_nc: int, ndf: int, netD: str, n_layers_D: int = 3, norm: str = "batch",
             init_type: str = "normal", init_gain: float = 0.02) -> nn.Module:
    """Initialised discriminator (on the CPU): (N, input_nc, H, W) -> (N, 1, h, w) logits.

    ``n_layers_D`` is used by ``n_layers`` only. Raises ConfigError (listing the valid names) for
    an unknown netD, norm or init_type.
    """
    spec = lookup(DISCRIMINATORS, netD, "--netD")
    norm_layer = get_norm_layer(norm)
    lookup_init_type(init_type)
    if spec.family == "pixel":
        net: nn.Module = PixelDiscriminator(input_nc, ndf, norm_layer)
    else:
        n_layers = n_layers_D if spec.n_layers is None else spec.n_layers
        check_positive(n_layers_D=n_layers)
        net = NLayerDiscriminator(input_nc, ndf, n_layers, norm_layer)
    init_weights(net, init_type, init_gain)
    logger.info("discriminator %s: %d parameters, norm %s", netD, count_parameters(net), norm)
    return net


def count_parameters(net: nn.Module) -> int:
    """Number of learnable scalars of ``net``."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def unet_num_downs(netG: str) -> int | None:
    """Downsamplings of the U-Net ``netG`` (6 .. 9), None for a ResNet; ConfigError if unknown."""
    spec = lookup(GENERATORS, netG, "--netG")
    return spec.depth if spec.family == "unet" else None


def _nearest_multiple(size: int, multiple: int) -> int:
    """The multiple of ``multiple`` closest to ``size``, and at least ``multiple``."""
    return max(multiple, multiple * round(size / multiple))


@dataclass(frozen=True)
class SliceSizeRule:
    """The slices a generator takes: sides (pixels) that are multiples of ``multiple`` and at
    least ``least``. The default takes any size."""

    multiple: int = 1
    least: int = 1

    def takes(self, height: int, width: int) -> bool:
        """Whether (height, width) slices fit as they are."""
        return (height % self.multiple == 0 and width % self.multiple == 0
                and min(height, width) >= self.least)

    def fit(self, height: int, width: int) -> tuple[int, int]:
        """The smallest (H', W') >= (height, width) that fits: each side rounded up to a
        multiple of ``multiple``, and to at least ``least``."""
        def up(side: int) -> int:
            side = max(side, self.least)
            return -(-side // self.multiple) * self.multiple
        return up(height), up(width)


def _side_rule(spec: GeneratorSpec) -> SliceSizeRule:
    """The slice sizes a generator takes."""
    if spec.family == "unet":
        multiple = unet_min_multiple(spec.depth)
        return SliceSizeRule(multiple, multiple)
    return SliceSizeRule(RESNET_MULTIPLE, RESNET_MIN_SIZE)


def slice_size_rule(netG: str) -> SliceSizeRule:
    """The slice sizes ``netG`` takes (ConfigError listing the valid names if unknown);
    inference pads slices to ``rule.fit(H, W)``."""
    return _side_rule(lookup(GENERATORS, netG, "--netG"))


def _takes(spec: GeneratorSpec, height: int, width: int) -> bool:
    """Whether a generator takes (height, width) slices."""
    return _side_rule(spec).takes(height, width)


def check_slice_size(netG: str, height: int, width: int) -> None:
    """Raise ConfigError unless ``netG`` can take (height, width) slices (pixels).

    A U-Net with n downsamplings needs sides that are multiples of 2**n (so at least 2**n: below,
    the bottleneck vanishes and instance norm fails on 1x1 maps); a ResNet needs multiples of 4,
    at least 8. The message names the size, the generator and the multiple it needs, then what
    would fit: the U-Nets that take this size, else a ``--resize_to`` value (and the ResNets when
    they take it).
    """
    spec = lookup(GENERATORS, netG, "--netG")
    if height < 1 or width < 1:
        raise ConfigError(f"slice size {height}x{width} is empty; sides must be positive")
    if _takes(spec, height, width):
        return
    rule = _side_rule(spec)
    multiple, least = rule.multiple, rule.least
    need = f"multiples of {multiple}" + (f", at least {least}" if least > multiple else "")
    resize = f"--resize_to {max(least, _nearest_multiple(max(height, width), multiple))}"
    fitting = [name for name, other in GENERATORS.items() if _takes(other, height, width)]
    unets = [name for name in fitting if GENERATORS[name].family == "unet"]
    if unets:
        hint = f"use --netG {' or '.join(unets)}, or {resize}"
    elif spec.family == "unet":
        hint = f"no U-Net takes this size; use {resize}"
        if fitting:
            hint += f", or --netG {' or '.join(fitting)}"
    else:
        hint = f"use {resize}"
    raise ConfigError(f"slice size {height}x{width} cannot be taken by {netG} (needs {need}); "
                      f"{hint}")
