"""Phase-conditioned generators: the target phase as two planes after the image channels."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from models.inference import predict_hu
from models.networks import ResidualGenerator, SliceSizeRule, define_G
from models.settings import GeneratorSettings
from models.trained_run import TrainedGenerator, build_generator
from models.volume_inference import VolumeWindows
from util.errors import ConfigError
from util.phases import phase_encoding

HU = {"hu_min": -1024.0, "hu_max": 1024.0}


class Recorder(nn.Module):
    """Returns its first channel and keeps every input it saw (2-D or 3-D by ``conv``)."""

    def __init__(self, conv: type[nn.Module] = nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv(1, 1, kernel_size=1, bias=False)
        nn.init.ones_(self.conv.weight)
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.clone())
        return self.conv(x[:, :1])


def test_residual_is_added_to_the_centre_image_channel_not_to_a_phase_plane():
    net = define_G(7, 1, 4, "unet_64", norm="instance", residual=True, conditioning_nc=2)
    assert isinstance(net, ResidualGenerator)
    assert net.skip_channel == 2  # 5 image channels (2.5-D, 2 each side), then 2 planes


def test_conditioning_must_leave_an_image_channel():
    with pytest.raises(ConfigError, match="no image channel"):
        define_G(2, 1, 4, "unet_64", norm="instance", conditioning_nc=2)


def test_a_phase_conditioned_motion_generator_warps_the_avg_channel():
    net = define_G(3, 1, 4, "motion3d_3", norm="instance", conditioning_nc=2)
    x = torch.rand(1, 3, 8, 8, 8) * 2 - 1
    y, u = net(x, return_field=True)
    assert y.shape == (1, 1, 8, 8, 8)
    torch.testing.assert_close(y, x[:, :1])  # the identity at start, of channel 0
    assert float(u.detach().abs().max()) == 0.0


@pytest.mark.parametrize("percent", [0.0, 30.0, 90.0])
def test_slices_get_the_phase_planes_after_padding_with_air(percent):
    net = Recorder()
    stack = np.random.default_rng(0).integers(-900, 900, (3, 10, 12)).astype(np.float32)
    pred = predict_hu(net, stack, **HU, batch_size=2, size_rule=SliceSizeRule(8, 8),
                      phase_pct=percent)
    np.testing.assert_allclose(pred.hu, stack, atol=0.05)
    sin, cos = phase_encoding(percent)
    for x in net.inputs:
        assert x.shape[1:] == (3, 16, 16)  # padded to 16 x 16, then the two planes
        assert torch.all(x[:, 1] == torch.tensor(sin, dtype=torch.float32))
        assert torch.all(x[:, 2] == torch.tensor(cos, dtype=torch.float32))


def test_volume_windows_get_the_planes_inside_each_window_not_as_padding():
    net = Recorder(nn.Conv3d)
    stack = np.random.default_rng(1).integers(-900, 900, (5, 9, 11)).astype(np.float32)
    pred = predict_hu(net, stack, **HU, phase_pct=25.0,
                      windows=VolumeWindows((8, 8, 8), 0.5, SliceSizeRule(8, 8)))
    np.testing.assert_allclose(pred.hu, stack, atol=0.05)
    for x in net.inputs:
        assert x.shape[1] == 3
        assert torch.allclose(x[:, 1], torch.ones(()))  # sin(pi / 2) even in the air margin
        assert float(x[:, 2].abs().max()) < 1e-6


def test_a_phase_0_generator_refuses_other_phases_and_a_conditioned_one_takes_them(tmp_path):
    plain = GeneratorSettings(netG="unet_64", ngf=4)
    generator = TrainedGenerator(build_generator(plain).eval(), plain, tmp_path / "g.pth",
                                 torch.device("cpu"))
    stack = np.zeros((2, 64, 64), dtype=np.float32)
    assert generator.predict(stack).hu.shape == (2, 64, 64)
    with pytest.raises(ConfigError, match="phase 0 only"):
        generator.predict(stack, phase_pct=50.0)
    conditioned = GeneratorSettings(netG="unet_64", ngf=4, input_nc=3, phase_input=True)
    generator = TrainedGenerator(build_generator(conditioned).eval(), conditioned,
                                 tmp_path / "g.pth", torch.device("cpu"))
    at_0 = generator.predict(stack).hu
    at_50 = generator.predict(stack, phase_pct=50.0).hu
    assert not np.array_equal(at_0, at_50)  # the planes reach the network
    assert math.isfinite(float(at_50.mean()))
