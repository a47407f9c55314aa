"""Sample orders for lazily decoded volumes (``--volume_cache N``).

A uniform shuffle over all slices would ask for a different patient at almost every sample and
decode a volume per slice. :class:`PatientBlockSampler` shuffles patients, takes them ``block``
at a time and shuffles the slices within each block, so each process decodes each volume once
per epoch and batches still mix ``block`` patients. In a torchrun job every rank draws the same
order (from the seed and the epoch) and takes every ``world_size``-th sample of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class PatientBlockSampler(Sampler[int]):
    """Sample indices, patients ``block`` at a time, reshuffled per epoch (``set_epoch``).

    ``sample_patients``: the patient index of every sample. ``rank``/``world_size``: this
    process's share; every rank gets ``ceil(n / world_size)`` samples (the order wraps around).
    """

    def __init__(self, sample_patients: Sequence[int], *, block: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        if block < 1:
            raise ValueError(f"block must be at least 1 patient, got {block}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.by_patient: dict[int, list[int]] = {}
        for index, patient in enumerate(sample_patients):
            self.by_patient.setdefault(patient, []).append(index)
        self.n_samples = len(sample_patients)
        self.block, self.seed, self.rank, self.world_size = block, seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the order of ``epoch`` next."""
        self.epoch = epoch

    def order(self) -> list[int]:
        """The whole epoch's sample order, the same on every rank."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        patients = list(self.by_patient)
        patients = [patients[i] for i in torch.randperm(len(patients), generator=g).tolist()]
        out: list[int] = []
        for start in range(0, len(patients), self.block):
            samples = [i for p in patients[start:start + self.block] for i in self.by_patient[p]]
            out += [samples[i] for i in torch.randperm(len(samples), generator=g).tolist()]
        return out

    def __len__(self) -> int:
        """Samples this rank draws per epoch."""
        return math.ceil(self.n_samples / self.world_size)

    def __iter__(self) -> Iterator[int]:
        """This rank's samples of :meth:`order`, padded by wrapping to :meth:`__len__`."""
        order = self.order()
        total = len(self) * self.world_size
        order += order[:total - len(order)]
        return iter(order[self.rank:total:self.world_size])
