"""Normalisation layers by name (``--norm``), for 2-D slices or 3-D volumes, and the conv-bias
rule that goes with them."""

from __future__ import annotations

import functools
from collections.abc import Callable

from torch import nn

from models.networks._lookup import lookup
from util.errors import ConfigError

#: Builds a normalisation layer for a given number of channels.
NormFactory = Callable[[int], nn.Module]


def no_norm(num_features: int) -> nn.Module:
    """An identity layer standing in for a norm layer over ``num_features`` channels."""
    del num_features  # same signature as the real norm layers
    return nn.Identity()


#: ``--norm`` name -> factory. Batch norm learns a scale and shift and keeps running statistics;
#: instance norm (Ulyanov et al. 2016) normalises each slice on its own and learns nothing.
NORMS: dict[str, NormFactory] = {
    "batch": functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True),
    "instance": functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False),
    "none": no_norm,
}

#: The same names and settings for volumes (N, C, D, H, W): instance norm then normalises each
#: volume on its own.
NORMS_3D: dict[str, NormFactory] = {
    "batch": functools.partial(nn.BatchNorm3d, affine=True, track_running_stats=True),
    "instance": functools.partial(nn.InstanceNorm3d, affine=False, track_running_stats=False),
    "none": no_norm,
}

#: Number of spatial dimensions -> norm registry.
_NORMS_BY_DIMS: dict[int, dict[str, NormFactory]] = {2: NORMS, 3: NORMS_3D}


def check_dims(dims: int) -> None:
    """Raise ConfigError unless ``dims`` (spatial dimensions of a network) is 2 or 3."""
    if dims not in _NORMS_BY_DIMS:
        raise ConfigError(f"dims must be 2 (slices) or 3 (volumes), got {dims!r}")


def get_norm_layer(norm: str, dims: int = 2) -> NormFactory:
    """Factory of the ``--norm`` layer for (N, C, H, W) slices (``dims`` 2) or (N, C, D, H, W)
    volumes (``dims`` 3); raises ConfigError listing the names if ``norm`` is unknown."""
    check_dims(dims)
    return lookup(_NORMS_BY_DIMS[dims], norm, "--norm")


def norm_has_bias(norm_layer: NormFactory) -> bool:
    """Whether layers made by ``norm_layer`` add a learnt bias of their own.

    A convolution followed by such a layer needs no bias (it would be cancelled by the mean
    subtraction and replaced by the norm's shift); this is True for batch norm only.
    """
    return getattr(norm_layer(1), "bias", None) is not None


def conv_bias(norm_layer: NormFactory) -> bool:
    """``bias`` argument for a convolution followed by a ``norm_layer`` layer."""
    return not norm_has_bias(norm_layer)
