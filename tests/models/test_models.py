"""pix2pix and test models: a training step, atomic checkpoints, safe and checked loading."""

import pickle

import pytest
import torch

from models import create_model
from tests.conftest import CodeOnLoad
from tests.parsed import parsed_settings
from util.errors import ConfigError, DataError


def small_settings(tmp_path, *extra, train=True):
    """A small unet_64 run's settings; a training's records its opt.json, as train.py does once
    its checks pass."""
    argv = ["--dataroot", str(tmp_path / "d"), "--checkpoints_dir", str(tmp_path / "ck"),
            "--name", "run", "--netG", "unet_64", "--ngf", "8", "--ndf", "8", "--axial_slice",
            "--gpu_ids", "-1", *(["--recipe", "pix2pix"] if train else []), *extra]
    return parsed_settings(*argv, train=train, record=train)


def batch(n=2, size=64):
    g = torch.Generator().manual_seed(0)
    return {"A": torch.rand(n, 1, size, size, generator=g) * 2 - 1,
            "B": torch.rand(n, 1, size, size, generator=g) * 2 - 1, "A_paths": ["a"] * n}


@pytest.mark.parametrize("gan_mode", ["vanilla", "lsgan", "wgangp"])
def test_pix2pix_step_updates_both_networks(tmp_path, gan_mode):
    torch.manual_seed(0)
    model = create_model(small_settings(tmp_path, "--gan_mode", gan_mode, "--pool_size", "2"))
    model.setup()
    g0 = [p.detach().clone() for p in model.netG.parameters()]
    d0 = [p.detach().clone() for p in model.netD.parameters()]
    model.set_input(batch())
    model.optimize_parameters()
    losses = model.get_current_losses()
    assert set(losses) == {"G_GAN", "G_L1", "D_real", "D_fake"}
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(g0, model.netG.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(d0, model.netD.parameters(), strict=True))
    assert set(model.get_current_visuals()) == {"real_A", "fake_B", "real_B"}


def test_checkpoints_round_trip_into_test_model(tmp_path):
    model = create_model(small_settings(tmp_path))
    paths = model.save_networks("latest")
    assert [p.name for p in paths] == ["latest_net_G.pth", "latest_net_D.pth"]
    assert not [p for p in paths[0].parent.iterdir() if ".tmp" in p.name]
    tester = create_model(small_settings(tmp_path, "--model", "test", train=False))
    tester.setup()
    for a, b in zip(model.netG.state_dict().values(), tester.netG.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    tester.set_input({"A": batch()["A"], "A_paths": ["a", "a"]})
    tester.test()
    assert tester.fake_B.shape == (2, 1, 64, 64)
    assert set(tester.get_current_visuals()) == {"real_A", "fake_B"}


def test_checkpoint_carrying_code_is_refused_and_not_run(tmp_path):
    model = create_model(small_settings(tmp_path))
    marker = tmp_path / "code_ran"
    torch.save({"weight": CodeOnLoad(marker)}, model.checkpoint_path("latest", "G"))
    tester = create_model(small_settings(tmp_path, "--model", "test", train=False))
    with pytest.raises(DataError, match=r"latest_net_G\.pth: refused, not a plain weights file"):
        tester.setup()
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(model.checkpoint_path("latest", "G"), weights_only=True)


def test_wrong_architecture_names_what_checkpoint_holds(tmp_path):
    import save_ct_metadata

    settings = small_settings(tmp_path)
    model = create_model(settings)
    geometry = {"p1": ((64, 64, 4), torch.eye(4).numpy())}
    save_ct_metadata.save_model_with_metadata(model, settings, "latest", model.save_dir,
                                              geometry)
    other = small_settings(tmp_path, "--netG", "unet_128", "--gpu_ids", "-1")
    other = other.with_options(epoch="latest", isTrain=False)
    with pytest.raises(ConfigError, match=r"options \(a U-Net of 7 levels \(--netG unet_128\).*"
                                          r"the file holds a U-Net of 6 levels \(--netG "
                                          r"unet_64\), --ngf 8, .*batch norm"):
        create_model(other).setup()


def test_missing_checkpoint_lists_available(tmp_path):
    model = create_model(small_settings(tmp_path))
    model.save_networks(3)
    tester = create_model(small_settings(tmp_path, "--model", "test", train=False))
    with pytest.raises(ConfigError, match=r"latest_net_G\.pth: checkpoint not found; "
                                          r"available: 3_net_D\.pth, 3_net_G\.pth"):
        tester.setup()


def steps(model, n=3):
    g = torch.Generator().manual_seed(1)
    for _ in range(n):
        a = torch.rand(2, 1, 64, 64, generator=g) * 2 - 1
        model.set_input({"A": a, "B": torch.roll(a, 3, 2)})
        model.optimize_parameters()


def test_only_a_large_g_is_updated_inside_its_backward(tmp_path, monkeypatch):
    model = create_model(small_settings(tmp_path))  # unet_64 with 8 filters: 0.2 M parameters
    model.setup()
    assert not model.g_step_in_backward
    monkeypatch.setattr("models.pix2pix_model.STEP_IN_BACKWARD_MIN_PARAMS", 1000)
    model = create_model(small_settings(tmp_path, "--name", "large_enough"))
    model.setup()
    assert model.g_step_in_backward


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_g_updated_inside_its_backward_has_the_usual_weights(tmp_path, amp, monkeypatch):
    monkeypatch.setattr("models.pix2pix_model.STEP_IN_BACKWARD_MIN_PARAMS", 0)

    def trained(inside: bool) -> tuple[list[torch.Tensor], object]:
        torch.manual_seed(0)
        model = create_model(small_settings(tmp_path, "--amp", amp, "--name", f"r{inside}"))
        model.setup()
        assert model.g_step_in_backward  # one process, no gradient scaler
        model.g_step_in_backward = inside
        steps(model)
        assert all(p.grad is None for p in model.netG.parameters())  # dropped once used
        return [p.detach().clone() for p in model.netG.parameters()], model

    (usual, _), (inside, model) = trained(False), trained(True)
    assert all(torch.equal(a, b) for a, b in zip(usual, inside, strict=True))
    assert model.optimizer_G.state_dict()["state"][0]["step"] == 3


def test_ema_generator_is_what_checkpoints_hold_as_g_and_resumes_exactly(tmp_path):
    torch.manual_seed(0)
    model = create_model(small_settings(tmp_path, "--ema_decay", "0.9"))
    model.setup()
    start = [p.detach().clone() for p in model.netG.parameters()]
    steps(model)
    ema, trained = list(model.netG_ema.parameters()), list(model.netG.parameters())
    moved = [(e - s).abs().sum() for e, s in zip(ema, start, strict=True)]
    behind = [(e - w).abs().sum() for e, w in zip(ema, trained, strict=True)]
    assert sum(moved) > 0
    assert sum(behind) > 0
    assert not any(p.requires_grad for p in ema)
    paths = model.save_networks("latest")
    assert [p.name for p in paths] == ["latest_net_G.pth", "latest_net_D.pth",
                                       "latest_net_G_train.pth"]
    resumed = create_model(small_settings(tmp_path, "--ema_decay", "0.9", "--continue_train"))
    resumed.setup()
    assert all(torch.equal(a, b) for a, b in zip(resumed.netG_ema.parameters(), ema, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(resumed.netG.parameters(), trained, strict=True))
    tester = create_model(small_settings(tmp_path, "--epoch", "latest", train=False))
    tester.setup()  # test.py's G is the average
    assert all(torch.equal(a, b.cpu()) for a, b in zip(tester.netG.parameters(), ema, strict=True))


@pytest.mark.parametrize("decay", ["1", "-0.1"])
def test_ema_decay_outside_0_1_is_refused(tmp_path, decay):
    with pytest.raises(ConfigError, match="--ema_decay"):
        create_model(small_settings(tmp_path, "--ema_decay", decay))
