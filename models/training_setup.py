"""What training checks and how it orders samples, before a step runs: shared by ``train.py``
and the benchmarks that train (``benchmarks/bench_clinical.py``).

- :func:`check_sizes`: refuse slice (2-D) or patch (3-D) sizes the chosen generator or
  PatchGAN cannot take, and a generator of the wrong kind for the dataset;
- :func:`training_sampler`: this process's share of the samples, in train.py's order.
"""

from __future__ import annotations

import argparse

from data.base_dataset import BaseDataset
from data.nifti_aligned_dataset import NiftiAlignedDataset
from data.nifti_volume_dataset import NiftiVolumeDataset
from data.sampling import EpochSampler, PatientBlockSampler
from models.networks import (
    DISCRIMINATORS,
    check_slice_size,
    check_volume_size,
    is_volumetric,
    patch_min_side,
)
from util.errors import ConfigError


def network_slice_sizes(dataset: BaseDataset, opt: argparse.Namespace) -> set[tuple[int, int]]:
    """(H, W) sizes, in pixels, of the slices the generator will see."""
    if opt.resize_to > 0:
        return {(opt.resize_to, opt.resize_to)}
    if isinstance(dataset, NiftiAlignedDataset):
        return dataset.slice_shapes()
    return {(opt.crop_size, opt.crop_size)} if opt.preprocess != "none" else set()


def check_sizes(dataset: BaseDataset, opt: argparse.Namespace) -> None:
    """Refuse, before any training, slice (2-D) or patch (3-D) sizes the chosen generator cannot
    take, and a generator of the wrong kind for the dataset."""
    volumes = isinstance(dataset, NiftiVolumeDataset)
    if is_volumetric(opt.netG) != volumes:
        raise ConfigError(f"--netG {opt.netG} is a {'3-D' if is_volumetric(opt.netG) else '2-D'}"
                          f" generator, but --dataset_mode {opt.dataset_mode} serves "
                          f"{'3-D patches' if volumes else '2-D images'}: pair unet3d_*/"
                          f"motion3d_* with --dataset_mode nifti_volume, the others with "
                          f"nifti_aligned")
    if isinstance(dataset, NiftiVolumeDataset):
        for depth, height, width in sorted(dataset.patch_shapes()):
            check_volume_size(opt.netG, depth, height, width)
            check_discriminator_size(opt, (depth, height, width))
        return
    for height, width in sorted(network_slice_sizes(dataset, opt)):
        check_slice_size(opt.netG, height, width)


def check_discriminator_size(opt: argparse.Namespace, sides: tuple[int, ...]) -> None:
    """ConfigError unless the PatchGAN ``--netD`` takes inputs of ``sides`` (voxels)."""
    spec = DISCRIMINATORS[opt.netD]
    if spec.family == "pixel":
        return
    n_layers = opt.n_layers_D if spec.n_layers is None else spec.n_layers
    least = patch_min_side(n_layers)
    if min(sides) < least:
        fits = max(1, (min(sides) // 3).bit_length() - 1)
        raise ConfigError(f"patches of {'x'.join(map(str, sides))} voxels are too small for the "
                          f"{n_layers}-layer PatchGAN (--netD {opt.netD}), which needs {least} "
                          f"on every side: use --netD n_layers --n_layers_D {fits}, --netD "
                          f"pixel, or a larger --patch_size")


def training_sampler(dataset: BaseDataset, opt: argparse.Namespace, *, rank: int = 0,
                     world_size: int = 1) -> EpochSampler:
    """This rank's share of the slices, in an order fixed by (``--seed``, epoch): patient blocks
    for lazily decoded volumes (each decoded once per epoch), else a shuffle of all slices (in
    order with ``--serial_batches``)."""
    if isinstance(dataset, NiftiAlignedDataset) and dataset.lazy and not opt.serial_batches:
        return PatientBlockSampler(dataset.sample_patients(), block=opt.volume_cache,
                                   seed=opt.seed, rank=rank, world_size=world_size)
    return EpochSampler(len(dataset), shuffle=not opt.serial_batches, seed=opt.seed,
                        rank=rank, world_size=world_size)
