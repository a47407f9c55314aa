"""Weight initialisation by name (``--init_type``)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from models.networks._lookup import lookup
from models.networks.motion import MotionGenerator

logger = logging.getLogger(__name__)

#: Fills a weight tensor in place given the gain (``--init_gain``).
WeightInit = Callable[[torch.Tensor, float], object]


def _normal(weight: torch.Tensor, gain: float) -> object:
    """N(0, gain**2), as in the DCGAN and pix2pix papers."""
    return nn.init.normal_(weight, mean=0.0, std=gain)


def _xavier(weight: torch.Tensor, gain: float) -> object:
    """Glorot & Bengio (2010) normal, scaled by gain."""
    return nn.init.xavier_normal_(weight, gain=gain)


def _kaiming(weight: torch.Tensor, _gain: float) -> object:
    """He et al. (2015) normal, fan-in, for ReLU; the gain is not used."""
    return nn.init.kaiming_normal_(weight, a=0.0, mode="fan_in")


def _orthogonal(weight: torch.Tensor, gain: float) -> object:
    """Saxe et al. (2014) (semi-)orthogonal matrix, scaled by gain."""
    return nn.init.orthogonal_(weight, gain=gain)


#: ``--init_type`` name -> weight initialiser.
INIT_TYPES: dict[str, WeightInit] = {
    "normal": _normal,
    "xavier": _xavier,
    "kaiming": _kaiming,
    "orthogonal": _orthogonal,
}


def lookup_init_type(init_type: str) -> WeightInit:
    """Initialiser of ``init_type``; raises ConfigError listing the names if unknown."""
    return lookup(INIT_TYPES, init_type, "--init_type")


_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
             nn.ConvTranspose3d, nn.Linear)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@torch.no_grad()
def init_weights(net: nn.Module, init_type: str = "normal", init_gain: float = 0.02) -> None:
    """Initialise ``net`` in place.

    Convolution and linear weights follow ``init_type`` (scaled by ``init_gain`` where the scheme
    has a gain) and their biases are set to 0; batch-norm scales are drawn from
    N(1, init_gain**2) and their shifts set to 0, in 2-D and 3-D alike. Other layers keep
    PyTorch's defaults. The output layer of every :class:`MotionGenerator` is zeroed again, so
    it still starts as the identity. Draws from the global torch RNG, so ``torch.manual_seed``
    makes it reproducible.
    """
    fill = lookup_init_type(init_type)
    for module in net.modules():
        if isinstance(module, _WEIGHTED):
            fill(module.weight, init_gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, _BATCH_NORMS) and module.weight is not None:
            nn.init.normal_(module.weight, mean=1.0, std=init_gain)
            nn.init.zeros_(module.bias)
    for module in net.modules():
        if isinstance(module, MotionGenerator):
            module.zero_head()
    logger.debug("initialised %s with %s (gain %g)", type(net).__name__, init_type, init_gain)
