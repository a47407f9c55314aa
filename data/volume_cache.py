"""Slice stacks decoded on first use, the most recently used few kept: memory flat in patients.

With ``--volume_cache N`` the dataset reads only headers at start-up; a volume is decoded (once)
when a slice of it is first asked for and stays in memory while it is among the ``N`` most
recently used. Each DataLoader worker process holds its own cache.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from data.ct_volumes import SliceStack, load_slice_stack
from data.nifti_io import VolumeInfo, read_info

logger = logging.getLogger(__name__)


class LazyStacks(Sequence[SliceStack]):
    """The volumes at ``paths`` as :class:`SliceStack`, decoded on access, an LRU cache of
    ``capacity`` (>= 1) decoded stacks; ``infos`` (geometry) are read from headers at once."""

    def __init__(self, paths: Sequence[Path], capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1 volume, got {capacity}")
        self.paths = list(paths)
        self.capacity = capacity
        self.infos: list[VolumeInfo] = [read_info(p) for p in self.paths]
        self._cache: OrderedDict[int, SliceStack] = OrderedDict()
        self.decodes = 0  # volumes decoded so far (cache misses)

    def __len__(self) -> int:
        """Number of volumes."""
        return len(self.paths)

    def __getitem__(self, index: int) -> SliceStack:  # type: ignore[override]
        """Stack ``index``, decoded now unless cached; the least recently used is dropped."""
        if index < 0 or index >= len(self.paths):
            raise IndexError(f"volume {index} out of range 0..{len(self.paths) - 1}")
        stack = self._cache.pop(index, None)
        if stack is None:
            stack = load_slice_stack(self.paths[index])
            self.decodes += 1
            while len(self._cache) >= self.capacity:
                self._cache.popitem(last=False)
        self._cache[index] = stack
        return stack

    @property
    def cached_nbytes(self) -> int:
        """Bytes of voxels held now."""
        return sum(s.hu.nbytes for s in self._cache.values())
