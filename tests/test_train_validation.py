"""train.py with validation: the scores are logged and ``best`` follows the validation MAE."""

import json

import pytest

import train
from models.validation import Validator
from tests.conftest import write_pair_tree


@pytest.fixture
def dataroot(tmp_path):
    root = tmp_path / "data"
    write_pair_tree(root, "train", {"t1": (64, 64, 3), "t2": (64, 64, 3)})
    write_pair_tree(root, "val", {"v1": (64, 64, 4)})
    return root


def train_argv(root, tmp_path, *extra):
    return ["--dataroot", str(root), "--checkpoints_dir", str(tmp_path / "ck"), "--name", "run",
            "--model", "pix2pix", "--dataset_mode", "nifti_aligned", "--axial_slice",
            "--netG", "unet_64", "--ngf", "4", "--ndf", "4", "--norm", "instance",
            "--gpu_ids", "-1", "--num_threads", "0", "--max_dataset_size", "2",
            "--n_epochs", "3", "--n_epochs_decay", "0", "--save_epoch_freq", "10", "--recipe",
            "pix2pix", *extra]


def test_best_checkpoint_follows_the_validation_mae(dataroot, tmp_path, monkeypatch):
    # (motion, whole) MAE per epoch: epoch 3 has the lowest motion MAE but air and static
    # tissue 10 HU worse than epoch 2's; mean model/AVG ratio 0.625, 0.5, 0.625: best at 2
    scripted = iter([(30.0, 10.0), (20.0, 10.0), (15.0, 20.0)])

    def fake_call(self, net_g):  # noqa: ARG001
        motion, whole = next(scripted)
        return {"val_motion_mae_hu": motion, "val_body_mae_hu": motion / 2,
                "val_whole_mae_hu": whole, "baseline_motion_mae_hu": 40.0,
                "baseline_body_mae_hu": 15.0, "baseline_whole_mae_hu": 20.0}

    monkeypatch.setattr(Validator, "__call__", fake_call)
    assert train.main(train_argv(dataroot, tmp_path)) == 0
    run = tmp_path / "ck" / "run"
    best = json.loads((run / "best_metadata.json").read_text())
    assert best["validation"]["epoch"] == 2
    assert best["validation"]["mae_hu"]["val_motion_mae_hu"] == 20.0
    assert best["validation"]["patients"] == ["v1"]
    assert (run / "best_net_G.pth").is_file()
    latest = json.loads((run / "latest_metadata.json").read_text())
    assert latest["validation"]["epoch"] == 3
    records = [json.loads(line) for line in (run / "val_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    seconds = [r["train_seconds"] for r in records]  # the time axis of time_to_quality.py
    assert 0 < seconds[0] < seconds[1] < seconds[2]
    assert "validation" in (run / "loss_log.txt").read_text()
    assert train.previous_best(run) == pytest.approx(0.5)


def test_real_validation_scores_in_hu_and_can_be_switched_off(dataroot, tmp_path):
    assert train.main(train_argv(dataroot, tmp_path, "--n_epochs", "1")) == 0
    run = tmp_path / "ck" / "run"
    record = json.loads((run / "val_log.jsonl").read_text().splitlines()[0])
    # conftest's phase 0 is the AVG + 100 HU everywhere: the AVG's body MAE is exactly 100 HU
    assert record["metrics"]["baseline_body_mae_hu"] == pytest.approx(100.0, abs=0.01)
    assert record["metrics"]["val_body_mae_hu"] > 0
    assert train.main(train_argv(dataroot, tmp_path, "--n_epochs", "1", "--name", "off",
                                 "--val_freq", "0")) == 0
    assert not (tmp_path / "ck" / "off" / "best_metadata.json").exists()
    assert not (tmp_path / "ck" / "off" / "val_log.jsonl").exists()
