"""benchmarks/time_to_quality.py (curves and their crossings) and benchmarks/bench_peer.py (a run
against a stand-in peer checkout)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import time_to_quality as ttq

ROOT = Path(__file__).resolve().parents[1]


def write_val_log(run: Path, ratios: list[float], avg: float = 200.0) -> None:
    run.mkdir(parents=True)
    lines = [json.dumps({"epoch": e + 1, "train_seconds": 30.0 * (e + 1),
                         "metrics": {"val_motion_mae_hu": r * avg,
                                     "baseline_motion_mae_hu": avg}})
             for e, r in enumerate(ratios)]
    (run / "val_log.jsonl").write_text("\n".join(lines) + "\n")


def test_curves_are_read_and_their_first_crossings_timed(tmp_path):
    write_val_log(tmp_path / "before", [0.7, 0.52, 0.45, 0.41, 0.38, 0.42])
    write_val_log(tmp_path / "recipe", [0.6, 0.48, 0.39])
    curves = {label: ttq.read_curve(tmp_path / label) for label in ("before", "recipe")}
    assert [p["epoch"] for p in curves["before"]] == [1, 2, 3, 4, 5, 6]
    assert curves["recipe"][1]["ratio"] == pytest.approx(0.48)
    assert ttq.first_crossing(curves["before"], 0.4)["epoch"] == 5  # not the later 0.42
    assert ttq.first_crossing(curves["recipe"], 0.3) is None
    rows = {r["variant"]: r for r in ttq.summary(curves)}
    assert rows["before"]["epoch_0.5"] == 3
    assert rows["before"]["minutes_0.4"] == pytest.approx(150.0 / 60)
    assert rows["recipe"]["minutes_0.5"] == pytest.approx(1.0)
    assert rows["before"]["best_ratio"] == pytest.approx(0.38)
    assert rows["recipe"]["s_per_epoch"] == pytest.approx(30.0)
    assert ttq.read_curve(tmp_path / "not_started") == []
    ttq.plot(curves, tmp_path / "curve.png", "test")
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_every_variant_is_a_train_command_with_the_recipe(tmp_path):
    for label in ttq.VARIANTS:
        cmd = ttq.train_command(tmp_path / "d", tmp_path, label, epochs=10)
        assert cmd[1] == "train.py"
        assert cmd[cmd.index("--n_epochs") + 1] == "5"
        assert "--residual" in cmd
        assert cmd[cmd.index("--val_freq") + 1] == "1"


STAND_IN_PEER = '''
import torch
from torch import nn


def define_G(input_nc, output_nc, ngf, netG, norm="batch", use_dropout=False,
             init_type="normal", init_gain=0.02, gpu_ids=()):
    return nn.Sequential(nn.Conv2d(input_nc, 4, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(4, output_nc, 3, padding=1), nn.Tanh())


def define_D(input_nc, ndf, netD, n_layers_D=3, norm="batch", init_type="normal",
             init_gain=0.02):
    return nn.Sequential(nn.Conv2d(input_nc, 4, 4, stride=2), nn.LeakyReLU(0.2),
                         nn.Conv2d(4, 1, 4))


class GANLoss(nn.Module):
    def __init__(self, gan_mode):
        super().__init__()
        self.loss = nn.BCEWithLogitsLoss()

    def __call__(self, prediction, real):
        return self.loss(prediction, torch.full_like(prediction, float(real)))
'''


@pytest.mark.slow
def test_bench_peer_times_both_sides_on_the_same_work(tmp_path):
    peer = tmp_path / "peer"
    (peer / "models").mkdir(parents=True)
    (peer / "models" / "__init__.py").write_text("")
    (peer / "models" / "networks.py").write_text(STAND_IN_PEER)
    out = tmp_path / "rows.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_peer.py", "--peer", str(peer), "--configs",
         "unet_64:64:2", "--variants", "small=--ngf 8 --ndf 8 --amp off", "--steps", "2",
         "--warmup", "1", "--rounds", "1", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {r["side"]: r for r in json.loads(out.read_text())}
    assert set(rows) == {"peer", "project small"}
    peer_s = rows["peer"]["s_per_iter"]
    for row in rows.values():
        assert row["s_per_iter"] > 0
        assert row["peak_mib"] > 100  # a process with torch loaded
        assert row["speedup"] == pytest.approx(peer_s / row["s_per_iter"])
        assert row["gflop_per_iter"] > 0
    assert "| unet_64:64:2 | project small |" in result.stdout
    missing = subprocess.run([sys.executable, "benchmarks/bench_peer.py", "--peer",
                              str(tmp_path / "nowhere")], cwd=ROOT, capture_output=True,
                             text=True, check=False)
    assert missing.returncode != 0
    assert "no models/networks.py" in missing.stderr
