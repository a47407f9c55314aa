"""A trained run's folder is never changed by a training that is then refused, a new training
does not silently replace it, and a refusal says what the weights hold."""

import json
from pathlib import Path

import pytest
import torch

import train
from tests.conftest import write_pair_tree
from tests.test_test_outputs import _test_script
from tests.test_train_resume import train_argv


def snapshot(folder: Path) -> dict[str, bytes]:
    """{relative path: bytes} of every file below ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture
def trained(tmp_path):
    """A dataroot and a run trained on it (unet_64, ngf 4): (dataroot, checkpoints, run dir)."""
    root = tmp_path / "data"
    write_pair_tree(root, "train", {"t1": (64, 64, 3), "t2": (64, 64, 3)})
    write_pair_tree(root, "test", {"s1": (64, 64, 3)})
    ck = tmp_path / "ck"
    argv = train_argv(root, ck, "run", "--n_epochs_decay", "0", "--n_epochs", "1")
    assert train.main(argv) == 0
    return root, ck, ck / "run"


def test_refused_trainings_leave_the_run_folder_byte_identical(trained, caplog):
    root, ck, run_dir = trained
    before = snapshot(run_dir)
    base = train_argv(root, ck, "run", "--n_epochs_decay", "0", "--n_epochs", "1")
    refusals = {
        # a new training in a trained run's folder, another architecture
        ("--ngf", "8"): ["holds a trained run", "--ngf 4 -> 8", "--continue_train",
                         "--overwrite"],
        # the same architecture: still a trained run that would be replaced
        ("--lr", "0.001"): ["holds a trained run (latest_net_D.pth, latest_net_G.pth)"],
        # a slice size the generator cannot take, even with --overwrite
        ("--netG", "unet_128", "--overwrite"): ["unet_128"],
        # resuming with weights of another architecture
        ("--continue_train", "--ngf", "8"): ["does not fit the network built from the options",
                                             "the file holds a U-Net of 6 levels (--netG "
                                             "unet_64), --ngf 4"],
        ("--continue_train", "--overwrite"): ["give one of them"],
    }
    for extra, expected in refusals.items():
        caplog.clear()
        assert train.main([*base, *extra]) == 1, extra
        for text in expected:
            assert text in caplog.text, (extra, caplog.text)
        assert snapshot(run_dir) == before, extra
    # the trained run still tests
    script = _test_script()
    assert script.main(["--dataroot", str(root), "--checkpoints_dir", str(ck), "--name", "run",
                        "--gpu_ids", "-1", "--results_dir", str(ck.parent / "results"),
                        "--no_pictures", "--axial_slice"]) == 0


def test_overwrite_replaces_the_whole_earlier_run(trained):
    root, ck, run_dir = trained
    (run_dir / "7_net_G.pth").write_bytes((run_dir / "latest_net_G.pth").read_bytes())
    (run_dir / "notes.txt").write_text("mine")
    argv = train_argv(root, ck, "run", "--n_epochs_decay", "0", "--n_epochs", "1", "--ngf", "8")
    assert train.main([*argv, "--overwrite"]) == 0
    assert json.loads((run_dir / "opt.json").read_text())["ngf"] == 8
    assert not (run_dir / "7_net_G.pth").exists()  # no checkpoint of the earlier run is left
    assert (run_dir / "notes.txt").read_text() == "mine"  # files it did not write stay
    weights = torch.load(run_dir / "latest_net_G.pth", weights_only=True)
    assert weights["encoders.0.0.weight"].shape[0] == 8


def test_refusal_describes_the_weights_not_stale_metadata(trained, caplog):
    """The metadata says unet_64 / ngf 4 (as trained); the weights file is replaced by one of
    ngf 8, 5 input channels: the refusal describes the file."""
    root, ck, run_dir = trained
    from models.networks import define_G
    other = define_G(5, 1, 8, "unet_64", norm="instance", residual=True)
    torch.save(other.state_dict(), run_dir / "latest_net_G.pth")
    assert json.loads((run_dir / "latest_metadata.json").read_text())["architecture"]["ngf"] == 4
    script = _test_script()
    assert script.main(["--dataroot", str(root), "--checkpoints_dir", str(ck), "--name", "run",
                        "--gpu_ids", "-1", "--results_dir", str(ck.parent / "results"),
                        "--no_pictures", "--axial_slice"]) == 1
    assert ("the file holds a U-Net of 6 levels (--netG unet_64), --ngf 8, --input_nc 5, "
            "--output_nc 1, instance norm or no norm (no running statistics), residual output "
            "(--residual)") in caplog.text
    assert "built from the options (a U-Net of 6 levels (--netG unet_64), --ngf 4" in caplog.text
