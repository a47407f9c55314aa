"""The order in which training samples are served: fixed by (seed, epoch), resumable mid-epoch.

Each epoch's permutation depends only on the seed and the epoch number, never on how many epochs
this process has run, so a run resumed in epoch ``e`` serves the same batches as an
uninterrupted one; ``skip`` leaves out the samples already used before the interruption. The
interface (``set_epoch``) is that of ``torch.utils.data.DistributedSampler``.
"""

from __future__ import annotations

from collections.abc import Iterator

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
    ``shuffle`` is False; the first ``skip`` of them left out (see :meth:`set_epoch`)."""

    def __init__(self, n: int, *, shuffle: bool, seed: int) -> None:
        if n < 0:
            raise ValueError(f"sample count must be >= 0, got {n}")
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.epoch, self.skip = 1, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Serve ``epoch``'s order from position ``skip`` on (``skip`` samples already done)."""
        if not 0 <= skip <= self.n:
            raise ValueError(f"skip must be in [0, {self.n}], got {skip}")
        self.epoch, self.skip = epoch, skip

    def order(self) -> list[int]:
        """The whole order of the current epoch, skipped samples included."""
        if not self.shuffle:
            return list(range(self.n))
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return torch.randperm(self.n, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.order()[self.skip:])

    def __len__(self) -> int:
        return self.n - self.skip
