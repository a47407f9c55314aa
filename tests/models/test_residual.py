"""Residual output, 2.5-D input and the weighted L1 of the pix2pix model."""

import pytest
import torch
from torch import nn

from models import create_model
from models.networks import ResidualGenerator, define_G
from models.pix2pix_model import weighted_l1
from tests.models.test_models import batch, small_settings
from util.errors import ConfigError


class Const(nn.Module):
    """Outputs a constant (N, 1, H, W) map."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x[:, :1], self.value)


def test_residual_adds_the_change_to_the_centre_channel_and_clips():
    x = torch.stack([torch.full((4, 4), v) for v in (-0.9, 0.2, 0.95)])[None]  # (1, 3, 4, 4)
    torch.testing.assert_close(ResidualGenerator(Const(0.1), 1)(x), torch.full((1, 1, 4, 4), 0.3))
    torch.testing.assert_close(ResidualGenerator(Const(0.1), 2)(x), torch.ones(1, 1, 4, 4))
    torch.testing.assert_close(ResidualGenerator(Const(-0.5), 0)(x), -torch.ones(1, 1, 4, 4))


def test_define_g_residual_wraps_the_generator_on_the_middle_slice():
    net = define_G(5, 1, 8, "unet_64", norm="instance", residual=True)
    assert isinstance(net, ResidualGenerator)
    assert net.skip_channel == 2
    out = net(torch.rand(2, 5, 64, 64) * 2 - 1)
    assert out.shape == (2, 1, 64, 64)
    assert out.abs().max() <= 1.0
    with pytest.raises(ConfigError, match="--output_nc 1"):
        define_G(3, 3, 8, "unet_64", residual=True)


def test_weighted_l1_is_plain_l1_for_equal_weights_and_favours_heavy_pixels():
    pred = torch.tensor([[[[0.0, 0.0]]]])
    target = torch.tensor([[[[1.0, 0.2]]]])
    assert weighted_l1(pred, target, None).item() == pytest.approx(0.6)
    assert weighted_l1(pred, target, torch.full_like(pred, 3.0)).item() == pytest.approx(0.6)
    weights = torch.tensor([[[[4.0, 1.0]]]])
    assert weighted_l1(pred, target, weights).item() == pytest.approx((4 * 1.0 + 0.2) / 5)


def test_motion_weights_mark_pixels_that_change_beyond_the_threshold(tmp_path):
    model = create_model(small_settings(tmp_path, "--motion_weight", "3",
                                        "--motion_threshold_hu", "100"))
    a = torch.zeros(1, 1, 64, 64)
    b = a.clone()
    b[..., :8, :8] = 150 * 2 / 4095  # +150 HU: moves
    b[..., 8:16, :8] = 50 * 2 / 4095  # +50 HU: below the threshold
    model.set_input({"A": a, "B": b, "A_paths": ["a"]})
    weights = model.l1_weights()
    assert weights[..., :8, :8].unique().tolist() == [4.0]
    assert weights[..., 8:, :].unique().tolist() == [1.0]
    assert create_model(small_settings(tmp_path)).motion_weight == 0


def test_lambda_gan_zero_leaves_only_the_l1_term(tmp_path):
    torch.manual_seed(0)
    model = create_model(small_settings(tmp_path, "--lambda_GAN", "0", "--residual"))
    model.setup()
    model.set_input(batch())
    model.optimize_parameters()
    losses = model.get_current_losses()
    assert losses["G_GAN"] == 0.0
    assert losses["G_L1"] > 0.0
    assert model.loss_G.item() == pytest.approx(losses["G_L1"])
