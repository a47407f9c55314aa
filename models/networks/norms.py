"""Normalisation layers by name (``--norm``) and the conv-bias rule that goes with them."""

from __future__ import annotations

import functools
from collections.abc import Callable

from torch import nn

from models.networks._lookup import lookup

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


def get_norm_layer(norm: str) -> NormFactory:
    """Factory of the ``--norm`` layer; raises ConfigError listing the names if unknown."""
    return lookup(NORMS, norm, "--norm")


def norm_has_bias(norm_layer: NormFactory) -> bool:
    """Whether layers made by ``norm_layer`` add a learnt bias of their own.

    A convolution followed by such a layer needs no bias (it would be cancelled by the mean
    subtraction and replaced by the norm's shift); this is True for batch norm only.
    """
    return getattr(norm_layer(1), "bias", None) is not None


def conv_bias(norm_layer: NormFactory) -> bool:
    """``bias`` argument for a convolution followed by a ``norm_layer`` layer."""
    return not norm_has_bias(norm_layer)
