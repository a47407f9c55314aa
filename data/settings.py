"""What a run's data is and how it is served: the data part of a run's settings.

:class:`DataSettings` holds the options the datasets, their registry
(:func:`data.create_dataset`) and the loaders read, under the options' names
(:mod:`util.settings`). It is built once at the entry point, with the rest of the run's
settings (:class:`models.settings.RunSettings`); the datasets take it, or plain values drawn from
it, never the parsed command line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from data.ct_volumes import AFFINE_ATOL_MM
from util.hu_window import DEFAULT_HU_MAX, DEFAULT_HU_MIN
from util.resample import NATIVE


@dataclass(frozen=True, kw_only=True)
class DataSettings:
    """The data options of a run. Defaults are the options' own (those of ``--dataset_mode
    nifti_aligned`` for the options it sets), and what a run recorded before an option existed
    takes.

    Where: ``dataroot`` holds ``<phase>A`` (AVG) and ``<phase>B`` (phase 0); ``dataset_mode``
    names the dataset class; ``is_train``: a training's data (flips, augmentation, the working
    grid) rather than a test's. Samples: ``direction`` (AtoB: AVG in), ``input_nc`` and
    ``output_nc`` channels (the network's), ``context_slices`` K neighbours on each side,
    ``phases`` (``--phases``: '' = phase 0 alone), ``phase_input`` (a test of a run trained
    with phases: the input carries phase planes), the HU window ``hu_min``..``hu_max`` mapped
    to [-1, 1], ``resize_to`` pixels (0 = native), ``working_spacing_mm`` (slice, row, column)
    mm (0 = native axis), ``patch_size`` (D, H, W) voxels of a patch (0 = whole axis),
    ``augment_intensity`` (noise HU, blur pixels, offset HU). Loading: ``volume_cache``
    volumes kept (0 = all decoded at start-up), ``geometry_atol_mm`` the largest affine
    difference of a pair, ``max_dataset_size`` samples at most, ``num_test`` patients at most
    (testing), ``avg_series``/``phase0_series`` the DICOM series patterns (None: no DICOM
    folders, as in training). Loader: ``batch_size``, ``num_threads``, ``serial_batches``.
    """

    dataroot: str
    phase: str = "train"
    dataset_mode: str = "nifti_aligned"
    is_train: bool = field(default=False, metadata={"option": "isTrain"})
    direction: str = "AtoB"
    input_nc: int = 1
    output_nc: int = 1
    context_slices: int = 0
    phases: str = ""
    phase_input: bool = False
    hu_min: float = DEFAULT_HU_MIN
    hu_max: float = DEFAULT_HU_MAX
    resize_to: int = 0
    working_spacing_mm: tuple[float, ...] = NATIVE
    patch_size: tuple[int, ...] = (0, 0, 0)
    patches_per_volume: int = 1
    motion_fraction: float = 0.7
    motion_threshold_hu: float = 50.0
    augment_intensity: tuple[float, ...] = (0.0, 0.0, 0.0)
    no_flip: bool = False
    preprocess: str = "none"
    load_size: int = 286
    crop_size: int = 256
    axial_slice: bool = True
    volume_cache: int = 0
    geometry_atol_mm: float = AFFINE_ATOL_MM
    max_dataset_size: float = math.inf
    num_test: int | None = None
    avg_series: str | None = None
    phase0_series: str | None = None
    batch_size: int = 1
    num_threads: int = 2
    serial_batches: bool = False

    @property
    def a_to_b(self) -> bool:
        """Whether the AVG (A) is the input."""
        return self.direction == "AtoB"

    @property
    def flip(self) -> bool:
        """Whether samples are flipped left-right at random: in training, unless ``no_flip``."""
        return self.is_train and not self.no_flip

    @property
    def max_patients(self) -> int | None:
        """Patients served at most: ``num_test`` at test time, all (None) in training."""
        return None if self.is_train else self.num_test

    @property
    def grid_spacing_mm(self) -> tuple[float, ...]:
        """The grid a dataset holds its volumes on: ``working_spacing_mm`` (slice, row,
        column) mm when training; native at test time, where inference resamples
        (:func:`models.inference.predict_hu`) and the outputs keep the source geometry."""
        return self.working_spacing_mm if self.is_train else NATIVE

    @property
    def phase_planes(self) -> bool:
        """Whether the input carries phase planes: a training with ``phases``, or a test of a
        run trained so (``phase_input``, adopted from its ``opt.json``), with ``phases`` or
        without (phase 0 then)."""
        return bool(self.phases) if self.is_train else self.phase_input
