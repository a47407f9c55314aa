"""Sample orders: fixed by (seed, epoch), resumable with ``skip``, split over ranks."""

import pytest

from data.sampling import EpochSampler, PatientBlockSampler


def test_order_depends_on_seed_and_epoch_only():
    a, b = EpochSampler(20, shuffle=True, seed=5), EpochSampler(20, shuffle=True, seed=5)
    a.set_epoch(3)
    b.set_epoch(7)
    b.set_epoch(3)  # what ran before does not matter
    assert list(a) == list(b)
    assert sorted(a) == list(range(20))
    assert list(a) != list(range(20))
    other = EpochSampler(20, shuffle=True, seed=6)
    other.set_epoch(3)
    assert list(other) != list(a)
    a.set_epoch(4)
    assert list(a) != list(b)
    assert list(EpochSampler(5, shuffle=False, seed=5)) == [0, 1, 2, 3, 4]


def test_skip_serves_the_rest_of_the_same_epoch():
    sampler = EpochSampler(10, shuffle=True, seed=0)
    sampler.set_epoch(2)
    whole = list(sampler)
    sampler.set_epoch(2, skip=4)
    assert list(sampler) == whole[4:]
    assert len(sampler) == 6
    with pytest.raises(ValueError, match="skip must be in"):
        sampler.set_epoch(2, skip=11)


@pytest.mark.parametrize("n", [8, 7])
def test_ranks_share_one_order_evenly_and_skip_their_own_part(n):
    shares = []
    for rank in range(2):
        sampler = EpochSampler(n, shuffle=True, seed=1, rank=rank, world_size=2)
        sampler.set_epoch(1)
        shares.append(list(sampler))
    assert [len(s) for s in shares] == [4, 4]  # 7 samples: one repeated to even the shares
    assert set(shares[0]) | set(shares[1]) == set(range(n))
    assert len(set(shares[0]) & set(shares[1])) == 8 - n
    resumed = EpochSampler(n, shuffle=True, seed=1, rank=1, world_size=2)
    resumed.set_epoch(1, skip=2)
    assert list(resumed) == shares[1][2:]
    with pytest.raises(ValueError, match="rank 2"):
        EpochSampler(n, shuffle=True, seed=1, rank=2, world_size=2)


def test_patient_blocks_resume_like_the_plain_order():
    sampler = PatientBlockSampler([0, 0, 1, 1, 1, 2], block=2, seed=4)
    sampler.set_epoch(5)
    whole = list(sampler)
    sampler.set_epoch(5, skip=3)
    assert list(sampler) == whole[3:]
