"""One training at a time in a run folder: a second one is refused naming the first, a SIGKILLed
holder leaves no stale lock, and readers (test.py) are never blocked."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import train
from models.run_folder import clear_run
from models.run_lock import hold_run_lock, lock_path
from tests.test_test_outputs import _test_script
from tests.test_train_resume import train_argv
from tests.test_train_run_folder import snapshot
from tests.test_train_run_folder import trained as trained_run

REPO = Path(__file__).resolve().parents[2]
#: Takes the lock of the run folder ``argv[1]``, says so on stdout, then sleeps until killed.
HOLDER = f"""
import sys, time
sys.path.insert(0, {str(REPO)!r})
from models.run_lock import hold_run_lock
with hold_run_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def trained(tmp_path):
    """A dataroot and a run trained on it: (dataroot, checkpoints, run dir)."""
    return trained_run.__wrapped__(tmp_path)


@pytest.fixture
def holder(tmp_path):
    """Start a process holding the lock of a run folder: call it with the folder; it is
    SIGKILLed at the end of the test if still running."""
    started = []

    def start(run_dir: Path) -> subprocess.Popen:
        script = tmp_path / "holder.py"
        script.write_text(HOLDER)
        proc = subprocess.Popen([sys.executable, str(script), str(run_dir)],
                                stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def test_second_training_is_refused_while_one_runs_and_readers_go_on(trained, holder, caplog):
    root, ck, run_dir = trained
    argv = train_argv(root, ck, "run", "--n_epochs_decay", "0", "--n_epochs", "1",
                      "--continue_train")
    assert not lock_path(run_dir).exists()  # the finished training removed it
    proc = holder(run_dir)
    before = snapshot(run_dir)
    assert train.main(argv) == 1
    assert "another training is running in this run folder" in caplog.text
    assert f"pid {proc.pid} on host " in caplog.text
    assert "Nothing was written" in caplog.text
    assert "Traceback" not in caplog.text
    assert snapshot(run_dir) == before
    # test.py only reads: it runs while the folder is locked
    assert _test_script().main(["--dataroot", str(root), "--checkpoints_dir", str(ck),
                                "--name", "run", "--gpu_ids", "-1", "--results_dir",
                                str(ck.parent / "results"), "--no_pictures",
                                "--axial_slice"]) == 0
    # a SIGKILLed holder leaves its lock file, but no lock: the next training proceeds
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert lock_path(run_dir).exists()
    caplog.clear()
    assert train.main(argv) == 0, caplog.text
    assert not lock_path(run_dir).exists()


def test_a_training_refused_in_a_new_folder_leaves_no_folder(tmp_path, caplog):
    """The lock creates a missing run folder; a training refused by a later check (here: no
    data) removes it again, with the lock file."""
    ck = tmp_path / "ck"
    assert train.main(train_argv(tmp_path / "no_data", ck, "run")) == 1
    assert "no_data" in caplog.text
    assert not (ck / "run").exists()
    with hold_run_lock(ck / "run") as path:
        assert path.read_text().startswith(f"pid {os.getpid()} on host ")
    assert not (ck / "run").exists()


def test_overwrite_keeps_the_lock(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "latest_net_G.pth").write_bytes(b"x")
    (run_dir / "keep.txt").write_text("mine")
    with hold_run_lock(run_dir) as path:
        removed = clear_run(run_dir)
        assert path.exists()
        assert removed == [run_dir / "latest_net_G.pth"]
