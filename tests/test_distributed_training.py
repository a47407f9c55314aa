"""train.py under torchrun: two CPU processes (gloo) train one model with DistributedDataParallel.

Both ranks must end with identical weights, equal to rank 0's checkpoint, and rank 0 alone may
write files.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import write_pair_tree
from util.distributed import state_digest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
DIGEST = re.compile(r"\[rank (\d)\] train: weights digest: netG (\w+), netD (\w+)")
BATCHES_PER_RANK = 3  # 6 slices over 2 ranks, batch 1


def torchrun_train(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc_per_node 2 train.py ...`` on a tiny dataset."""
    root = tmp_path / "data"
    write_pair_tree(root, "train", {"t1": (64, 64, 4), "t2": (64, 64, 4)})
    write_pair_tree(root, "val", {"v1": (64, 64, 2)})
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "2", str(REPO / "train.py"), "--dataroot", str(root), "--checkpoints_dir",
            str(tmp_path / "ck"), "--name", "ddp", "--model", "pix2pix", "--dataset_mode",
            "nifti_aligned", "--preprocess", "none", "--input_nc", "1", "--output_nc", "1",
            "--axial_slice", "--norm", "instance", "--batch_size", "1", "--netG", "unet_64",
            "--ngf", "4", "--ndf", "4", "--gpu_ids", "-1", "--num_threads", "0",
            "--max_dataset_size", "6", "--n_epochs", "1", "--n_epochs_decay", "1",
            "--print_freq", "2", "--display_freq", "4", "--recipe", "pix2pix", *extra]
    return subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)


#: A motion generator on 3-D patches: 3 patches of each of the 2 volumes, 6 samples as above.
VOLUMETRIC = ("--dataset_mode", "nifti_volume", "--netG", "motion3d_3", "--patch_size", "8",
              "16", "16", "--patches_per_volume", "3", "--netD", "n_layers", "--n_layers_D", "1")


@pytest.mark.parametrize("kind", [(), VOLUMETRIC], ids=["slices", "motion3d"])
def test_two_gloo_processes_hold_identical_weights_and_rank0_alone_writes(tmp_path, kind):
    proc = torchrun_train(tmp_path, *kind)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    digests = {int(rank): (g, d) for rank, g, d in DIGEST.findall(log)}
    assert set(digests) == {0, 1}, log
    assert digests[0] == digests[1]
    run = tmp_path / "ck" / "ddp"
    for name, digest in zip("GD", digests[0], strict=True):
        state = torch.load(run / f"latest_net_{name}.pth", weights_only=True)
        assert state_digest(state) == digest
    # one writer: one header, one loss line per rank-0 batch (2 epochs), one record per epoch
    loss_log = (run / "loss_log.txt").read_text()
    assert loss_log.count("Training loss") == 1
    assert len((run / "loss_log.jsonl").read_text().splitlines()) == 2 * BATCHES_PER_RANK
    assert [json.loads(line)["epoch"] for line in
            (run / "val_log.jsonl").read_text().splitlines()] == [1, 2]
    assert re.findall(r"\[rank (\d)\] models.metadata: saved checkpoint", log)
    assert set(re.findall(r"\[rank (\d)\] models.metadata: saved checkpoint", log)) == {"0"}
    assert not list(run.rglob("*.tmp*"))
    assert "rank 1 of 2 (local rank 1), backend gloo" in log
    meta = json.loads((run / "latest_metadata.json").read_text())
    assert meta["checkpoint"]["total_iters"] == 2 * 2 * BATCHES_PER_RANK  # slices, all ranks


def test_wgangp_is_refused_with_several_processes(tmp_path):
    proc = torchrun_train(tmp_path, "--gan_mode", "wgangp")
    assert proc.returncode != 0
    assert "--gan_mode wgangp" in proc.stderr
    assert not (tmp_path / "ck" / "ddp" / "latest_net_G.pth").exists()
