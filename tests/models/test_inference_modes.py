"""Inference modes: deterministic by default, sampling with dropout only when asked."""

import numpy as np
import pytest
import torch
from torch import nn

from data.ct_volumes import slices_to_unit, unit_slices_to_hu
from models.inference import check_samples, has_dropout, predict_hu, predict_stack, sample_stack
from models.networks import define_G, slice_size_rule
from tests.conftest import ct_like
from util.errors import ConfigError

WINDOW = {"hu_min": -1024, "hu_max": 3071}


def noisy_net() -> nn.Module:
    """Batch norm with running statistics far from any batch's, then dropout."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Dropout(0.5),
                        nn.Conv2d(4, 1, 1), nn.Tanh())
    net[1].running_mean.fill_(0.3)
    net[1].running_var.fill_(4.0)
    return net.train()


def test_prediction_is_deterministic_whatever_mode_the_net_was_left_in():
    net = noisy_net()
    stack = ct_like((6, 16, 16))
    first = predict_stack(net, stack, **WINDOW, batch_size=2)
    again = predict_stack(net, stack, **WINDOW, batch_size=3)  # batch norm: running statistics
    assert torch.equal(first, again)
    torch.testing.assert_close(first, net.eval()(slices_to_unit(stack, -1024, 3071)).detach())
    net.train()
    predict_stack(net, stack, **WINDOW)
    assert net.training
    assert all(m.training for m in net.modules())  # the caller's mode comes back


def test_samples_are_reproducible_and_their_mean_is_the_mean_of_the_dropout_passes():
    net = noisy_net()
    stack = ct_like((5, 12, 12))
    rng_before = torch.get_rng_state()
    pred = sample_stack(net, stack, samples=4, seed=7, **WINDOW, batch_size=5)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's generator is untouched
    again = sample_stack(net, stack, samples=4, seed=7, **WINDOW, batch_size=5)
    assert np.array_equal(pred.hu, again.hu)
    assert np.array_equal(pred.std_hu, again.std_hu)
    assert pred.hu.dtype == pred.std_hu.dtype == np.float32
    assert pred.hu.shape == pred.std_hu.shape == (5, 12, 12)
    net.eval()
    net[2].train()  # dropout on, batch norm on its running statistics
    torch.manual_seed(7)
    with torch.no_grad():
        passes = np.stack([unit_slices_to_hu(net(slices_to_unit(stack, -1024, 3071)), (12, 12),
                                             -1024, 3071) for _ in range(4)])
    np.testing.assert_allclose(pred.hu, passes.mean(axis=0), atol=1e-3)
    np.testing.assert_allclose(pred.std_hu, passes.std(axis=0), atol=1e-3)
    assert pred.std_hu.max() > 1.0  # dropout moves the output by HU, not by rounding
    assert sample_stack(net, stack, samples=4, seed=8, **WINDOW).hu.tolist() != pred.hu.tolist()


def test_one_sample_is_the_deterministic_prediction_without_std():
    net = noisy_net()
    stack = ct_like((3, 12, 12))
    one = predict_hu(net, stack, **WINDOW)
    assert one.std_hu is None
    np.testing.assert_array_equal(
        one.hu, unit_slices_to_hu(predict_stack(net, stack, **WINDOW), (12, 12), -1024, 3071))


def test_sampling_pads_odd_slices_like_a_single_pass():
    torch.manual_seed(0)
    net = define_G(1, 1, 4, "unet_64", norm="instance", use_dropout=True)
    pred = sample_stack(net, ct_like((2, 61, 12)), samples=2, seed=0, **WINDOW,
                        size_rule=slice_size_rule("unet_64"))
    assert pred.hu.shape == pred.std_hu.shape == (2, 61, 12)


def test_sampling_needs_dropout():
    with_dropout = define_G(1, 1, 4, "unet_64", use_dropout=True)
    without = define_G(1, 1, 4, "unet_64", use_dropout=False)
    assert has_dropout(with_dropout)
    assert not has_dropout(without)
    check_samples(with_dropout, 5, "checkpoints/run")
    check_samples(without, 1, "checkpoints/run")
    with pytest.raises(ConfigError, match=r"--samples 5 .* checkpoints/run has no dropout "
                                          r"\(trained with --no_dropout\)"):
        check_samples(without, 5, "checkpoints/run")
    with pytest.raises(ConfigError, match="--samples must be at least 1, got 0"):
        check_samples(with_dropout, 0, "checkpoints/run")
