"""What a training split holds, read from the NIfTI headers of its AVG volumes (no voxels).

The plan of a run (:mod:`options.plan`) configures the network from these facts: the slice
sizes (does the generator take them?), the slice thickness (how many neighbouring slices make
a few millimetres of context), the number of slices (epochs) and the voxels held in memory.
A file whose header cannot be read is counted and skipped here: the dataset names it, with every
other problem, when it loads the split.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from data.image_folder import make_dataset
from data.nifti_io import read_info
from util.errors import DataError
from util.geometry import stack_shape, stack_spacing_mm
from util.resample import median_spacing_mm, working_shape

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingDataFacts:
    """The AVG volumes of a training split, on the grid the network will see them (the working
    grid of ``--working_spacing_mm``, else native).

    ``folder``: the AVG folder surveyed; ``patients``: volumes whose header was read;
    ``slices``: axial slices of all of them; ``slice_sizes``: the distinct (H, W) slice sizes in
    pixels, sorted; ``slice_thickness_mm`` and ``pixel_spacing_mm`` (row, column): medians over
    the patients, in mm; ``largest_volume_voxels``: voxels of the largest volume;
    ``volumes_per_patient``: volumes a patient holds in memory when decoded (the AVG and each
    target phase: 2 for phase 0 alone); ``phases``: target phases served per slice (1: phase 0);
    ``unreadable``: files whose header could not be read (left for the dataset to report).
    """

    folder: Path
    patients: int
    slices: int
    slice_sizes: tuple[tuple[int, int], ...]
    slice_thickness_mm: float
    pixel_spacing_mm: tuple[float, float]
    largest_volume_voxels: int
    volumes_per_patient: int = 2
    phases: int = 1
    unreadable: int = 0

    @property
    def samples(self) -> int:
        """Training samples per epoch: one per slice and target phase."""
        return self.slices * self.phases

    def held_bytes(self, bytes_per_voxel: int = 2) -> int:
        """Bytes of every volume decoded at once (int16 HU: 2 bytes a voxel), an upper bound
        from the largest volume."""
        return (self.patients * self.volumes_per_patient * self.largest_volume_voxels
                * bytes_per_voxel)


def survey_training_split(folder_a: Path, *, working_spacing_mm: Sequence[float] = (0, 0, 0),
                          phases: int = 1) -> TrainingDataFacts | None:
    """The facts of the NIfTI volumes in ``folder_a`` (a ``<dataroot>/trainA``), from their
    headers; None when the folder is missing or no header can be read (the dataset then reports
    why). ``phases``: the target phases served (1: phase 0 alone)."""
    try:
        files = make_dataset(folder_a, nifti_only=True)
    except DataError:
        return None
    shapes: list[tuple[int, int, int]] = []
    spacings: list[tuple[float, float, float]] = []
    unreadable = 0
    for path in files:
        try:
            info = read_info(path)
            native = stack_spacing_mm(info.affine)
            shape = working_shape(stack_shape(info.shape, info.affine), native,
                                  working_spacing_mm)
        except (DataError, ValueError) as exc:
            logger.debug("survey: %s skipped (%s)", path, exc)
            unreadable += 1
            continue
        shapes.append(shape)
        grid = [float(w) if w > 0 else s for s, w in zip(native, working_spacing_mm, strict=True)]
        spacings.append((grid[0], grid[1], grid[2]))
    if not shapes:
        return None
    thickness_mm, row_mm, column_mm = median_spacing_mm(spacings)
    return TrainingDataFacts(
        folder=folder_a, patients=len(shapes), slices=sum(s for s, _, _ in shapes),
        slice_sizes=tuple(sorted({(h, w) for _, h, w in shapes})),
        slice_thickness_mm=thickness_mm, pixel_spacing_mm=(row_mm, column_mm),
        largest_volume_voxels=max(s * h * w for s, h, w in shapes),
        volumes_per_patient=1 + max(phases, 1), phases=max(phases, 1), unreadable=unreadable)
