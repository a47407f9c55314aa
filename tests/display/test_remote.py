"""visdom and wandb behind the training visualizer: pictures, losses, validation, and the
errors when a package or a server is missing."""

import sys
import types

import numpy as np
import pytest

from tests.display.test_visualizer import make_visualizer, make_visuals
from util.errors import ConfigError


@pytest.mark.parametrize(("kwargs", "package", "hint"), [
    ({"display_id": 1}, "visdom",
     "--display_id 1 needs the visdom package: pip install visdom, or use --display_id 0"),
    ({"use_wandb": True}, "wandb",
     "--use_wandb needs the wandb package: pip install wandb, or leave out --use_wandb"),
])
def test_missing_optional_package_is_config_error(tmp_path, monkeypatch, kwargs, package, hint):
    monkeypatch.setitem(sys.modules, package, None)  # makes `import package` fail
    with pytest.raises(ConfigError) as info:
        make_visualizer(tmp_path, **kwargs)
    assert str(info.value) == hint


def test_visdom_gets_pictures_and_loss_points(tmp_path, monkeypatch):
    calls = []

    class FakeVisdom:
        def __init__(self, **kwargs):
            calls.append(("init", kwargs))

        def check_connection(self):
            return True

        def image(self, img, win, opts):
            calls.append(("image", img.shape, img.dtype, win, opts["title"]))

        def line(self, Y, X, win, update, opts):  # visdom's argument names
            calls.append(("line", Y.tolist(), X.tolist(), win, update, opts["legend"]))

    monkeypatch.setitem(sys.modules, "visdom", types.SimpleNamespace(Visdom=FakeVisdom))
    vis = make_visualizer(tmp_path, display_id=3, display_port=9000, display_env="ct")
    vis.display_current_results(make_visuals(), 1, 100)
    vis.print_current_losses(1, 100, {"G_L1": 2.0, "D_real": 0.5}, 0.1, 0.1)
    vis.print_current_losses(1, 200, {"G_L1": 1.0, "D_real": 0.25}, 0.1, 0.1)
    assert calls == [
        ("init", {"server": "http://localhost", "port": 9000, "env": "ct"}),
        ("image", (6, 8), np.uint8, "3_real_A", "exp: real_A"),
        ("image", (6, 8), np.uint8, "3_fake_B", "exp: fake_B"),
        ("image", (6, 8), np.uint8, "3_real_B", "exp: real_B"),
        ("line", [[2.0, 0.5]], [[0.0, 0.0]], "3_loss", None, ["G_L1", "D_real"]),
        ("line", [[1.0, 0.25]], [[1.0, 1.0]], "3_loss", "append", ["G_L1", "D_real"]),
    ]


def test_visdom_without_server_is_config_error(tmp_path, monkeypatch):
    fake = types.SimpleNamespace(Visdom=lambda **_: types.SimpleNamespace(
        check_connection=lambda: False))
    monkeypatch.setitem(sys.modules, "visdom", fake)
    with pytest.raises(ConfigError, match=r"no visdom server answers at http://localhost:8097"):
        make_visualizer(tmp_path, display_id=1)


def test_wandb_gets_pictures_and_losses(tmp_path, monkeypatch):
    logged = []
    run = types.SimpleNamespace(log=logged.append)
    inits = []

    def init(**kwargs):
        inits.append(kwargs)
        return run

    fake = types.SimpleNamespace(run=None, init=init,
                                 Image=lambda img, caption: (img.shape, caption))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    vis = make_visualizer(tmp_path / "run", use_wandb=True, wandb_project="proj")
    vis.display_current_results(make_visuals(), 2, 50)
    vis.print_current_losses(2, 50, {"G_L1": 3.0}, 0.1, 0.1)
    assert inits == [{"project": "proj", "name": "exp", "dir": str(tmp_path / "run")}]
    assert logged[0]["real_A"] == ((6, 8), "real_A, epoch 2, iters 50, thorax (L -300, W 1600 HU)")
    assert (logged[0]["epoch"], logged[0]["total_iters"]) == (2, 50)
    assert logged[1] == {"G_L1": 3.0, "epoch": 2}


def test_validation_goes_to_visdom_and_wandb(tmp_path, monkeypatch):
    lines, logged = [], []

    class FakeVisdom:
        def __init__(self, **_):
            pass

        def check_connection(self):
            return True

        def line(self, Y, X, win, update, opts):  # visdom's argument names
            lines.append((Y.tolist(), X.tolist(), win, update, opts["legend"], opts["ylabel"]))

    fake_wandb = types.SimpleNamespace(run=types.SimpleNamespace(log=logged.append))
    monkeypatch.setitem(sys.modules, "visdom", types.SimpleNamespace(Visdom=FakeVisdom))
    monkeypatch.setitem(sys.modules, "wandb", fake_wandb)
    vis = make_visualizer(tmp_path, display_id=2, use_wandb=True)
    vis.log_validation(1, {"val_motion_mae_hu": 90.0, "baseline_motion_mae_hu": 100.0})
    vis.log_validation(2, {"val_motion_mae_hu": 80.0, "baseline_motion_mae_hu": 100.0})
    names = ["val_motion_mae_hu", "baseline_motion_mae_hu"]
    assert lines == [([[90.0, 100.0]], [[1.0, 1.0]], "2_val", None, names, "HU"),
                     ([[80.0, 100.0]], [[2.0, 2.0]], "2_val", "append", names, "HU")]
    assert logged == [{"val_motion_mae_hu": 90.0, "baseline_motion_mae_hu": 100.0, "epoch": 1},
                      {"val_motion_mae_hu": 80.0, "baseline_motion_mae_hu": 100.0, "epoch": 2}]
