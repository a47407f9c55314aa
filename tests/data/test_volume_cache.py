"""Lazily decoded volumes (``--volume_cache N``) and the patient-block sampler for them."""

import numpy as np
import pytest
import torch

import train
from data.sampling import PatientBlockSampler
from tests.conftest import write_nifti, write_pair_tree
from tests.data.test_nifti_aligned_dataset import train_set
from tests.test_train_validation import train_argv
from util.errors import ConfigError, DataError

PATIENTS = {"p1": (16, 16, 3), "p2": (16, 16, 5), "p3": (32, 32, 4)}


def test_lazy_dataset_serves_what_the_eager_one_does(tmp_path):
    write_pair_tree(tmp_path, "train", PATIENTS)
    eager = train_set(tmp_path)
    lazy = train_set(tmp_path, volume_cache=1)
    assert lazy.stacks_a.decodes == 0  # headers only at start-up
    assert lazy.slice_shapes() == eager.slice_shapes() == {(16, 16), (32, 32)}
    assert len(lazy) == len(eager) == 12
    assert lazy.volume_info(2).shape == eager.volume_info(2).shape
    assert lazy.stacks_a.decodes == 0
    for i in range(len(eager)):
        for key in ("A", "B"):
            assert torch.equal(lazy[i][key], eager[i][key])
    assert lazy.stacks_a.decodes == 3  # in patient order: each volume once


def test_cache_keeps_the_most_recently_used_volumes(tmp_path):
    write_pair_tree(tmp_path, "train", PATIENTS)
    lazy = train_set(tmp_path, volume_cache=2)
    stacks = lazy.stacks_a
    for v in (0, 1, 0, 2, 0, 1):  # 1 is dropped when 2 comes, 0 stays the most recent
        stacks[v]
    assert stacks.decodes == 4
    assert stacks.cached_nbytes == stacks[0].hu.nbytes + stacks[1].hu.nbytes
    assert stacks[0].hu.dtype == np.int16
    assert stacks.decodes == 4


def test_lazy_dataset_checks_geometry_and_options_at_start_up(tmp_path):
    write_pair_tree(tmp_path, "train", {"p1": (16, 16, 3)})
    write_nifti(tmp_path / "trainB" / "p1.nii.gz", torch.zeros(16, 16, 4).numpy())
    with pytest.raises(DataError, match="shapes differ"):
        train_set(tmp_path, volume_cache=1)
    with pytest.raises(ConfigError, match="--volume_cache must be 0"):
        train_set(tmp_path, volume_cache=-1)


def test_block_sampler_covers_every_sample_once_per_epoch_in_patient_blocks():
    patients = [0] * 4 + [1] * 3 + [2] * 5 + [3] * 2
    sampler = PatientBlockSampler(patients, block=2, seed=3)
    order = list(sampler)
    assert sorted(order) == list(range(len(patients)))
    blocks = []  # the patients of consecutive runs drawn from one block
    seen: set[int] = set()
    for i in order:
        seen.add(patients[i])
        if len(seen) > 2:
            blocks.append(seen - {patients[i]})
            seen = {patients[i]}
    blocks.append(seen)
    assert all(len(b) <= 2 for b in blocks)
    assert sum(len(b) for b in blocks) == 4  # no patient comes back in a later block
    assert list(sampler) == order
    sampler.set_epoch(2)  # epochs count from 1
    assert list(sampler) != order


def test_block_sampler_splits_one_order_over_ranks():
    patients = [0] * 4 + [1] * 3
    shares = [list(PatientBlockSampler(patients, block=1, seed=0, rank=r, world_size=2))
              for r in range(2)]
    assert [len(s) for s in shares] == [4, 4]
    assert set(shares[0]) | set(shares[1]) == set(range(7))
    assert len(set(shares[0]) & set(shares[1])) == 1  # one sample repeated to even the shares
    with pytest.raises(ValueError, match="rank 2"):
        PatientBlockSampler(patients, block=1, rank=2, world_size=2)


def test_training_with_lazy_volumes(tmp_path, caplog):
    root = tmp_path / "data"
    write_pair_tree(root, "train", {"t1": (64, 64, 3), "t2": (64, 64, 3)})
    with caplog.at_level("INFO"):
        assert train.main(train_argv(root, tmp_path, "--volume_cache", "1", "--n_epochs",
                                     "1", "--val_freq", "0")) == 0
    assert "volumes decoded on use, at most 1 per side" in caplog.text
    assert (tmp_path / "ck" / "run" / "latest_net_G.pth").is_file()
