"""Generators and discriminators by name (``--netG``, ``--netD``), and the slice (2-D) or volume
(3-D) sizes they take."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from torch import nn

from models.networks._lookup import check_positive, lookup
from models.networks.motion import MotionGenerator
from models.networks.norms import get_norm_layer
from models.networks.patchgan import NLayerDiscriminator, PixelDiscriminator
from models.networks.residual import ResidualGenerator
from models.networks.resnet import N_DOWNSAMPLING, ResnetGenerator
from models.networks.unet import UnetGenerator
from models.networks.unet3d import UnetGenerator3d
from models.networks.weight_init import init_weights, lookup_init_type
from util.distributed import unwrap
from util.errors import ConfigError
from util.geometry import unet_min_multiple

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GeneratorSpec:
    """A ``--netG`` choice: a U-Net with ``depth`` downsamplings or a ResNet with ``depth``
    residual blocks (slices), or a 3-D U-Net with ``depth`` downsamplings, alone (``unet3d``) or
    predicting a displacement field (``motion3d``; volumes)."""

    family: Literal["unet", "resnet", "unet3d", "motion3d"]
    depth: int

    @property
    def volumetric(self) -> bool:
        """Whether the generator takes volumes (N, C, D, H, W) rather than slices."""
        return self.family in ("unet3d", "motion3d")


@dataclass(frozen=True)
class DiscriminatorSpec:
    """A ``--netD`` choice: a PatchGAN with ``n_layers`` layers (None: ``--n_layers_D``), or the
    1x1 pixel discriminator."""

    family: Literal["patch", "pixel"]
    n_layers: int | None = None


#: ``--netG`` name -> spec. unet_S takes S x S slices at the least (log2 S downsamplings);
#: unet3d_n and motion3d_n take volumes whose sides are multiples of 2**n (n downsamplings).
GENERATORS: dict[str, GeneratorSpec] = {
    "unet_64": GeneratorSpec("unet", 6),
    "unet_128": GeneratorSpec("unet", 7),
    "unet_256": GeneratorSpec("unet", 8),
    "unet_512": GeneratorSpec("unet", 9),
    "resnet_6blocks": GeneratorSpec("resnet", 6),
    "resnet_9blocks": GeneratorSpec("resnet", 9),
    "unet3d_3": GeneratorSpec("unet3d", 3),
    "unet3d_4": GeneratorSpec("unet3d", 4),
    "unet3d_5": GeneratorSpec("unet3d", 5),
    "motion3d_3": GeneratorSpec("motion3d", 3),
    "motion3d_4": GeneratorSpec("motion3d", 4),
    "motion3d_5": GeneratorSpec("motion3d", 5),
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
             init_gain: float = 0.02, residual: bool = False,
             intensity_correction: bool = True, conditioning_nc: int = 0) -> nn.Module:
    """Initialised generator (on the CPU): (N, input_nc, H, W) -> (N, output_nc, H, W) in [-1, 1],
    or for a volumetric ``netG`` (:func:`is_volumetric`) (N, input_nc, D, H, W) ->
    (N, output_nc, D, H, W).

    With ``residual`` the network's output is added to the middle input channel (the centre
    slice of a 2.5-D input; :class:`ResidualGenerator`), which needs ``output_nc`` 1. A
    ``motion3d_n`` name builds a :class:`MotionGenerator` (one channel in and out, no
    ``residual``) over a linear-output 3-D U-Net of n levels, starting as the identity, with the
    intensity correction unless ``intensity_correction`` is False (other names ignore it).
    The last ``conditioning_nc`` input channels condition the network without being image
    channels (the target phase's planes of :mod:`util.phases`): the residual is added to the
    middle image channel, and a motion generator warps channel 0 and reads them all.
    Raises ConfigError (listing the valid names) for an unknown netG, norm or init_type.
    """
    if residual and output_nc != 1:
        raise ConfigError(f"--residual adds the output to one input slice: it needs "
                          f"--output_nc 1, got {output_nc}")
    spec = lookup(GENERATORS, netG, "--netG")
    norm_layer = get_norm_layer(norm, dims=3 if spec.volumetric else 2)
    lookup_init_type(init_type)
    net: nn.Module
    if spec.family == "unet":
        net = UnetGenerator(input_nc, output_nc, spec.depth, ngf, norm_layer, use_dropout)
    elif spec.family == "resnet":
        net = ResnetGenerator(input_nc, output_nc, ngf, norm_layer, use_dropout, spec.depth)
    elif spec.family == "unet3d":
        net = UnetGenerator3d(input_nc, output_nc, spec.depth, ngf, norm_layer, use_dropout)
    else:
        _check_motion_options(netG, input_nc - conditioning_nc, output_nc, residual)
        field_net = UnetGenerator3d(input_nc, 3 + int(intensity_correction), spec.depth, ngf,
                                    norm_layer, use_dropout, final="linear")
        net = MotionGenerator(field_net, intensity_correction)
    init_weights(net, init_type, init_gain)
    logger.info("generator %s: %d parameters, norm %s, dropout %s%s", netG, count_parameters(net),
                norm, use_dropout, ", residual" if residual else "")
    if not 0 <= conditioning_nc < input_nc:
        raise ConfigError(f"{conditioning_nc} conditioning channels leave no image channel in "
                          f"--input_nc {input_nc}")
    return ResidualGenerator(net, (input_nc - conditioning_nc) // 2) if residual else net


def _check_motion_options(netG: str, input_nc: int, output_nc: int, residual: bool) -> None:
    """Raise ConfigError for options a motion generator cannot take."""
    problems = []
    if input_nc != 1 or output_nc != 1:
        problems.append(f"it warps one volume into one: it needs one image channel in and one "
                        f"out (--input_nc 1, 3 with --phases; --output_nc 1), got {input_nc} "
                        f"and {output_nc}")
    if residual:
        problems.append("--residual does not apply (the warp already starts from the input)")
    if problems:
        raise ConfigError(f"--netG {netG}: {'; '.join(problems)}")


def define_D(input_nc: int, ndf: int, netD: str, n_layers_D: int = 3, norm: str = "batch",
             init_type: str = "normal", init_gain: float = 0.02, dims: int = 2) -> nn.Module:
    """Initialised discriminator (on the CPU): (N, input_nc, H, W) -> (N, 1, h, w) logits, or
    with ``dims=3`` (the discriminator of a volumetric generator, :func:`is_volumetric`)
    (N, input_nc, D, H, W) -> (N, 1, d, h, w).

    ``n_layers_D`` is used by ``n_layers`` only. Raises ConfigError (listing the valid names) for
    an unknown netD, norm or init_type, and for ``dims`` other than 2 or 3.
    """
    spec = lookup(DISCRIMINATORS, netD, "--netD")
    norm_layer = get_norm_layer(norm, dims)
    lookup_init_type(init_type)
    if spec.family == "pixel":
        net: nn.Module = PixelDiscriminator(input_nc, ndf, norm_layer, dims)
    else:
        n_layers = n_layers_D if spec.n_layers is None else spec.n_layers
        check_positive(n_layers_D=n_layers)
        net = NLayerDiscriminator(input_nc, ndf, n_layers, norm_layer, dims)
    init_weights(net, init_type, init_gain)
    logger.info("discriminator %s (%d-D): %d parameters, norm %s", netD, dims,
                count_parameters(net), norm)
    return net


def is_volumetric(netG: str) -> bool:
    """Whether ``netG`` takes volumes (N, C, D, H, W), so its discriminator is built with
    ``define_D(..., dims=3)``; ConfigError listing the valid names if unknown."""
    return lookup(GENERATORS, netG, "--netG").volumetric


def is_motion_generator(net: nn.Module) -> bool:
    """Whether ``net`` (possibly inside DistributedDataParallel, DataParallel or compile) is a
    :class:`MotionGenerator`, whose forward can also return its displacement field."""
    return isinstance(unwrap(net), MotionGenerator)


def count_parameters(net: nn.Module) -> int:
    """Number of learnable scalars of ``net``."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def unet_num_downs(netG: str) -> int | None:
    """Downsamplings of the U-Net ``netG`` (6 .. 9; 3 .. 5 for the 3-D U-Nets, motion3d's
    included), None for a ResNet; ConfigError if unknown."""
    spec = lookup(GENERATORS, netG, "--netG")
    return None if spec.family == "resnet" else spec.depth


def _nearest_multiple(size: int, multiple: int) -> int:
    """The multiple of ``multiple`` closest to ``size``, and at least ``multiple``."""
    return max(multiple, multiple * round(size / multiple))


@dataclass(frozen=True)
class SliceSizeRule:
    """The slices (or volumes) a generator takes: sides (pixels, voxels) that are multiples of
    ``multiple`` and at least ``least``. The default takes any size."""

    multiple: int = 1
    least: int = 1

    def takes(self, *sides: int) -> bool:
        """Whether a slice (height, width) or a volume (depth, height, width) fits as it is."""
        _check_sides(sides)
        return all(side % self.multiple == 0 for side in sides) and min(sides) >= self.least

    def fit(self, *sides: int) -> tuple[int, ...]:
        """The smallest sizes >= ``sides`` that fit, e.g. (H', W') for (height, width): each side
        rounded up to a multiple of ``multiple``, and to at least ``least``."""
        _check_sides(sides)

        def up(side: int) -> int:
            side = max(side, self.least)
            return -(-side // self.multiple) * self.multiple
        return tuple(up(side) for side in sides)


def _check_sides(sides: tuple[int, ...]) -> None:
    """Raise ValueError for no sides at all (a rule is about a size)."""
    if not sides:
        raise ValueError("a size rule needs at least one side")


def _side_rule(spec: GeneratorSpec) -> SliceSizeRule:
    """The slice (or volume) sizes a generator takes."""
    if spec.family == "resnet":
        return SliceSizeRule(RESNET_MULTIPLE, RESNET_MIN_SIZE)
    multiple = unet_min_multiple(spec.depth)
    return SliceSizeRule(multiple, multiple)


def _slice_spec(netG: str) -> GeneratorSpec:
    """The spec of the slice generator ``netG``; ConfigError if unknown or volumetric."""
    spec = lookup(GENERATORS, netG, "--netG")
    if spec.volumetric:
        raise ConfigError(f"--netG {netG} is volumetric: it takes (D, H, W) volumes, not "
                          f"slices (see check_volume_size)")
    return spec


def _volume_spec(netG: str) -> GeneratorSpec:
    """The spec of the volumetric generator ``netG``; ConfigError if unknown or 2-D."""
    spec = lookup(GENERATORS, netG, "--netG")
    if not spec.volumetric:
        names = ", ".join(name for name, other in GENERATORS.items() if other.volumetric)
        raise ConfigError(f"--netG {netG} takes 2-D slices, not volumes; the volumetric "
                          f"generators are {names}")
    return spec


def slice_size_rule(netG: str) -> SliceSizeRule:
    """The slice sizes ``netG`` takes (ConfigError listing the valid names if unknown, or saying
    that a 3-D name is volumetric); inference pads slices to ``rule.fit(H, W)``."""
    return _side_rule(_slice_spec(netG))


def volume_size_rule(netG: str) -> SliceSizeRule:
    """The volume sizes the volumetric ``netG`` takes: sides that are multiples of 2**depth (and
    so at least that); ConfigError if ``netG`` is unknown or a 2-D generator."""
    return _side_rule(_volume_spec(netG))


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
    spec = _slice_spec(netG)
    if height < 1 or width < 1:
        raise ConfigError(f"slice size {height}x{width} is empty; sides must be positive")
    if _takes(spec, height, width):
        return
    rule = _side_rule(spec)
    multiple, least = rule.multiple, rule.least
    need = f"multiples of {multiple}" + (f", at least {least}" if least > multiple else "")
    resize = f"--resize_to {max(least, _nearest_multiple(max(height, width), multiple))}"
    fitting = [name for name, other in GENERATORS.items()
               if not other.volumetric and _takes(other, height, width)]
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


def check_volume_size(netG: str, depth: int, height: int, width: int) -> None:
    """Raise ConfigError unless the volumetric ``netG`` can take (depth, height, width) volumes
    (voxels, slice-stack frame).

    A 3-D U-Net with n downsamplings (``unet3d_n``, ``motion3d_n``) needs every side a multiple
    of 2**n. The message names the size, the generator and the multiple it needs, then what
    would fit: the generators of the same family that take this size, else the size to pad to.
    """
    spec = _volume_spec(netG)
    size = f"{depth}x{height}x{width}"
    if min(depth, height, width) < 1:
        raise ConfigError(f"volume size {size} is empty; sides must be positive")
    rule = _side_rule(spec)
    if rule.takes(depth, height, width):
        return
    fitting = [name for name, other in GENERATORS.items() if other.family == spec.family
               and _side_rule(other).takes(depth, height, width)]
    padded = "x".join(str(side) for side in rule.fit(depth, height, width))
    hint = (f"use --netG {' or '.join(fitting)}, or pad the volume to {padded}" if fitting
            else f"no {spec.family} generator takes this size; pad the volume to {padded}")
    raise ConfigError(f"volume size {size} (DxHxW) cannot be taken by {netG} (needs sides that "
                      f"are multiples of {rule.multiple}); {hint}")
