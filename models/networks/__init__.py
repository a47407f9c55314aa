"""Networks of the CT pix2pix tool: generators, discriminators, losses, initialisation and
learning-rate schedules, each looked up by its command-line name.

The name registries (``GENERATORS``, ``DISCRIMINATORS``, ``NORMS``, ``INIT_TYPES``, ``GAN_MODES``,
``LR_POLICIES``) are plain dicts built at import without creating any network, so the options
code can use ``sorted(GENERATORS)`` as argparse ``choices``. Every unknown name raises
:class:`util.errors.ConfigError` listing the valid ones.
"""

from models.networks.describe import describe_network, describe_weights
from models.networks.factory import (
    DISCRIMINATORS,
    GENERATORS,
    RESNET_MIN_SIZE,
    RESNET_MULTIPLE,
    DiscriminatorSpec,
    GeneratorSpec,
    SliceSizeRule,
    check_slice_size,
    count_parameters,
    define_D,
    define_G,
    slice_size_rule,
    unet_num_downs,
)
from models.networks.losses import GAN_MODES, GANLoss, gradient_penalty
from models.networks.norms import NORMS, NormFactory, conv_bias, get_norm_layer, norm_has_bias
from models.networks.patchgan import NLayerDiscriminator, PixelDiscriminator, patch_receptive_field
from models.networks.residual import ResidualGenerator
from models.networks.resnet import ResnetBlock, ResnetGenerator
from models.networks.schedulers import LR_POLICIES, Schedule, get_scheduler
from models.networks.unet import UnetGenerator
from models.networks.weight_init import INIT_TYPES, init_weights

__all__ = [
    "DISCRIMINATORS",
    "GAN_MODES",
    "GENERATORS",
    "INIT_TYPES",
    "LR_POLICIES",
    "NORMS",
    "RESNET_MIN_SIZE",
    "RESNET_MULTIPLE",
    "DiscriminatorSpec",
    "GANLoss",
    "GeneratorSpec",
    "NLayerDiscriminator",
    "NormFactory",
    "PixelDiscriminator",
    "ResidualGenerator",
    "ResnetBlock",
    "ResnetGenerator",
    "Schedule",
    "SliceSizeRule",
    "UnetGenerator",
    "check_slice_size",
    "conv_bias",
    "count_parameters",
    "define_D",
    "define_G",
    "describe_network",
    "describe_weights",
    "get_norm_layer",
    "get_scheduler",
    "gradient_penalty",
    "init_weights",
    "norm_has_bias",
    "patch_receptive_field",
    "slice_size_rule",
    "unet_num_downs",
]
