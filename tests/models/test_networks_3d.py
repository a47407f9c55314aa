"""Tests of the volumetric networks: 3-D U-Nets, 3-D PatchGANs, the motion generator and its
field measures, and the volume size rules. Volumes are (N, C, D, H, W), values in [-1, 1]."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from models.networks import (
    GENERATORS,
    INIT_TYPES,
    NORMS,
    MotionGenerator,
    NLayerDiscriminator,
    PixelDiscriminator,
    ResidualGenerator,
    SliceSizeRule,
    UnetGenerator3d,
    check_slice_size,
    check_volume_size,
    define_D,
    define_G,
    describe_network,
    folding_fraction,
    get_norm_layer,
    init_weights,
    is_motion_generator,
    is_volumetric,
    jacobian_determinant,
    patch_receptive_field,
    slice_size_rule,
    smoothness_loss,
    unet_num_downs,
    volume_size_rule,
)
from util.errors import ConfigError

VOLUMETRIC = ["unet3d_3", "unet3d_4", "unet3d_5", "motion3d_3", "motion3d_4", "motion3d_5"]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _volume(shape: tuple[int, ...] = (1, 1, 16, 16, 16)) -> torch.Tensor:
    """Random float32 values in [-1, 1]."""
    return torch.rand(shape) * 2 - 1


def _blobs(side: int = 16) -> torch.Tensor:
    """(1, 1, side, side, side) smooth volume in [-1, 1]: two Gaussian blobs (sigma 2.5 voxels)
    off the centre, so that every axis has a gradient."""
    grid = torch.stack(torch.meshgrid(*[torch.arange(side, dtype=torch.float32)] * 3,
                                      indexing="ij"))
    vol = torch.zeros(side, side, side)
    for centre in ((6.0, 7.0, 9.0), (10.0, 9.0, 6.0)):
        sq = torch.stack([(grid[i] - centre[i]) ** 2 for i in range(3)]).sum(0)
        vol = vol + torch.exp(-sq / (2 * 2.5**2))
    return (vol * 2 - 1).clamp(-1, 1)[None, None]


def _head(net: nn.Module) -> nn.ConvTranspose3d:
    """The output layer of the 3-D U-Net inside a motion generator."""
    assert isinstance(net, MotionGenerator)
    assert isinstance(net.field_net, UnetGenerator3d)
    return net.field_net.output_layer


def _set_head(net: MotionGenerator, bias: list[float]) -> None:
    """Make the motion generator output the constant (u, c) = ``bias`` at every voxel."""
    head = _head(net)
    assert head.bias is not None
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor(bias))


def test_registry_names_and_what_they_build() -> None:
    assert {name for name in GENERATORS if is_volumetric(name)} == set(VOLUMETRIC)
    assert not any(is_volumetric(name) for name in ("unet_64", "unet_512", "resnet_9blocks"))
    assert [unet_num_downs(name) for name in VOLUMETRIC] == [3, 4, 5, 3, 4, 5]
    assert isinstance(define_G(1, 1, 2, "unet3d_3"), UnetGenerator3d)
    assert isinstance(define_G(1, 1, 2, "motion3d_3"), MotionGenerator)
    with pytest.raises(ConfigError, match="unknown --netG"):
        is_volumetric("unet3d_9")


@pytest.mark.parametrize("netG", VOLUMETRIC)
@pytest.mark.parametrize("norm", sorted(NORMS))
def test_volumetric_generators_keep_the_volume_shape_in_train_mode(netG: str, norm: str) -> None:
    side = 2 ** int(netG[-1])
    net = define_G(1, 1, 2, netG, norm=norm, use_dropout=True).train()
    x = _volume((2, 1, side, 2 * side, side))
    y = net(x)
    assert y.shape == x.shape
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()
    assert y.abs().max() <= 1.0
    y.mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_unet3d_takes_channels_and_the_least_size_with_instance_norm() -> None:
    net = define_G(3, 2, 4, "unet3d_3", norm="instance").train()
    y = net(_volume((1, 3, 8, 8, 16)))  # 1x1x2 bottleneck, batch of 1
    assert y.shape == (1, 2, 8, 8, 16)
    y.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_unet3d_widths_norms_and_dropout_follow_the_levels() -> None:
    net = UnetGenerator3d(1, 1, 5, ngf=2, norm_layer=get_norm_layer("batch", 3),
                          use_dropout=True)
    widths = [next(m for m in enc.modules() if isinstance(m, nn.Conv3d)).out_channels
              for enc in net.encoders]
    assert widths == [2, 4, 8, 16, 16]  # ngf * min(2**level, 8)
    normed = [any(isinstance(m, nn.BatchNorm3d) for m in enc.modules()) for enc in net.encoders]
    assert normed == [False, True, True, True, False]  # never on the 1x1x1 bottleneck
    for depth, n_dropout in ((3, 1), (4, 2), (5, 3)):
        with_dropout = UnetGenerator3d(1, 1, depth, ngf=2, use_dropout=True)
        assert sum(isinstance(m, nn.Dropout) for m in with_dropout.modules()) == n_dropout
        assert not any(isinstance(m, nn.Dropout) for m in UnetGenerator3d(1, 1, depth).modules())


def test_unet3d_linear_output_is_unbounded_and_its_head_is_the_last_layer() -> None:
    net = UnetGenerator3d(1, 4, 2, ngf=2, final="linear")
    head = net.output_layer
    assert head.bias is not None
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(3.0)
    torch.testing.assert_close(net(_volume((1, 1, 4, 8, 4))), torch.full((1, 4, 4, 8, 4), 3.0))
    with pytest.raises(ConfigError, match="final"):
        UnetGenerator3d(1, 1, 2, final="sigmoid")  # type: ignore[arg-type]


@pytest.mark.parametrize(("shape", "fragment"), [
    ((1, 1, 24, 32, 32), "multiples of 16, got 24x32x32"),
    ((1, 1, 32, 32, 8), "multiples of 16, got 32x32x8"),
    ((1, 1, 32, 32), "(N, C, D, H, W)"),
])
def test_unet3d_forward_refuses_a_size_it_cannot_take(shape: tuple[int, ...],
                                                      fragment: str) -> None:
    net = define_G(1, 1, 2, "unet3d_4")
    with pytest.raises(ConfigError) as caught:
        net(torch.zeros(shape))
    assert fragment in str(caught.value)


def test_residual_unet3d_adds_its_output_to_the_input_volume() -> None:
    net = define_G(3, 1, 2, "unet3d_3", norm="instance", residual=True)
    assert isinstance(net, ResidualGenerator)
    x = _volume((1, 3, 8, 8, 8))
    expected = (x[:, 1:2] + net.net(x)).clamp(-1, 1)
    torch.testing.assert_close(net(x), expected)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"input_nc": 3}, "--input_nc 1, 3 with --phases; --output_nc 1), got 3 and 1"),
    ({"output_nc": 2}, "--output_nc 1), got 1 and 2"),
    ({"residual": True}, "--residual does not apply"),
])
def test_motion_generator_refuses_options_it_cannot_take(kwargs: dict, fragment: str) -> None:
    args = {"input_nc": 1, "output_nc": 1, "ngf": 2, "netG": "motion3d_3"} | kwargs
    with pytest.raises(ConfigError, match="motion3d_3") as caught:
        define_G(**args)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(("netD", "n_layers_D", "size", "out_size"), [
    ("basic", 3, (32, 64, 32), (2, 6, 2)),      # side / 2**3 - 2
    ("n_layers", 2, (16, 32, 16), (2, 6, 2)),
    ("n_layers", 1, (12, 24, 12), (4, 10, 4)),
    ("pixel", 3, (6, 12, 6), (6, 12, 6)),
])
@pytest.mark.parametrize("norm", sorted(NORMS))
def test_3d_discriminator_output_shapes(netD: str, n_layers_D: int, size: tuple[int, ...],
                                        out_size: tuple[int, ...], norm: str) -> None:
    net = define_D(2, 4, netD, n_layers_D=n_layers_D, norm=norm, dims=3).train()
    assert not any(isinstance(m, nn.Conv2d | nn.BatchNorm2d) for m in net.modules())
    y = net(torch.randn(2, 2, *size))
    assert y.shape == (2, 1, *out_size)
    assert torch.isfinite(y).all()


def test_3d_patchgan_receptive_field_is_the_2d_one_along_every_axis() -> None:
    net = define_D(1, 2, "n_layers", n_layers_D=1, norm="none", dims=3).eval()
    x = torch.zeros(1, 1, 24, 24, 24, requires_grad=True)
    y = net(x)
    centre = y.shape[-1] // 2
    y[0, 0, centre, centre, centre].backward()
    assert x.grad is not None
    touched = x.grad[0, 0].abs() > 0
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        hit = torch.nonzero(touched.any(dim=others[1]).any(dim=others[0])).flatten()
        assert int(hit[-1] - hit[0]) + 1 == patch_receptive_field(1) == 16


def test_2d_discriminators_keep_their_state_dict_keys() -> None:
    """The keys the 2-D classes had before ``dims`` existed (checkpoints must still load)."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    expected = (["model.0.weight", "model.0.bias", "model.2.weight"]
                + [f"model.3.{k}" for k in bn] + ["model.5.weight"]
                + [f"model.6.{k}" for k in bn] + ["model.8.weight", "model.8.bias"])
    net = NLayerDiscriminator(2, 4, n_layers=2)
    assert list(net.state_dict()) == expected
    assert all(m.weight.ndim == 4 for m in net.modules() if isinstance(m, nn.Conv2d))
    assert list(PixelDiscriminator(2, 4).state_dict()) == (
        ["model.0.weight", "model.0.bias", "model.2.weight"] + [f"model.3.{k}" for k in bn]
        + ["model.5.weight", "model.5.bias"])
    assert list(NLayerDiscriminator(2, 4, 2, dims=3).state_dict()) == expected


@pytest.mark.parametrize(("norm", "dims", "cls", "learns"), [
    ("batch", 2, nn.BatchNorm2d, True),
    ("instance", 2, nn.InstanceNorm2d, False),
    ("batch", 3, nn.BatchNorm3d, True),
    ("instance", 3, nn.InstanceNorm3d, False),
    ("none", 3, nn.Identity, False),
])
def test_norm_layers_by_dimension(norm: str, dims: int, cls: type, learns: bool) -> None:
    layer = get_norm_layer(norm, dims)(4)
    assert type(layer) is cls
    if not isinstance(layer, nn.Identity):
        assert layer.affine == learns
        assert layer.track_running_stats == learns
    assert type(get_norm_layer(norm)(4)) is type(get_norm_layer(norm, 2)(4))


def test_norm_and_discriminator_refuse_other_dimensions() -> None:
    with pytest.raises(ConfigError, match="dims must be 2"):
        get_norm_layer("batch", 1)
    with pytest.raises(ConfigError, match="dims must be 2"):
        define_D(2, 4, "basic", dims=4)


@pytest.mark.parametrize(("netG", "multiple"), [("unet3d_3", 8), ("unet3d_4", 16),
                                                ("unet3d_5", 32), ("motion3d_4", 16)])
def test_volume_size_rule_pads_each_side_to_the_multiple(netG: str, multiple: int) -> None:
    rule = volume_size_rule(netG)
    assert rule == SliceSizeRule(multiple, multiple)
    fitted = rule.fit(30, 64, 5)
    assert fitted == tuple(-(-side // multiple) * multiple for side in (30, 64, 5))
    assert rule.takes(*fitted)
    check_volume_size(netG, *fitted)  # the same fact as the check
    assert not rule.takes(30, 64, 5)


def test_size_rule_takes_any_number_of_sides() -> None:
    rule = SliceSizeRule(4, 8)
    assert rule.fit(5) == (8,)
    assert rule.fit(5, 9) == (8, 12)
    assert rule.fit(1, 9, 16, 17) == (8, 12, 16, 20)
    assert rule.takes(8, 12, 16)
    assert not rule.takes(8, 12, 4)  # below the least
    with pytest.raises(ValueError, match="at least one side"):
        rule.fit()


@pytest.mark.parametrize(("netG", "size", "fragments"), [
    ("unet3d_4", (24, 64, 64), ["24x64x64", "unet3d_4", "multiples of 16", "--netG unet3d_3",
                                "pad the volume to 32x64x64"]),
    ("motion3d_5", (48, 64, 64), ["48x64x64", "motion3d_5", "multiples of 32",
                                  "motion3d_3 or motion3d_4", "64x64x64"]),
    ("unet3d_3", (30, 64, 64), ["30x64x64", "multiples of 8", "no unet3d generator",
                                "pad the volume to 32x64x64"]),
])
def test_check_volume_size_explains_what_would_fit(netG: str, size: tuple[int, int, int],
                                                   fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        check_volume_size(netG, *size)
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_slice_and_volume_checks_refuse_the_other_kind_of_generator() -> None:
    with pytest.raises(ConfigError, match="unet3d_4 is volumetric"):
        check_slice_size("unet3d_4", 64, 64)
    with pytest.raises(ConfigError, match="motion3d_3 is volumetric"):
        slice_size_rule("motion3d_3")
    with pytest.raises(ConfigError, match="unet_64 takes 2-D slices"):
        volume_size_rule("unet_64")
    with pytest.raises(ConfigError, match="resnet_9blocks takes 2-D slices"):
        check_volume_size("resnet_9blocks", 8, 8, 8)
    with pytest.raises(ConfigError, match="empty"):
        check_volume_size("unet3d_3", 0, 8, 8)
    with pytest.raises(ConfigError) as caught:  # the 2-D hint never suggests a 3-D name
        check_slice_size("unet_256", 64, 64)
    assert "3d" not in str(caught.value)


@pytest.mark.parametrize("init_type", sorted(INIT_TYPES))
@pytest.mark.parametrize("correction", [True, False])
def test_motion_generator_starts_as_the_identity(init_type: str, correction: bool) -> None:
    net = define_G(1, 1, 4, "motion3d_3", norm="instance", init_type=init_type,
                   intensity_correction=correction)
    assert isinstance(net, MotionGenerator)
    assert _head(net).out_channels == 3 + correction
    x = _volume((2, 1, 8, 16, 8))
    y, u = net(x, return_field=True)
    assert u.shape == (2, 3, 8, 16, 8)
    assert torch.count_nonzero(u) == 0
    torch.testing.assert_close(y, x, rtol=0, atol=1e-6)
    init_weights(net, init_type, 0.5)  # re-initialising keeps the head at zero
    assert torch.count_nonzero(_head(net).weight) == 0
    assert any(torch.count_nonzero(p) for p in net.field_net.parameters())
    torch.testing.assert_close(net(x), x, rtol=0, atol=1e-6)


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("shift", [2, -1])
def test_constant_field_pulls_from_p_plus_u(axis: int, shift: int) -> None:
    """y(p) = x(p + u): u = +2 along D reads the slice two above, i.e. np.roll by -2."""
    net = MotionGenerator(UnetGenerator3d(1, 3, 2, ngf=2, final="linear"),
                          intensity_correction=False)
    _set_head(net, [float(shift) if i == axis else 0.0 for i in range(3)])
    x = _volume((1, 1, 8, 12, 16))
    y = net(x)
    expected = np.roll(x.numpy(), -shift, axis=2 + axis)
    inside = [slice(None)] * 5
    size = x.shape[2 + axis]
    inside[2 + axis] = slice(max(0, -shift), size - max(0, shift))
    np.testing.assert_allclose(y.detach().numpy()[tuple(inside)], expected[tuple(inside)],
                               rtol=0, atol=1e-5)
    edge = [slice(None)] * 5  # beyond the volume the border slice is read
    edge[2 + axis] = slice(size - 1, size) if shift > 0 else slice(0, 1)
    np.testing.assert_allclose(y.detach().numpy()[tuple(edge)], x.numpy()[tuple(edge)],
                               rtol=0, atol=1e-5)


def test_intensity_correction_is_added_then_clamped() -> None:
    net = MotionGenerator(UnetGenerator3d(1, 4, 1, ngf=2, final="linear"))
    _set_head(net, [0.0, 0.0, 0.0, 0.25])
    x = torch.linspace(-1, 1, 32).reshape(1, 1, 2, 4, 4)
    torch.testing.assert_close(net(x), (x + 0.25).clamp(-1, 1), rtol=0, atol=1e-6)


def test_warp_runs_in_float32_under_bf16_autocast() -> None:
    """A half-voxel shift on a 320-voxel ramp: bf16 grid coordinates would be off by a voxel."""
    net = MotionGenerator(UnetGenerator3d(1, 3, 1, ngf=2, final="linear"),
                          intensity_correction=False)
    _set_head(net, [0.0, 0.0, 0.5])
    ramp = torch.arange(320, dtype=torch.float32) / 320
    x = ramp.expand(1, 1, 2, 2, 320).contiguous()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, u = net(x, return_field=True)
    assert y.dtype == u.dtype == torch.float32
    torch.testing.assert_close(y[..., :-1], (x[..., :-1] + 0.5 / 320).expand_as(y[..., :-1]),
                               rtol=0, atol=1e-5)


def test_a_stale_cached_grid_is_rebuilt() -> None:
    """MONAI's Warp caches its grid by shape alone (not device or dtype, e.g. after ``.to``)."""
    net = MotionGenerator(UnetGenerator3d(1, 3, 1, ngf=2, final="linear"),
                          intensity_correction=False)
    x = _volume((1, 1, 2, 4, 6))
    net(x)
    assert net.warp.ref_grid is not None
    net.warp.ref_grid = net.warp.ref_grid.double()
    torch.testing.assert_close(net(x), x, rtol=0, atol=1e-6)


def test_motion_generator_refuses_a_slice_input() -> None:
    net = define_G(1, 1, 2, "motion3d_3")
    with pytest.raises(ConfigError, match=r"\(N, C, D, H, W\)"):
        net(torch.zeros(1, 1, 8, 8))


def test_a_few_steps_learn_a_two_voxel_shift() -> None:
    """Target = the volume read 2 slices up (y(p) = x(p + 2 e_D)): L1 falls, u_D grows to +2."""
    net = MotionGenerator(UnetGenerator3d(1, 3, 2, ngf=4, norm_layer=get_norm_layer("none", 3),
                                          final="linear"), intensity_correction=False)
    init_weights(net, "normal", 0.02)
    x = _blobs()
    target = torch.roll(x, shifts=-2, dims=2)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    inside = (slice(None), slice(None), slice(3, 11), slice(3, 13), slice(3, 13))
    losses = []
    for _ in range(40):
        y, u = net(x, return_field=True)
        loss = (y - target)[inside].abs().mean()
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    _, u = net(x, return_field=True)
    assert losses[-1] < 0.25 * losses[0]
    mean_u = u[inside].mean(dim=(0, 2, 3, 4))
    assert mean_u[0] > 1.2  # toward +2 along D
    assert mean_u[1:].abs().max() < 0.3


def test_smoothness_of_constant_ramp_checkerboard_and_noise() -> None:
    assert smoothness_loss(torch.full((2, 3, 4, 5, 6), 1.5)).item() == 0.0
    d = torch.arange(4, dtype=torch.float32).reshape(1, 1, 4, 1, 1)
    ramp = torch.zeros(1, 3, 4, 5, 6)
    ramp[:, 0] = 0.5 * d  # u_D = a d with a = 0.5: one of 3 axes, one of 3 channels
    assert smoothness_loss(ramp).item() == pytest.approx(0.25 / 9)
    parity = torch.stack(torch.meshgrid(*[torch.arange(n) for n in (4, 4, 4)],
                                        indexing="ij")).sum(0) % 2
    checker = (2.0 * parity - 1.0).expand(1, 3, 4, 4, 4)
    assert smoothness_loss(checker).item() == pytest.approx(4.0)  # every step is +-2
    noisy = torch.randn(1, 3, 6, 6, 6, requires_grad=True)
    loss = smoothness_loss(noisy)
    assert loss.item() > 0
    loss.backward()
    assert noisy.grad is not None
    with pytest.raises(ValueError, match="sides >= 2"):
        smoothness_loss(torch.zeros(1, 3, 1, 4, 4))


def test_jacobian_of_zero_and_linear_fields() -> None:
    assert torch.equal(jacobian_determinant(torch.zeros(2, 3, 3, 4, 5)), torch.ones(2, 3, 4, 5))
    matrix = torch.tensor([[0.1, -0.2, 0.05], [0.3, -0.1, 0.0], [0.0, 0.2, 0.25]])
    points = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float64)
                                          for n in (4, 5, 6)], indexing="ij"))
    u = torch.einsum("ij,jdhw->idhw", matrix.double(), points)[None]  # u = A p
    det = jacobian_determinant(u)
    assert det.shape == (1, 4, 5, 6)
    expected = float(np.linalg.det(np.eye(3) + matrix.double().numpy()))
    torch.testing.assert_close(det, torch.full_like(det, expected))  # edges included


def test_folding_fraction_counts_voxels_where_the_map_folds() -> None:
    assert folding_fraction(torch.zeros(1, 3, 4, 4, 4)) == 0.0
    d = torch.arange(8, dtype=torch.float32).reshape(1, 8, 1, 1)
    u = torch.zeros(1, 3, 8, 4, 4)
    u[:, 0] = torch.where(d < 4, -2.0 * d, -6.0 + 0.0 * d)  # det -1 below slice 4, 1 above
    fraction = folding_fraction(u)
    assert 0.0 < fraction < 1.0
    assert fraction == pytest.approx(float((jacobian_determinant(u) <= 0).float().mean()))


def test_is_motion_generator_sees_through_wrappers() -> None:
    motion = define_G(1, 1, 2, "motion3d_3")
    assert is_motion_generator(motion)
    assert is_motion_generator(nn.DataParallel(motion))
    assert not is_motion_generator(define_G(1, 1, 2, "unet3d_3"))
    assert not is_motion_generator(define_G(1, 1, 2, "unet_64"))


def test_is_motion_generator_unwraps_distributed_data_parallel(tmp_path) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        wrapped = nn.parallel.DistributedDataParallel(define_G(1, 1, 2, "motion3d_3"))
        assert is_motion_generator(wrapped)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(("build", "expected"), [
    (lambda: define_G(1, 1, 4, "unet3d_4", norm="batch"),
     "a 3-D U-Net of 4 levels (--netG unet3d_4), --ngf 4, --input_nc 1, --output_nc 1, "
     "batch norm"),
    (lambda: define_G(3, 1, 2, "unet3d_3", norm="instance", residual=True),
     "a 3-D U-Net of 3 levels (--netG unet3d_3), --ngf 2, --input_nc 3, --output_nc 1, "
     "instance norm or no norm (no running statistics), residual output (--residual)"),
    (lambda: define_G(1, 1, 2, "motion3d_5", norm="batch"),
     "a motion generator over a 3-D U-Net of 5 levels (--netG motion3d_5), --ngf 2, with "
     "intensity correction, batch norm"),
    (lambda: define_G(1, 1, 2, "motion3d_3", intensity_correction=False),
     "a motion generator over a 3-D U-Net of 3 levels (--netG motion3d_3), --ngf 2, without "
     "intensity correction, batch norm"),
    (lambda: define_D(2, 4, "basic", dims=3),
     "a 3-D PatchGAN discriminator of 5 convolutions (--n_layers_D 3), --ndf 4, 2 input "
     "channels, batch norm"),
    (lambda: define_D(2, 4, "pixel", norm="instance", dims=3),
     "a 3-D pixel discriminator (--netD pixel), --ndf 4, 2 input channels, instance norm or "
     "no norm (no running statistics)"),
])
def test_volumetric_networks_are_described(build, expected: str) -> None:
    assert describe_network(build()) == expected


def test_init_weights_fills_3d_layers() -> None:
    net = define_G(1, 1, 8, "unet3d_4", norm="batch", init_type="normal", init_gain=0.02)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv3d | nn.ConvTranspose3d)]
    assert len(convs) == 8
    assert all(c.bias is None or torch.count_nonzero(c.bias) == 0 for c in convs)
    assert convs[1].weight.std().item() == pytest.approx(0.02, rel=0.1)
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm3d)]
    assert norms
    assert all((n.weight - 1).abs().max() < 0.2 and torch.count_nonzero(n.bias) == 0
               for n in norms)
    assert not torch.allclose(norms[0].weight, torch.ones_like(norms[0].weight))
