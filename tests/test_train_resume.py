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
from display.curves import read_jsonl
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
            "--display_freq", "1000", "--print_freq", "1000", "--no_html", "--recipe", "pix2pix",
            *extra]


def run_train(tmp_path, kill_at, argv):
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(script), str(kill_at), *argv], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, env=env)


def state(run_dir):
    return torch.load(run_dir / "latest_training_state.pth", weights_only=True)


#: A motion generator on 3-D patches (8 x 16 x 16 voxels, the 4-slice volumes padded with
#: air): 4 patches per volume, so an epoch has the 12 batches of the slice runs.
VOLUMETRIC = ("--dataset_mode", "nifti_volume", "--netG", "motion3d_3", "--patch_size", "8",
              "16", "16", "--patches_per_volume", "4", "--netD", "n_layers", "--n_layers_D", "1")


@pytest.mark.slow
@pytest.mark.parametrize("kind", [(), VOLUMETRIC], ids=["slices", "motion3d"])
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(dataroot, tmp_path, kind):
    ck = tmp_path / "ck"
    whole = run_train(tmp_path, 0, train_argv(dataroot, ck, "whole", *kind))
    assert whole.returncode == 0, whole.stderr
    # latest is saved after 5, 10 and 15 samples; step 18 (epoch 2, batch 6) never runs
    killed = run_train(tmp_path, 18, train_argv(dataroot, ck, "killed", *kind))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert state(ck / "killed")["progress"] == {"epoch": 2, "batches_done": 3,
                                                "total_iters": 15}
    resumed = run_train(tmp_path, 0, train_argv(dataroot, ck, "killed", *kind,
                                                 "--continue_train"))
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


#: Runs train.py, SIGKILLing itself at event ``argv[1]`` of the saves of ``latest``: events are
#: the writes of temp files (killed half-way through), the renames, and the journal's deletion,
#: numbered from 1 in the order they happen. Each event is appended to ``argv[2]``.
SET_KILLER = f"""
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {str(REPO)!r})
import train

kill_at, log, events = int(sys.argv[1]), Path(sys.argv[2]), [0]
real_write, real_replace, real_unlink = Path.write_bytes, os.replace, Path.unlink

def event(kind, name):
    if "latest" not in name:
        return False
    events[0] += 1
    with log.open("a") as f:
        f.write(f"{{events[0]}} {{kind}} {{name}}\\n")
    return events[0] == kill_at

def write_bytes(self, data):
    if event("write", self.name):
        real_write(self, data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    return real_write(self, data)

def replace(src, dst, *a, **k):
    if event("replace", Path(dst).name):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst, *a, **k)

def unlink(self, *a, **k):
    if self.name.endswith(".commit.json") and event("unlink", self.name):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_unlink(self, *a, **k)

Path.write_bytes, os.replace, Path.unlink = write_bytes, replace, unlink
sys.exit(train.main(sys.argv[3:]))
"""


def run_set_killer(tmp_path, kill_at, argv, log):
    script = tmp_path / "set_killer.py"
    script.write_text(SET_KILLER)
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(script), str(kill_at), str(log), *argv],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)


def weights(run_dir, net):
    return load_weights(run_dir / f"latest_net_{net}.pth", torch.device("cpu"))


def same_weights(run_a, run_b):
    return all(torch.equal(weights(run_a, n)[k], weights(run_b, n)[k])
               for n in ("G", "D") for k in weights(run_a, n))


@pytest.mark.slow
def test_sigkill_at_every_write_of_the_checkpoint_set_resumes_exactly(dataroot, tmp_path):
    """latest is saved after 5, 10, 15, 20 and 24 slices; each save is 11 events (4 members
    and the journal written, 5 renames, the journal deleted). Killing at each event of the
    second save, then resuming, ends with the weights of the uninterrupted run: from the first
    save until the journal is in place, from the second after."""
    ck = tmp_path / "ck"
    log = tmp_path / "events_whole.txt"
    whole = run_set_killer(tmp_path, 0, train_argv(dataroot, ck, "whole"), log)
    assert whole.returncode == 0, whole.stderr
    events = log.read_text().splitlines()
    assert len(events) == 5 * 11
    second_save = events[11:22]
    kinds = [line.split()[1] for line in second_save]
    assert kinds == ["write"] * 5 + ["replace"] * 5 + ["unlink"]
    names = {line.split()[2] for line in second_save}
    assert {"latest_net_G.pth", "latest_net_D.pth", "latest_metadata.json",
            "latest_training_state.pth", ".latest.commit.json"} <= names
    for line in second_save:
        number, kind, _ = line.split()
        run = f"kill{number}"
        killed = run_set_killer(tmp_path, int(number), train_argv(dataroot, ck, run),
                                tmp_path / f"{run}.txt")
        assert killed.returncode == -signal.SIGKILL, (line, killed.stderr)
        left = sorted(p.name for p in (ck / run).iterdir() if ".tmp" in p.name)
        assert bool(left) == (kind != "unlink"), (line, left)
        resumed = run_train(tmp_path, 0, train_argv(dataroot, ck, run, "--continue_train"))
        assert resumed.returncode == 0, (line, resumed.stderr)
        committed = int(number) >= 18  # the journal is in place from event 18 on
        assert f"epoch 1 after {10 if committed else 5} batches" in resumed.stderr, line
        assert ("completed the interrupted save of the 'latest'" in resumed.stderr) == committed
        if not committed:  # the staged files were never part of a complete set
            assert f"removed {len(left)} temporary files" in resumed.stderr, line
        assert not [p for p in (ck / run).iterdir() if ".tmp" in p.name or ".commit" in p.name]
        assert state(ck / run)["progress"] == state(ck / "whole")["progress"], line
        assert same_weights(ck / "whole", ck / run), line


@pytest.mark.parametrize("failing_write", [1, 2, 3, 4, 5])
def test_full_disk_at_each_write_of_the_set_keeps_the_previous_set_and_resumes(
        dataroot, tmp_path, monkeypatch, caplog, failing_write):
    """The disk fills during write ``failing_write`` of the second save of latest (G, D,
    metadata, training state, journal): the run stops with one line naming the file, the first
    save is intact, no temp file is left, and --continue_train ends as an uninterrupted run."""
    torch.set_num_threads(1)
    argv = train_argv(dataroot, tmp_path / "ck", "run", "--n_epochs_decay", "0",
                      "--save_latest_freq", "4")
    assert train.main(train_argv(dataroot, tmp_path / "ck", "whole", "--n_epochs_decay", "0",
                                 "--save_latest_freq", "4")) == 0
    run_dir = tmp_path / "ck" / "run"
    writes = []
    real_write_bytes = Path.write_bytes

    def write_then_fill_disk(self, data):
        if "latest" in self.name and ".tmp" in self.name:
            writes.append(self.name)
            if len(writes) == 5 + failing_write:
                real_write_bytes(self, data[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_then_fill_disk)
    assert train.main(argv) == 1
    monkeypatch.undo()
    if failing_write < 5:
        failed = writes[-1].split(".tmp")[0].lstrip(".").rsplit(".", 1)[0]
        assert f"{run_dir / failed}: writing failed" in caplog.text
    else:  # the journal
        assert f"{run_dir}: the 'latest' set could not be saved" in caplog.text
    assert "the previous 'latest' files, if any, are unchanged" in caplog.text
    assert "No space left on device" in caplog.text
    assert not [p for p in run_dir.iterdir() if ".tmp" in p.name or ".commit" in p.name]
    assert state(run_dir)["progress"]["total_iters"] == 4  # the first save, whole
    assert json.loads((run_dir / "latest_metadata.json").read_text()
                      )["checkpoint"]["total_iters"] == 4
    caplog.clear()
    assert train.main([*argv, "--continue_train"]) == 0, caplog.text
    assert same_weights(tmp_path / "ck" / "whole", run_dir)


def loss_points(run_dir):
    """(epoch, iters) of every loss line of loss_log.txt, in order."""
    return [line.split(", time")[0] for line in
            (run_dir / "loss_log.txt").read_text().splitlines() if line.startswith("(epoch:")]


@pytest.mark.slow
def test_resume_with_an_image_pool_and_a_loss_log_matches_uninterrupted_run(dataroot, tmp_path):
    """--pool_size 2: the pool's images and random state are in the training state, so the
    resumed run ends with the uninterrupted run's weights; the lines the killed run logged after
    its last save of latest (slices 16 and 17) are dropped at the resume, not repeated."""
    ck = tmp_path / "ck"
    extra = ("--pool_size", "2", "--print_freq", "1")
    whole = run_train(tmp_path, 0, train_argv(dataroot, ck, "whole", *extra))
    assert whole.returncode == 0, whole.stderr
    killed = run_train(tmp_path, 18, train_argv(dataroot, ck, "killed", *extra))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(read_jsonl(ck / "killed" / "loss_log.jsonl")) == 17
    resumed = run_train(tmp_path, 0, train_argv(dataroot, ck, "killed", *extra,
                                                 "--continue_train"))
    assert resumed.returncode == 0, resumed.stderr
    assert same_weights(ck / "whole", ck / "killed")
    expected = read_jsonl(ck / "whole" / "loss_log.jsonl")
    assert len(expected) == 24
    assert read_jsonl(ck / "killed" / "loss_log.jsonl") == expected
    assert loss_points(ck / "killed") == loss_points(ck / "whole")
    assert "(resumed at epoch 2 after 3 slices; 2 lines logged after that point" in (
        ck / "killed" / "loss_log.txt").read_text()
