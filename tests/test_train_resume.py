"""Crash safety of train.py: a run killed with SIGKILL mid-epoch and resumed with
``--continue_train`` ends where an uninterrupted run ends; a failed save keeps ``latest``."""

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train
from models.base_model import load_weights
from tests.conftest import CodeOnLoad, write_pair_tree

REPO = Path(__file__).resolve().parents[1]
#: Runs train.py, but SIGKILLs itself just before optimisation step ``argv[1]`` (0: never).
KILLER = f"""
import os, signal, sys
sys.path.insert(0, {str(REPO)!r})
import train
from models.pix2pix_model import Pix2PixModel

kill_at, steps, original = int(sys.argv[1]), [0], Pix2PixModel.optimize_parameters

def optimize_or_die(self):
    steps[0] += 1
    if steps[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    original(self)

Pix2PixModel.optimize_parameters = optimize_or_die
sys.exit(train.main(sys.argv[2:]))
"""


@pytest.fixture
def dataroot(tmp_path):
    """Three training patients of 4 slices of 64 x 64: 12 batches of 1 per epoch."""
    root = tmp_path / "data"
    write_pair_tree(root, "train", {"t1": (64, 64, 4), "t2": (64, 64, 4), "t3": (64, 64, 4)})
    return root


def train_argv(root, checkpoints, name, *extra):
    return ["--dataroot", str(root), "--checkpoints_dir", str(checkpoints), "--name", name,
            "--model", "pix2pix", "--dataset_mode", "nifti_aligned", "--axial_slice",
            "--netG", "unet_64", "--ngf", "4", "--ndf", "4", "--norm", "instance",
            "--gpu_ids", "-1", "--num_threads", "0", "--n_epochs", "1", "--n_epochs_decay", "1",
            "--save_latest_freq", "5", "--save_epoch_freq", "10", "--val_freq", "0",
            "--display_freq", "1000", "--print_freq", "1000", "--no_html", *extra]


def run_train(tmp_path, kill_at, argv):
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(script), str(kill_at), *argv], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, env=env)


def state(run_dir):
    return torch.load(run_dir / "latest_training_state.pth", weights_only=True)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(dataroot, tmp_path):
    ck = tmp_path / "ck"
    whole = run_train(tmp_path, 0, train_argv(dataroot, ck, "whole"))
    assert whole.returncode == 0, whole.stderr
    # latest is saved after 5, 10 and 15 slices; step 18 (epoch 2, batch 6) never runs
    killed = run_train(tmp_path, 18, train_argv(dataroot, ck, "killed"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert state(ck / "killed")["progress"] == {"epoch": 2, "batches_done": 3,
                                                "total_iters": 15}
    resumed = run_train(tmp_path, 0, train_argv(dataroot, ck, "killed", "--continue_train"))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr
    expected, got = state(ck / "whole"), state(ck / "killed")
    assert got["progress"] == expected["progress"] == {"epoch": 3, "batches_done": 0,
                                                       "total_iters": 24}
    for opt_expected, opt_got in zip(expected["optimizers"], got["optimizers"], strict=True):
        steps = {float(s["step"]) for s in opt_got["state"].values()}
        assert steps == {float(s["step"]) for s in opt_expected["state"].values()} == {24.0}
        for s_expected, s_got in zip(opt_expected["state"].values(), opt_got["state"].values(),
                                     strict=True):
            assert torch.equal(s_expected["exp_avg"], s_got["exp_avg"])
    assert got["schedulers"] == expected["schedulers"]
    for net in ("G", "D"):  # same weights, bit for bit (CPU, one thread, same seed)
        a = load_weights(ck / "whole" / f"latest_net_{net}.pth", torch.device("cpu"))
        b = load_weights(ck / "killed" / f"latest_net_{net}.pth", torch.device("cpu"))
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list((ck / "killed").glob(".*tmp*"))


def test_state_from_another_save_other_settings_or_with_code_is_refused(dataroot, tmp_path, caplog):
    ck = tmp_path / "ck"
    argv = train_argv(dataroot, ck, "run", "--n_epochs_decay", "0", "--max_dataset_size", "2")
    assert train.main(argv) == 0
    run_dir = ck / "run"
    assert train.main([*argv, "--continue_train", "--batch_size", "2"]) == 1
    assert "latest_training_state.pth: cannot resume" in caplog.text
    assert "batch_size 1 -> 2" in caplog.text
    caplog.clear()
    # the weights of one save with the state of another: a crash between the two files
    weights = load_weights(run_dir / "latest_net_G.pth", torch.device("cpu"))
    torch.save({k: v + 1 for k, v in weights.items()}, run_dir / "latest_net_G.pth")
    assert train.main([*argv, "--continue_train"]) == 1
    assert f"{run_dir / 'latest_training_state.pth'}: does not belong to" in caplog.text
    assert "latest_net_G.pth" in caplog.text
    caplog.clear()
    # a training state that would run code when unpickled is refused, and the code never runs
    marker = tmp_path / "code_ran"
    torch.save({"format_version": CodeOnLoad(marker)}, run_dir / "latest_training_state.pth")
    assert train.main([*argv, "--continue_train"]) == 1
    assert "latest_training_state.pth: refused, not a plain weights file" in caplog.text
    assert not marker.exists()


def test_full_disk_while_saving_keeps_previous_latest(dataroot, tmp_path, monkeypatch, caplog):
    argv = train_argv(dataroot, tmp_path / "ck", "run", "--n_epochs_decay", "0",
                      "--max_dataset_size", "4", "--save_latest_freq", "2")
    run_dir = tmp_path / "ck" / "run"
    writes = {"G": 0}
    real_write_bytes = Path.write_bytes

    def write_then_fill_disk(self, data):
        """The second write of latest_net_G.pth stops half-way: no space left."""
        if self.name.startswith(".latest_net_G.pth."):
            writes["G"] += 1
            if writes["G"] == 2:
                real_write_bytes(self, data[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_bytes(self, data)

    saved = {}
    real_save_state = train.save_training_state

    def remember(model, tag, at, plan):  # the files as they were after the first save
        path = real_save_state(model, tag, at, plan)
        saved.update({p.name: p.read_bytes() for p in run_dir.glob("latest_*")})
        return path

    monkeypatch.setattr(Path, "write_bytes", write_then_fill_disk)
    monkeypatch.setattr(train, "save_training_state", remember)
    assert train.main(argv) == 1
    assert f"{run_dir / 'latest_net_G.pth'}: writing failed" in caplog.text
    assert "No space left on device" in caplog.text
    assert writes["G"] == 2
    assert {p.name: p.read_bytes() for p in run_dir.glob("latest_*")} == saved
    assert json.loads(saved["latest_metadata.json"])["checkpoint"]["total_iters"] == 2
    assert not [p for p in run_dir.iterdir() if ".tmp" in p.name]
