"""What training checks and how it orders samples, before a step runs: shared by ``train.py``
and the benchmarks that train (``benchmarks/bench_clinical.py``).

- :func:`check_sizes`: refuse slice (2-D) or patch (3-D) sizes the chosen generator or
  PatchGAN cannot take, and a generator of the wrong kind for the dataset;
- :func:`training_sampler`: this process's share of the samples, in train.py's order.
"""

from __future__ import annotations

from data.base_dataset import BaseDataset
from data.nifti_aligned_dataset import NiftiAlignedDataset
from data.nifti_volume_dataset import NiftiVolumeDataset
from data.sampling import EpochSampler, PatientBlockSampler
from data.settings import DataSettings
from models.networks import (
    DISCRIMINATORS,
    check_slice_size,
    check_volume_size,
    is_volumetric,
    patch_min_side,
)
from models.settings import DiscriminatorSettings, RunSettings
from util.errors import ConfigError


def network_slice_sizes(dataset: BaseDataset, data: DataSettings) -> set[tuple[int, int]]:
    """(H, W) sizes, in pixels, of the slices the generator will see."""
    if data.resize_to > 0:
        return {(data.resize_to, data.resize_to)}
    if isinstance(dataset, NiftiAlignedDataset):
        return dataset.slice_shapes()
    return {(data.crop_size, data.crop_size)} if data.preprocess != "none" else set()


def check_sizes(dataset: BaseDataset, settings: RunSettings) -> None:
    """Refuse, before any training, slice (2-D) or patch (3-D) sizes the chosen generator cannot
    take, and a generator of the wrong kind for the dataset."""
    net_g = settings.generator.netG
    volumes = isinstance(dataset, NiftiVolumeDataset)
    if is_volumetric(net_g) != volumes:
        raise ConfigError(f"--netG {net_g} is a {'3-D' if is_volumetric(net_g) else '2-D'}"
                          f" generator, but --dataset_mode {settings.data.dataset_mode} serves "
                          f"{'3-D patches' if volumes else '2-D images'}: pair unet3d_*/"
                          f"motion3d_* with --dataset_mode nifti_volume, the others with "
                          f"nifti_aligned")
    if isinstance(dataset, NiftiVolumeDataset):
        for depth, height, width in sorted(dataset.patch_shapes()):
            check_volume_size(net_g, depth, height, width)
            check_discriminator_size(settings.discriminator, (depth, height, width))
        return
    for height, width in sorted(network_slice_sizes(dataset, settings.data)):
        check_slice_size(net_g, height, width)


def check_discriminator_size(discriminator: DiscriminatorSettings,
                             sides: tuple[int, ...]) -> None:
    """ConfigError unless the PatchGAN ``--netD`` takes inputs of ``sides`` (voxels)."""
    spec = DISCRIMINATORS[discriminator.netD]
    if spec.family == "pixel":
        return
    n_layers = discriminator.n_layers_D if spec.n_layers is None else spec.n_layers
    least = patch_min_side(n_layers)
    if min(sides) < least:
        fits = max(1, (min(sides) // 3).bit_length() - 1)
        raise ConfigError(f"patches of {'x'.join(map(str, sides))} voxels are too small for the "
                          f"{n_layers}-layer PatchGAN (--netD {discriminator.netD}), which needs "
                          f"{least} on every side: use --netD n_layers --n_layers_D {fits}, "
                          f"--netD pixel, or a larger --patch_size")


def training_sampler(dataset: BaseDataset, settings: RunSettings, *, rank: int = 0,
                     world_size: int = 1) -> EpochSampler:
    """This rank's share of the slices, in an order fixed by (``--seed``, epoch): patient blocks
    for lazily decoded volumes (each decoded once per epoch), else a shuffle of all slices (in
    order with ``--serial_batches``)."""
    data, seed = settings.data, settings.run.seed
    if isinstance(dataset, NiftiAlignedDataset) and dataset.lazy and not data.serial_batches:
        return PatientBlockSampler(dataset.sample_patients(), block=data.volume_cache,
                                   seed=seed, rank=rank, world_size=world_size)
    return EpochSampler(len(dataset), shuffle=not data.serial_batches, seed=seed,
                        rank=rank, world_size=world_size)
