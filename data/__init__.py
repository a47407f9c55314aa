"""Datasets by name: ``--dataset_mode Y`` loads the class in ``data/Y_dataset.py``.

Contract of a dataset module: a subclass of :class:`data.base_dataset.BaseDataset` named
``<Y>Dataset`` (case-insensitive, underscores dropped) with ``modify_commandline_options``
(options, at the parser), ``from_settings`` (the registry's constructor, given the run's
:class:`data.settings.DataSettings`), ``__len__`` and ``__getitem__`` returning a dict with at
least ``A`` and ``A_paths``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader

from data.base_dataset import BaseDataset
from data.sampling import EpochSampler
from data.settings import DataSettings
from util.registry import available_names, find_class


def available_dataset_modes() -> list[str]:
    """Valid ``--dataset_mode`` names."""
    return available_names("data", "dataset")


def find_dataset_using_name(name: str) -> type[BaseDataset]:
    """The dataset class for ``--dataset_mode name``; ConfigError listing valid names otherwise."""
    # The abstract base is only an issubclass test here, never instantiated; mypy refuses
    # any abstract class where type[T] is expected.
    return find_class("data", "dataset", name, BaseDataset)  # type: ignore[type-abstract]


def get_option_setter(name: str) -> Callable[[argparse.ArgumentParser, bool],
                                             argparse.ArgumentParser]:
    """The dataset's ``modify_commandline_options`` static method."""
    return find_dataset_using_name(name).modify_commandline_options


def create_dataset(settings: DataSettings) -> BaseDataset:
    """The dataset ``settings.dataset_mode`` names, built from ``settings``."""
    return find_dataset_using_name(settings.dataset_mode).from_settings(settings)


def create_dataloader(dataset: BaseDataset, *, batch_size: int, num_workers: int,
                      shuffle: bool = False, seed: int = 0, sampler: EpochSampler | None = None,
                      pin_memory: bool = False, drop_last: bool = False) -> DataLoader:
    """A DataLoader over ``dataset`` in the order of ``sampler``, by default an
    :class:`EpochSampler` (shuffled when ``shuffle``): each epoch's order is fixed by (``seed``,
    epoch) and chosen with ``loader.sampler.set_epoch``. Worker processes, when any, persist
    across epochs."""
    generator = torch.Generator()  # seeds the worker processes only
    generator.manual_seed(torch.initial_seed() % 2**63)
    if sampler is None:
        sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=seed)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      pin_memory=pin_memory, drop_last=drop_last, generator=generator,
                      persistent_workers=num_workers > 0)
