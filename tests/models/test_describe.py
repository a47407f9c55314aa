"""A state dict is described from its tensors: the command-line words that rebuild it."""

import pytest
import torch

from models.networks import define_D, define_G, describe_weights


@pytest.mark.parametrize(("netG", "expected"), [
    ("unet_64", "a U-Net of 6 levels (--netG unet_64)"),
    ("unet_128", "a U-Net of 7 levels (--netG unet_128)"),
    ("unet_256", "a U-Net of 8 levels (--netG unet_256)"),
    ("unet_512", "a U-Net of 9 levels (--netG unet_512)"),
    ("resnet_6blocks", "a ResNet generator with 6 residual blocks (--netG resnet_6blocks)"),
    ("resnet_9blocks", "a ResNet generator with 9 residual blocks (--netG resnet_9blocks)"),
])
@pytest.mark.parametrize(("norm", "norm_words"), [
    ("batch", "batch norm"),
    ("instance", "instance norm or no norm (no running statistics)"),
])
def test_generators_are_described_by_name_width_channels_and_norm(netG, expected, norm,
                                                                   norm_words):
    plain = describe_weights(define_G(3, 2, 4, netG, norm=norm).state_dict())
    assert plain == f"{expected}, --ngf 4, --input_nc 3, --output_nc 2, {norm_words}"
    residual = describe_weights(define_G(5, 1, 8, netG, norm=norm, residual=True).state_dict())
    assert residual == (f"{expected}, --ngf 8, --input_nc 5, --output_nc 1, {norm_words}, "
                        f"residual output (--residual)")


def test_discriminators_and_foreign_files_are_described():
    assert describe_weights(define_D(6, 8, "basic", norm="batch").state_dict()) == (
        "a PatchGAN discriminator of 5 convolutions (--n_layers_D 3), --ndf 8, 6 input "
        "channels, batch norm")
    assert describe_weights(define_D(2, 4, "n_layers", n_layers_D=5).state_dict()).startswith(
        "a PatchGAN discriminator of 7 convolutions (--n_layers_D 5), --ndf 4, 2 input")
    assert describe_weights(define_D(2, 4, "pixel").state_dict()).startswith(
        "a pixel discriminator (--netD pixel), --ndf 4, 2 input channels")
    assert describe_weights({"fc.weight": torch.zeros(3, 2)}) == (
        "no network of this project (1 tensors: fc.weight (3, 2))")
