"""Tests of models.networks: shape tables, losses worked out by hand, schedules, names, sizes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from models.networks import (
    DISCRIMINATORS,
    GAN_MODES,
    GENERATORS,
    INIT_TYPES,
    LR_POLICIES,
    NORMS,
    GANLoss,
    check_slice_size,
    define_D,
    define_G,
    get_norm_layer,
    get_scheduler,
    gradient_penalty,
    init_weights,
    norm_has_bias,
    patch_receptive_field,
    slice_size_rule,
    unet_num_downs,
)
from util.errors import ConfigError


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_registries_hold_exactly_the_published_names() -> None:
    assert set(GENERATORS) == {"unet_64", "unet_128", "unet_256", "unet_512", "resnet_6blocks",
                               "resnet_9blocks", "unet3d_3", "unet3d_4", "unet3d_5",
                               "motion3d_3", "motion3d_4", "motion3d_5"}
    assert set(DISCRIMINATORS) == {"basic", "n_layers", "pixel"}
    assert set(NORMS) == {"batch", "instance", "none"}
    assert set(INIT_TYPES) == {"normal", "xavier", "kaiming", "orthogonal"}
    assert set(GAN_MODES) == {"vanilla", "lsgan", "wgangp"}
    assert set(LR_POLICIES) == {"linear", "step", "plateau", "cosine"}


@pytest.mark.parametrize(("netG", "size", "norm", "ngf"), [
    ("unet_64", 64, "batch", 8),
    ("unet_64", 64, "instance", 8),
    ("unet_64", 64, "none", 8),
    ("unet_64", 64, "batch", 64),
    ("unet_128", 128, "batch", 8),
    ("unet_128", 128, "instance", 8),
    ("unet_256", 256, "batch", 8),
    ("unet_256", 256, "instance", 8),
    ("unet_512", 512, "batch", 8),
    ("unet_512", 512, "instance", 8),
])
def test_unet_keeps_the_slice_shape_in_train_mode(netG: str, size: int, norm: str,
                                                  ngf: int) -> None:
    net = define_G(1, 1, ngf, netG, norm=norm, use_dropout=True).train()
    x = torch.rand(1, 1, size, size) * 2 - 1
    y = net(x)
    assert y.shape == (1, 1, size, size)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()
    assert y.abs().max() <= 1.0  # Tanh output


def test_unet_at_minimum_size_backpropagates_with_instance_norm() -> None:
    net = define_G(1, 1, 8, "unet_64", norm="instance").train()
    net(torch.randn(2, 1, 64, 64)).mean().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_unet_takes_non_square_multiples_and_channels() -> None:
    net = define_G(2, 3, 4, "unet_64", norm="instance")
    assert net(torch.randn(1, 2, 64, 128)).shape == (1, 3, 64, 128)


@pytest.mark.parametrize(("netG", "n_dropout"), [("unet_64", 1), ("unet_128", 2),
                                                 ("unet_256", 3), ("unet_512", 4)])
def test_unet_dropout_sits_in_the_deeper_8ngf_decoders(netG: str, n_dropout: int) -> None:
    with_dropout = define_G(1, 1, 2, netG, use_dropout=True)
    without = define_G(1, 1, 2, netG, use_dropout=False)
    assert sum(isinstance(m, nn.Dropout) for m in with_dropout.modules()) == n_dropout
    assert not any(isinstance(m, nn.Dropout) for m in without.modules())


def test_unet_bottleneck_and_outermost_encoder_are_not_normalised() -> None:
    net = define_G(1, 1, 8, "unet_64", norm="batch")
    first, last = net.encoders[0], net.encoders[-1]
    for block in (first, last):
        assert not any(isinstance(m, nn.BatchNorm2d) for m in block.modules())
    assert all(any(isinstance(m, nn.BatchNorm2d) for m in block.modules())
               for block in net.encoders[1:-1])


def test_unet_forward_refuses_a_size_it_cannot_take() -> None:
    net = define_G(1, 1, 4, "unet_64")
    with pytest.raises(ConfigError, match="multiples of 64"):
        net(torch.zeros(1, 1, 96, 96))


@pytest.mark.parametrize("netG", ["resnet_6blocks", "resnet_9blocks"])
@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_resnet_keeps_the_slice_shape(netG: str, norm: str) -> None:
    net = define_G(1, 1, 8, netG, norm=norm).train()
    y = net(torch.randn(2, 1, 32, 48))
    assert y.shape == (2, 1, 32, 48)
    assert torch.isfinite(y).all()
    assert y.abs().max() <= 1.0
    n_blocks = int(netG.split("_")[1].removesuffix("blocks"))
    assert sum(type(m).__name__ == "ResnetBlock" for m in net.modules()) == n_blocks


@pytest.mark.parametrize(("netD", "n_layers_D", "size", "out_size"), [
    ("basic", 3, 64, 6),        # 64 / 2**3 - 2
    ("basic", 5, 256, 30),      # basic ignores n_layers_D
    ("n_layers", 2, 64, 14),
    ("n_layers", 4, 64, 2),
    ("pixel", 3, 40, 40),
])
@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_discriminator_output_shapes(netD: str, n_layers_D: int, size: int, out_size: int,
                                     norm: str) -> None:
    net = define_D(2, 8, netD, n_layers_D=n_layers_D, norm=norm).train()
    y = net(torch.randn(2, 2, size, size))
    assert y.shape == (2, 1, out_size, out_size)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize(("n_layers", "field"), [(1, 16), (2, 34), (3, 70)])
def test_patchgan_receptive_field_matches_the_gradient_footprint(n_layers: int,
                                                                 field: int) -> None:
    assert patch_receptive_field(n_layers) == field
    net = define_D(1, 4, "n_layers", n_layers_D=n_layers, norm="none").eval()
    x = torch.zeros(1, 1, 160, 160, requires_grad=True)
    y = net(x)
    centre = y.shape[-1] // 2
    y[0, 0, centre, centre].backward()
    touched = x.grad[0, 0].abs() > 0
    rows = torch.nonzero(touched.any(dim=1)).flatten()
    cols = torch.nonzero(touched.any(dim=0)).flatten()
    assert int(rows[-1] - rows[0]) + 1 == field
    assert int(cols[-1] - cols[0]) + 1 == field


@pytest.mark.parametrize(("gan_mode", "prediction", "real", "expected"), [
    ("lsgan", 1.0, True, 0.0),
    ("lsgan", 1.0, False, 1.0),
    ("lsgan", 0.5, True, 0.25),
    ("vanilla", 0.0, True, math.log(2.0)),
    ("vanilla", 0.0, False, math.log(2.0)),
    ("vanilla", 2.0, False, math.log1p(math.exp(2.0))),
    ("vanilla", 2.0, True, math.log1p(math.exp(-2.0))),
    ("wgangp", 3.0, True, -3.0),
    ("wgangp", 3.0, False, 3.0),
])
def test_gan_loss_values_worked_out_by_hand(gan_mode: str, prediction: float, real: bool,
                                            expected: float) -> None:
    loss = GANLoss(gan_mode)(torch.full((2, 1, 5, 5), prediction), real)
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_gan_loss_targets_are_buffers_expanded_to_the_prediction() -> None:
    criterion = GANLoss("lsgan")
    assert set(dict(criterion.named_buffers())) == {"real_label", "fake_label"}
    target = criterion.target_like(torch.zeros(3, 1, 4, 7), True)
    assert target.shape == (3, 1, 4, 7)
    assert torch.equal(target, torch.ones(3, 1, 4, 7))
    wgan = GANLoss("wgangp")
    pred = torch.tensor([1.0, 2.0, 6.0])
    assert wgan(pred, True).item() == pytest.approx(-3.0)


def test_gradient_penalty_of_a_linear_critic_is_known_and_positive() -> None:
    # D(x) = <w, x>: its gradient is w at every interpolate, so GP = lambda * (|w| - 1)**2.
    critic = nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 1, bias=False))
    with torch.no_grad():
        critic[1].weight.fill_(0.5)  # |w| = 0.5 * sqrt(32)
    real, fake = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    gp = gradient_penalty(critic, real, fake, lambda_gp=10.0)
    assert gp.item() == pytest.approx(10.0 * (0.5 * math.sqrt(32) - 1.0) ** 2, rel=1e-5)


def test_gradient_penalty_is_finite_positive_and_trains_the_critic() -> None:
    netD = define_D(2, 4, "n_layers", n_layers_D=2, norm="instance")
    real, fake = torch.rand(2, 2, 32, 32), torch.rand(2, 2, 32, 32, requires_grad=True)
    gp = gradient_penalty(netD, real, fake)
    assert torch.isfinite(gp)
    assert gp.item() > 0
    gp.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in netD.parameters())
    assert fake.grad is None
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(netD, real, fake[:1])


def _lrs(policy: str, n_steps: int, **schedule: int) -> list[float]:
    """Learning rate of each of ``n_steps`` epochs under ``policy`` (initial lr 1)."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = get_scheduler(optimizer, policy, **schedule)
    rates = []
    for _ in range(n_steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_linear_schedule_keeps_then_decays_the_rate() -> None:
    rates = _lrs("linear", 7, epoch_count=1, n_epochs=3, n_epochs_decay=4, lr_decay_iters=50)
    assert rates[:3] == [1.0, 1.0, 1.0]
    assert rates[3:] == pytest.approx([0.8, 0.6, 0.4, 0.2])  # 1 - k / 5


def test_linear_schedule_resumes_from_epoch_count() -> None:
    rates = _lrs("linear", 3, epoch_count=4, n_epochs=3, n_epochs_decay=4, lr_decay_iters=50)
    assert rates == pytest.approx([0.8, 0.6, 0.4])


def test_step_cosine_and_plateau_schedules() -> None:
    step = _lrs("step", 5, epoch_count=1, n_epochs=4, n_epochs_decay=0, lr_decay_iters=2)
    assert step == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])
    cosine = _lrs("cosine", 5, epoch_count=1, n_epochs=4, n_epochs_decay=0, lr_decay_iters=2)
    assert cosine == pytest.approx([1.0, 0.5 + 0.5 * math.cos(math.pi / 4), 0.5,
                                    0.5 - 0.5 * math.cos(math.pi / 4), 0.0], abs=1e-9)
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    plateau = get_scheduler(optimizer, "plateau", epoch_count=1, n_epochs=1, n_epochs_decay=1,
                            lr_decay_iters=1)
    for _ in range(7):  # no improvement: best, then 6 bad epochs > patience 5
        plateau.step(1.0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.2)


@pytest.mark.parametrize(("netG", "height", "width"), [
    ("unet_64", 64, 64), ("unet_64", 192, 128), ("unet_128", 128, 256), ("unet_256", 256, 256),
    ("unet_256", 512, 512), ("unet_512", 512, 512), ("resnet_9blocks", 100, 100),
    ("resnet_6blocks", 8, 12),
])
def test_check_slice_size_accepts_fitting_sizes(netG: str, height: int, width: int) -> None:
    check_slice_size(netG, height, width)  # must not raise
    downs = unet_num_downs(netG)
    if downs is None:  # a ResNet: two halvings
        assert netG.startswith("resnet")
        assert height % 4 == 0
        assert width % 4 == 0
    else:  # unet_S halves log2(S) times
        assert 2 ** downs == int(netG.split("_")[1])
        assert height % 2 ** downs == 0
        assert width % 2 ** downs == 0


@pytest.mark.parametrize(("netG", "height", "width", "fragments"), [
    ("unet_256", 64, 64, ["64x64", "unet_256", "multiples of 256", "--netG unet_64",
                          "--resize_to 256"]),
    ("unet_512", 256, 384, ["256x384", "unet_512", "multiples of 512", "unet_64 or unet_128",
                            "--resize_to 512"]),
    ("unet_256", 100, 100, ["100x100", "unet_256", "multiples of 256", "no U-Net",
                            "--resize_to 256"]),
    ("unet_64", 32, 32, ["32x32", "multiples of 64", "--resize_to 64"]),
    ("resnet_9blocks", 30, 30, ["30x30", "resnet_9blocks", "multiples of 4", "--resize_to 32"]),
    ("resnet_6blocks", 4, 4, ["4x4", "at least 8", "--resize_to 8"]),
])
def test_check_slice_size_explains_what_would_fit(netG: str, height: int, width: int,
                                                  fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        check_slice_size(netG, height, width)
    for fragment in fragments:
        assert fragment in str(caught.value)


@pytest.mark.parametrize(("netG", "num_downs"), [
    ("unet_64", 6), ("unet_128", 7), ("unet_256", 8), ("unet_512", 9),
    ("resnet_6blocks", None), ("resnet_9blocks", None),
])
def test_unet_num_downs(netG: str, num_downs: int | None) -> None:
    assert unet_num_downs(netG) == num_downs


@pytest.mark.parametrize(("call", "registry"), [
    (lambda: define_G(1, 1, 8, "unet_1024"), GENERATORS),
    (lambda: define_G(1, 1, 8, "unet_64", norm="group"), NORMS),
    (lambda: define_G(1, 1, 8, "unet_64", init_type="uniform"), INIT_TYPES),
    (lambda: define_D(2, 8, "multiscale"), DISCRIMINATORS),
    (lambda: GANLoss("hinge"), GAN_MODES),
    (lambda: get_scheduler(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0),
                           "exponential", epoch_count=1, n_epochs=1, n_epochs_decay=1,
                           lr_decay_iters=1), LR_POLICIES),
    (lambda: get_norm_layer("layer"), NORMS),
    (lambda: init_weights(nn.Conv2d(1, 1, 1), "zeros", 0.02), INIT_TYPES),
    (lambda: check_slice_size("unet", 64, 64), GENERATORS),
    (lambda: unet_num_downs("unet"), GENERATORS),
])
def test_unknown_names_raise_config_error_listing_valid_names(call: object,
                                                              registry: dict) -> None:
    with pytest.raises(ConfigError) as caught:
        call()  # type: ignore[operator]
    message = str(caught.value)
    assert "unknown" in message
    for name in registry:
        assert name in message


def test_bad_sizes_of_networks_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="ngf"):
        define_G(1, 1, 0, "unet_64")
    with pytest.raises(ConfigError, match="n_layers_D"):
        define_D(2, 8, "n_layers", n_layers_D=0)
    with pytest.raises(ConfigError, match="empty"):
        check_slice_size("unet_64", 0, 64)


def test_norm_layers_and_their_bias() -> None:
    batch = get_norm_layer("batch")(4)
    instance = get_norm_layer("instance")(4)
    assert isinstance(batch, nn.BatchNorm2d)
    assert batch.affine
    assert batch.track_running_stats
    assert isinstance(instance, nn.InstanceNorm2d)
    assert not instance.affine
    assert not instance.track_running_stats
    assert isinstance(get_norm_layer("none")(4), nn.Identity)
    assert [norm_has_bias(NORMS[n]) for n in ("batch", "instance", "none")] == [True, False, False]
    convs = [m for m in define_D(2, 4, "basic", norm="batch").modules()
             if isinstance(m, nn.Conv2d)]
    assert [c.bias is not None for c in convs] == [True, False, False, False, True]
    convs = [m for m in define_D(2, 4, "basic", norm="instance").modules()
             if isinstance(m, nn.Conv2d)]
    assert all(c.bias is not None for c in convs)


def _flat_weights(net: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.parameters()])


@pytest.mark.parametrize("init_type", sorted(INIT_TYPES))
def test_init_types_are_deterministic_under_a_seed(init_type: str) -> None:
    def build(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return define_D(2, 8, "basic", norm="batch", init_type=init_type, init_gain=0.02)

    first, again, other = build(0), build(0), build(1)
    assert torch.equal(_flat_weights(first), _flat_weights(again))
    assert not torch.equal(_flat_weights(first), _flat_weights(other))
    for module in first.modules():
        if isinstance(module, nn.Conv2d) and module.bias is not None:
            assert torch.count_nonzero(module.bias) == 0
        if isinstance(module, nn.BatchNorm2d):
            assert torch.count_nonzero(module.bias) == 0
            assert (module.weight - 1.0).abs().max() < 0.2  # N(1, 0.02)


def test_init_types_follow_their_scheme() -> None:
    conv = nn.Conv2d(64, 64, kernel_size=4)
    init_weights(conv, "normal", 0.02)
    assert conv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    init_weights(conv, "kaiming", 0.02)  # He: std = sqrt(2 / fan_in), gain unused
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2.0 / (64 * 16)), rel=0.05)
    init_weights(conv, "orthogonal", 1.0)
    rows = conv.weight.flatten(1)
    assert torch.allclose(rows @ rows.T, torch.eye(64), atol=1e-4)
    init_weights(conv, "xavier", 1.0)  # Glorot: std = sqrt(2 / (fan_in + fan_out))
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2.0 / (2 * 64 * 16)), rel=0.05)


def test_define_g_returns_an_initialised_cpu_network() -> None:
    net = define_G(1, 1, 8, "resnet_6blocks", init_type="normal", init_gain=0.02)
    assert all(p.device.type == "cpu" for p in net.parameters())
    first_conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.weight.std().item() == pytest.approx(0.02, rel=0.3)


@pytest.mark.parametrize(("netG", "height", "width", "fitted"), [
    ("unet_64", 61, 75, (64, 128)), ("unet_64", 12, 64, (64, 64)),
    ("unet_128", 128, 129, (128, 256)), ("unet_512", 1, 512, (512, 512)),
    ("resnet_6blocks", 12, 75, (12, 76)), ("resnet_9blocks", 5, 7, (8, 8)),
    ("resnet_9blocks", 64, 64, (64, 64))])
def test_slice_size_rule_fits_the_least_size_the_generator_takes(netG: str, height: int,
                                                                 width: int,
                                                                 fitted: tuple[int, int]) -> None:
    rule = slice_size_rule(netG)
    assert rule.fit(height, width) == fitted
    assert rule.takes(*fitted)
    check_slice_size(netG, *fitted)  # the same fact as the training-time check
    assert rule.takes(height, width) == ((height, width) == fitted)
