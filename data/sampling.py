"""The order in which training samples are served: fixed by (seed, epoch), resumable mid-epoch,
split between the processes of a torchrun job.

Each epoch's order depends only on the seed and the epoch number, never on how many epochs this
process has run, so a run resumed in epoch ``e`` serves the same batches as an uninterrupted one;
``skip`` leaves out this process's samples already used before the interruption. In a torchrun
job every rank draws the same order and takes every ``world_size``-th sample of it (padded by
wrapping around so that every rank runs the same number of steps), as
``torch.utils.data.DistributedSampler`` does, whose ``set_epoch`` interface this follows.

:class:`EpochSampler` shuffles all samples; :class:`PatientBlockSampler` serves lazily decoded
volumes (``--volume_cache N``): a uniform shuffle would ask for a different patient at almost
every sample and decode a volume per slice, so it shuffles patients, takes them ``block`` at a
time and shuffles the slices within each block (each volume decoded once per epoch, batches still
mixing ``block`` patients).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for ``epoch`` of a run seeded with ``seed`` (any ints; distinct pairs give
    unrelated seeds)."""
    words = np.random.SeedSequence([seed % 2**64, epoch % 2**64]).generate_state(2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


class EpochSampler(Sampler[int]):
    """Indices ``0 .. n - 1``: a permutation seeded by (``seed``, epoch), or in order when
    ``shuffle`` is False; this rank's share (``rank``/``world_size``), the first ``skip`` of it
    left out (see :meth:`set_epoch`)."""

    def __init__(self, n: int, *, shuffle: bool, seed: int, rank: int = 0,
                 world_size: int = 1) -> None:
        if n < 0:
            raise ValueError(f"sample count must be >= 0, got {n}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.skip = 1, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Serve ``epoch``'s order from position ``skip`` of this rank's share on (``skip``
        samples already done)."""
        if not 0 <= skip <= self.per_rank:
            raise ValueError(f"skip must be in [0, {self.per_rank}], got {skip}")
        self.epoch, self.skip = epoch, skip

    def order_settings(self) -> dict[str, int]:
        """What fixes the order of every epoch (seed, sample count, shuffle, processes): a run
        resumed mid-epoch must have the same."""
        return {"seed": self.seed, "slices": self.n, "shuffle": int(self.shuffle),
                "world_size": self.world_size}

    @property
    def per_rank(self) -> int:
        """Samples each rank serves in a whole epoch."""
        return math.ceil(self.n / self.world_size)

    def generator(self) -> torch.Generator:
        """The random generator of the current epoch, the same on every rank."""
        return torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))

    def order(self) -> list[int]:
        """The whole order of the current epoch, all ranks', skipped samples included."""
        if not self.shuffle:
            return list(range(self.n))
        return torch.randperm(self.n, generator=self.generator()).tolist()

    def __iter__(self) -> Iterator[int]:
        order = self.order()
        total = self.per_rank * self.world_size
        order += order[:total - len(order)]
        return iter(order[self.rank:total:self.world_size][self.skip:])

    def __len__(self) -> int:
        return self.per_rank - self.skip


class PatientBlockSampler(EpochSampler):
    """Sample indices, patients ``block`` at a time, reshuffled per epoch.

    ``sample_patients``: the patient index of every sample. Ranks and ``skip`` as in
    :class:`EpochSampler`.
    """

    def __init__(self, sample_patients: Sequence[int], *, block: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        super().__init__(len(sample_patients), shuffle=True, seed=seed, rank=rank,
                         world_size=world_size)
        if block < 1:
            raise ValueError(f"block must be at least 1 patient, got {block}")
        self.block = block
        self.by_patient: dict[int, list[int]] = {}
        for index, patient in enumerate(sample_patients):
            self.by_patient.setdefault(patient, []).append(index)

    def order_settings(self) -> dict[str, int]:
        """The plain sampler's settings and the number of patients per block."""
        return super().order_settings() | {"patient_block": self.block}

    def order(self) -> list[int]:
        """The whole epoch's sample order, the same on every rank."""
        g = self.generator()
        patients = list(self.by_patient)
        patients = [patients[i] for i in torch.randperm(len(patients), generator=g).tolist()]
        out: list[int] = []
        for start in range(0, len(patients), self.block):
            samples = [i for p in patients[start:start + self.block] for i in self.by_patient[p]]
            out += [samples[i] for i in torch.randperm(len(samples), generator=g).tolist()]
        return out
