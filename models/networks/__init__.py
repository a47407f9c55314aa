"""Networks of the CT pix2pix tool: generators (slice and volumetric, the motion generator
among them), discriminators, losses, initialisation and learning-rate schedules, each looked up
by its command-line name.

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
    check_volume_size,
    count_parameters,
    define_D,
    define_G,
    is_motion_generator,
    is_volumetric,
    slice_size_rule,
    unet_num_downs,
    volume_size_rule,
)
from models.networks.losses import GAN_MODES, GANLoss, gradient_penalty
from models.networks.motion import (
    MotionGenerator,
    folding_fraction,
    jacobian_determinant,
    smoothness_loss,
)
from models.networks.norms import (
    NORMS,
    NORMS_3D,
    NormFactory,
    conv_bias,
    get_norm_layer,
    norm_has_bias,
)
from models.networks.patchgan import (
    NLayerDiscriminator,
    PixelDiscriminator,
    patch_min_side,
    patch_receptive_field,
)
from models.networks.residual import ResidualGenerator
from models.networks.resnet import ResnetBlock, ResnetGenerator
from models.networks.schedulers import LR_POLICIES, Schedule, get_scheduler
from models.networks.unet import UnetGenerator
from models.networks.unet3d import UnetGenerator3d
from models.networks.weight_init import INIT_TYPES, init_weights

__all__ = [
    "DISCRIMINATORS",
    "GAN_MODES",
    "GENERATORS",
    "INIT_TYPES",
    "LR_POLICIES",
    "NORMS",
    "NORMS_3D",
    "RESNET_MIN_SIZE",
    "RESNET_MULTIPLE",
    "DiscriminatorSpec",
    "GANLoss",
    "GeneratorSpec",
    "MotionGenerator",
    "NLayerDiscriminator",
    "NormFactory",
    "PixelDiscriminator",
    "ResidualGenerator",
    "ResnetBlock",
    "ResnetGenerator",
    "Schedule",
    "SliceSizeRule",
    "UnetGenerator",
    "UnetGenerator3d",
    "check_slice_size",
    "check_volume_size",
    "conv_bias",
    "count_parameters",
    "define_D",
    "define_G",
    "describe_network",
    "describe_weights",
    "folding_fraction",
    "get_norm_layer",
    "get_scheduler",
    "gradient_penalty",
    "init_weights",
    "is_motion_generator",
    "is_volumetric",
    "jacobian_determinant",
    "norm_has_bias",
    "patch_min_side",
    "patch_receptive_field",
    "slice_size_rule",
    "smoothness_loss",
    "unet_num_downs",
    "volume_size_rule",
]
