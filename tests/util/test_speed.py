"""Speed paths: each is refused where the device lacks it and, where it runs, stays within its
stated tolerance of the plain float32 result (values in [-1, 1]; 0.01 is about 20 HU):

| path | max abs difference of G's output | mean abs difference |
|---|---|---|
| channels_last, compile | 1e-4 | - |
| bf16 autocast | 0.05 | 0.01 |
"""

import logging

import pytest
import torch

from models import create_model
from models.networks import define_D, define_G
from options.train_options import TrainOptions
from tests.parsed import parsed_settings
from util.errors import ConfigError
from util.speed import (
    SpeedSettings,
    autocast,
    compile_supported,
    configure_backends,
    cpu_has_bf16_matrix_units,
    make_adam,
    make_grad_scaler,
    resolve_amp,
    resolve_speed,
    speed_up_network,
    step_in_backward,
    to_memory_format,
)

CPU = torch.device("cpu")


def unet_and_input() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    net = define_G(1, 1, 16, "unet_64", norm="instance", use_dropout=False).eval()
    return net, torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_amp_modes_on_the_cpu(caplog):
    with caplog.at_level(logging.INFO):
        assert resolve_amp("fp16", CPU) is None
    assert "fp16 autocast with a grad scaler needs a CUDA GPU" in caplog.text
    assert resolve_amp("bf16", CPU) is torch.bfloat16
    assert resolve_amp("off", CPU) is None
    with pytest.raises(ConfigError, match="valid: off, bf16, fp16"):
        resolve_amp("fp8", CPU)


def test_bf16_matrix_units_are_read_from_the_cpu_flags(tmp_path):
    amx = tmp_path / "amx"
    amx.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n")
    plain = tmp_path / "plain"  # bf16 vector instructions without the matrix units
    plain.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert cpu_has_bf16_matrix_units(amx) == torch.backends.mkldnn.is_available()
    assert not cpu_has_bf16_matrix_units(plain)
    assert not cpu_has_bf16_matrix_units(tmp_path / "no_such_file")


@pytest.mark.parametrize("units", [True, False])
def test_auto_amp_is_bf16_exactly_on_cpus_with_bf16_matrix_units(monkeypatch, caplog, units):
    monkeypatch.setattr("util.speed.cpu_has_bf16_matrix_units", lambda: units)
    with caplog.at_level(logging.INFO):
        assert resolve_amp("auto", CPU) is (torch.bfloat16 if units else None)
        assert resolve_amp("auto", torch.device("cuda", 0)) is None  # GPUs: ask for it
    assert ("--amp auto: bf16" in caplog.text) == units


def test_training_defaults_to_auto_and_testing_to_float32(tmp_path):
    from options.test_options import TestOptions

    argv = ["--dataroot", str(tmp_path), "--checkpoints_dir", str(tmp_path), "--gpu_ids", "-1"]
    options = TrainOptions()
    opt = options.parse(argv)
    assert opt.amp == "auto"
    options.record(opt)  # a run to test
    assert TestOptions().parse(argv).amp == "off"


def test_step_in_backward_gives_the_usual_weights_and_never_holds_all_gradients():
    def net_and_adam() -> tuple[torch.nn.Module, torch.optim.Adam]:
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(),
                                  torch.nn.Conv2d(4, 1, 3))
        return net, make_adam(net.parameters(), lr=1e-2, betas=(0.5, 0.999), device=CPU)

    usual, usual_adam = net_and_adam()
    inside, inside_adam = net_and_adam()
    active = [True]
    step_in_backward(inside_adam, lambda: active[0])
    seen: list[int] = []  # gradients alive when each hook ran
    for p in inside.parameters():
        p.register_post_accumulate_grad_hook(
            lambda _: seen.append(sum(q.grad is not None for q in inside.parameters())))
    for step in range(4):
        x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(step))
        usual_adam.zero_grad()
        usual(x).square().mean().backward()
        usual_adam.step()
        inside(x).square().mean().backward()  # updated here, no step() call
        assert all(p.grad is None for p in inside.parameters())
    assert all(torch.equal(a, b) for a, b in zip(usual.parameters(), inside.parameters(),
                                                  strict=True))
    assert seen
    assert max(seen) <= 1
    assert (usual_adam.state_dict()["state"][0]["step"]
            == inside_adam.state_dict()["state"][0]["step"] == 4)
    active[0] = False  # switched off: gradients accumulate as usual
    inside(torch.rand(2, 1, 8, 8)).sum().backward()
    assert all(p.grad is not None for p in inside.parameters())


def test_grad_scaler_scales_for_fp16_only():
    assert make_grad_scaler(CPU, torch.float16).is_enabled()
    assert not make_grad_scaler(CPU, torch.bfloat16).is_enabled()
    assert not make_grad_scaler(CPU, None).is_enabled()


def test_cuda_only_settings_are_logged_off_on_the_cpu(caplog):
    with caplog.at_level(logging.INFO):
        configure_backends(CPU, tf32=True, cudnn_benchmark=True)
    assert "TF32 and cudnn benchmark: off on cpu" in caplog.text


def test_channels_last_keeps_the_output_and_parameters():
    net, x = unet_and_input()
    params = list(net.parameters())
    with torch.no_grad():
        ref = net(x)
        fast = speed_up_network(net, SpeedSettings(channels_last=True))
        out = fast(to_memory_format(x, True))
    assert [p is q for p, q in zip(params, fast.parameters(), strict=True)] == [True] * len(params)
    assert next(p for p in fast.parameters() if p.ndim == 4).is_contiguous(
        memory_format=torch.channels_last)
    assert (out - ref).abs().max() < 1e-4


def test_bf16_autocast_stays_within_tolerance():
    net, x = unet_and_input()
    with torch.no_grad():
        ref = net(x)
        with autocast(CPU, torch.bfloat16):
            out = net(x)
    assert out.dtype == torch.bfloat16
    diff = (out.float() - ref).abs()
    assert 0 < diff.mean() < 0.01
    assert diff.max() < 0.05


@pytest.mark.slow
def test_compiled_network_matches_eager():
    torch.manual_seed(0)
    net = define_D(2, 8, "pixel", norm="instance").eval()
    x = torch.rand(2, 2, 32, 32)
    reason = compile_supported(CPU)
    if reason is not None:
        pytest.skip(f"torch.compile cannot run here: {reason}")
    settings = resolve_speed(CPU, use_compile=True)
    assert settings.compile
    with torch.no_grad():
        ref = net(x)
        out = speed_up_network(net, settings)(x)
    assert (out - ref).abs().max() < 1e-4


def test_fused_adam_follows_the_reference_adam():
    torch.manual_seed(0)
    w_fused = torch.nn.Parameter(torch.randn(1000))
    w_ref = torch.nn.Parameter(w_fused.detach().clone())
    fused = make_adam([w_fused], lr=1e-3, betas=(0.5, 0.999), device=CPU)
    ref = torch.optim.Adam([w_ref], lr=1e-3, betas=(0.5, 0.999), foreach=False)
    assert fused.defaults["fused"]
    for step in range(5):
        grad = torch.randn(1000, generator=torch.Generator().manual_seed(step))
        w_fused.grad, w_ref.grad = grad.clone(), grad.clone()
        fused.step()
        ref.step()
    assert torch.allclose(w_fused, w_ref, atol=1e-6)


@pytest.mark.parametrize(("extra", "loss_rtol"), [
    (["--channels_last"], 1e-3),
    (["--amp", "bf16"], 0.1),
])
def test_training_step_with_a_speed_path_matches_float32(tmp_path, extra, loss_rtol):
    def losses(*flags: str) -> dict[str, float]:
        torch.manual_seed(0)
        model = create_model(parsed_settings(
            "--dataroot", str(tmp_path), "--checkpoints_dir", str(tmp_path / "ck"), "--name",
            "s", "--netG", "unet_64", "--ngf", "8", "--ndf", "8", "--axial_slice", "--gpu_ids",
            "-1", "--no_dropout", "--recipe", "pix2pix", *flags))
        model.setup()
        g = torch.Generator().manual_seed(0)
        model.set_input({"A": torch.rand(2, 1, 64, 64, generator=g) * 2 - 1,
                         "B": torch.rand(2, 1, 64, 64, generator=g) * 2 - 1, "A_paths": ["a"] * 2})
        model.optimize_parameters()
        assert model.get_current_visuals()["fake_B"].dtype == torch.float32
        return model.get_current_losses()

    ref, fast = losses("--amp", "off"), losses(*extra)
    for name, value in ref.items():
        assert fast[name] == pytest.approx(value, rel=loss_rtol), name
