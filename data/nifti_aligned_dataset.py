"""Paired NIfTI volumes served as axial slices: ``<phase>A/<id>.nii.gz`` (AVG) with
``<phase>B/<id>.nii.gz`` (phase 0), paired by file name.

Every volume is decoded once, at start-up, and held as a compact slice stack (int16 HU where
lossless); or, with ``--volume_cache N``, decoded on first use with the N most recently used kept
(memory flat in the number of patients). A sample is one axial slice of one patient, converted to
float32 and windowed to [-1, 1] only when it is served.

With ``--phases`` (a dataset prepared with ``prepare_dataset.py --phases``), the targets are every
listed respiratory phase p, read from ``<phase>B_p<p>/`` beside ``<phase>B/`` (phase 0; see
:mod:`util.phases`): a sample is one slice of one (patient, phase), its input carrying the phase
as two constant planes (sin, cos) after the image channels, for a phase-conditioned generator.
Patients stay one entry each (``patient_ids``, ``stacks_a``, ``stacks_b`` = phase 0).
At test time (``test.py``'s settings name ``--avg_series``) a patient may also be a folder
``<phase>A/<id>/`` holding DICOM CT series, paired by id with ``<phase>B/<id>/`` (DICOM) or
``<phase>B/<id>.nii.gz``: the only CT series of the folder is read, or of several the one whose
description matches ``--avg_series`` (A) / ``--phase0_series`` (B). Such stacks keep their
:class:`~data.dicom_io.DicomSource`. DICOM folders are read whole at start-up (not with
``--volume_cache``).

With a working spacing (``--working_spacing_mm``, training only), every volume held, AVG and
targets alike, is resampled to that grid when it is loaded
(:func:`data.ct_volumes.working_grid_stack`, as inference resamples the AVG), so samples are
slices of the working grid; ``infos_a`` keep the source geometry.
:meth:`NiftiAlignedDataset.pad_slices_to` pads the slices served with air to a size the
generator takes, as inference pads.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm import tqdm

from data.augment import NO_AUGMENT, IntensityAugment
from data.base_dataset import BaseDataset
from data.ct_volumes import (
    AFFINE_ATOL_MM,
    SeriesChoice,
    SliceStack,
    context_window,
    describe_memory,
    load_ct_stack,
    slice_to_unit,
    working_grid_stack,
)
from data.dicom_io import DEFAULT_AVG_SERIES, DEFAULT_PHASE0_SERIES
from data.image_folder import pair_by_name
from data.nifti_io import VolumeInfo
from data.phase_volumes import (
    PhaseStacks,
    check_pair_geometry,
    checked_phases,
    dataset_phases,
    lazy_against,
    load_against,
    phase_files,
    phase_labels,
)
from data.settings import DataSettings
from data.volume_cache import LazyStacks
from util.errors import ConfigError, DataError
from util.geometry import stack_shape, stack_spacing_mm
from util.hu_window import DEFAULT_HU_MAX, DEFAULT_HU_MIN
from util.phases import (
    PHASE_CHANNELS,
    phase_label,
    phase_planes,
)
from util.resample import NATIVE, Shape3, checked_working_spacing, is_native, working_shape

logger = logging.getLogger(__name__)

#: One sample: (patient index, phase slot, slice or patch draw); the slot indexes the phases
#: served (one slot, phase 0, without ``--phases``).
SampleKey = tuple[int, int, int]
_T = TypeVar("_T")
#: HU of the margins added around served slices to fit the generator (:meth:`pad_slices_to`).
AIR_HU = -1024.0


#: The series a DICOM patient folder's volume is, by default: (A: AVG, B: phase 0).
DEFAULT_DICOM_SERIES = (SeriesChoice(DEFAULT_AVG_SERIES, "--avg_series"),
                        SeriesChoice(DEFAULT_PHASE0_SERIES, "--phase0_series"))


class NiftiAlignedDataset(BaseDataset):
    """Axial slices of paired CT volumes.

    A sample: ``A`` (2K+1, H, W) and ``B`` (1, H, W) float32 in [-1, 1] (HU window
    ``--hu_min``..``--hu_max``), where K is ``--context_slices`` (the input slice with K
    neighbours on each side, the slice itself in the middle channel); ``A_paths``/``B_paths``,
    ``patient_id`` and ``slice_index`` (position in the stack, inferior first). Without a
    ``<phase>B`` folder at test time, samples carry ``A`` alone.

    With ``phases``: one sample per (patient, phase, slice) that exists; ``A`` (2K+1+2, H, W),
    the image channels then the planes (sin, cos) of the phase
    (:func:`util.phases.phase_planes`); ``B`` that phase's slice, ``B_paths`` its file and
    ``phase_pct`` the phase in % (float).
    """

    #: What one sample is, for the log.
    sample_unit = "slices"

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser,
                                   is_train: bool) -> argparse.ArgumentParser:  # noqa: ARG004
        """NIfTI slices keep their native size unless ``--resize_to`` is given; ``--preprocess
        none`` and ``--axial_slice``, the only values this dataset takes, are the defaults."""
        parser.set_defaults(preprocess="none", axial_slice=True)
        g = parser.add_argument_group("NIfTI datasets (nifti_aligned, nifti_volume)")
        g.add_argument("--volume_cache", type=int, default=0,
                       help="0: decode every volume at start-up and keep all (int16); N > 0: "
                            "decode volumes on first use, keep the N most recently used per "
                            "side (and phase) and process (memory flat in the number of "
                            "patients)")
        g.add_argument("--phases", type=str, default="",
                       help="targets for a phase-conditioned generator: '' = phase 0 alone, "
                            "as before; 'all' = every phase folder of the split (<phase>B, "
                            "<phase>B_p10, ... written by prepare_dataset.py --phases); or "
                            "percentages such as 0,50. The input gets 2 more channels, sin and "
                            "cos of the phase (--input_nc 2K+1+2)")
        return parser

    def __init__(self, folder_a: str | Path, folder_b: str | Path | None = None, *,
                 hu_min: float = DEFAULT_HU_MIN, hu_max: float = DEFAULT_HU_MAX,
                 resize_to: int = 0, context_slices: int = 0, a_to_b: bool = True,
                 flip: bool = False, max_patients: int | None = None,
                 max_slices: float = float("inf"), volume_cache: int = 0,
                 geometry_atol_mm: float = AFFINE_ATOL_MM,
                 phases: Sequence[float] | None = None,
                 dicom_series: tuple[SeriesChoice, SeriesChoice] | None = None,
                 working_spacing_mm: Sequence[float] = NATIVE,
                 augment: IntensityAugment = NO_AUGMENT) -> None:
        """Pair ``folder_a/<id>.nii[.gz]`` (AVG) with ``folder_b/<id>...`` (phase 0; None: no
        truth, AtoB only) and index their axial slices.

        ``hu_min``/``hu_max``: the HU window mapped to [-1, 1]; ``resize_to``: slice side in
        pixels (0 = native); ``context_slices``: K neighbours on each side of an input slice;
        ``a_to_b``: A is the input; ``flip``: random left-right flips; ``max_patients``: the
        first N pairs only; ``max_slices``: at most that many samples, spread over all slices;
        ``volume_cache``: 0 = decode every volume now, N = decode on use and keep N per side
        (and phase); ``geometry_atol_mm``: largest affine difference (mm) of a pair on one grid;
        ``phases``: target phases in % (None: phase 0 alone, no phase planes), phase p read from
        ``folder_b.parent / phase_folder(split, p)`` (AtoB only).
        ``dicom_series``: how the series of DICOM patient folders ``<id>/`` are picked (A, B);
        None: NIfTI files only (such folders are not volumes). ``working_spacing_mm``: (slice,
        row, column) mm every volume is resampled to when loaded, 0 = native axis (not with
        ``volume_cache``). ``augment``: intensity augmentation of each training sample
        (:class:`data.augment.IntensityAugment`; none by default).
        """
        self.augment = augment
        for name, value in (("context_slices", context_slices), ("resize_to", resize_to),
                            ("volume_cache", volume_cache)):
            if value < 0:
                raise ConfigError(f"--{name} must be 0 or positive, got {value}")
        self.phases: tuple[float, ...] = checked_phases(phases, a_to_b)
        self.working_spacing_mm = checked_working_spacing(working_spacing_mm)
        if volume_cache > 0 and not is_native(self.working_spacing_mm):
            raise ConfigError(f"--working_spacing_mm {_spacing_text(self.working_spacing_mm)} "
                              f"resamples every volume when it is loaded; --volume_cache "
                              f"{volume_cache} decodes on use: run without --volume_cache")
        #: (multiple, least) of the slice sides served (padded with air), None: as they are.
        self.slice_rule: tuple[int, int] | None = None
        self.root = str(Path(folder_a).parent)
        self.hu_min, self.hu_max, self.resize_to = hu_min, hu_max, resize_to
        self.context_slices = context_slices
        self.a_to_b, self.flip = a_to_b, flip
        dir_a = Path(folder_a)
        dir_b = Path(folder_b) if folder_b is not None else None
        if not dir_a.is_dir():
            raise DataError(f"{dir_a}: folder not found; a dataroot holds <phase>A/ (AVG) and "
                            f"<phase>B/ (phase 0), as written by prepare_dataset.py")
        if dir_b is None and not a_to_b:
            raise DataError(f"{dir_a}: --direction BtoA needs the phase-0 folder beside it")
        all_pairs = pair_by_name(dir_a, dir_b, dicom_folders=dicom_series is not None)
        pairs = all_pairs[:max_patients]
        self.patient_ids: list[str] = [pid for pid, _, _ in pairs]
        #: Each patient's A and B: a NIfTI file or a DICOM patient folder (B: None, no truth).
        self.paths_a: list[Path] = [a for _, a, _ in pairs]
        self.paths_b: list[Path | None] = [b for _, _, b in pairs]
        files = phase_files(dir_b, self.phases, self.patient_ids,
                            {pid for pid, _, _ in all_pairs}) if dir_b is not None else {}
        self.lazy = volume_cache > 0
        folders = [p for p in (*self.paths_a, *self.paths_b) if p is not None and p.is_dir()]
        if self.lazy and folders:
            raise ConfigError(f"{folders[0]}: a DICOM series folder; --volume_cache reads NIfTI "
                              f"files only, DICOM series are read whole: run without "
                              f"--volume_cache")
        self.stacks_a: Sequence[SliceStack]
        self.stacks_b: Sequence[SliceStack]
        self.stacks_a, self.stacks_b = (
            _lazy_pairs(pairs, volume_cache, geometry_atol_mm) if self.lazy
            else _load_pairs(pairs, geometry_atol_mm, dicom_series or DEFAULT_DICOM_SERIES))
        self.infos_a = [self.volume_info(i) for i in range(len(pairs))]
        self._by_phase = self._phase_tables(files, volume_cache, geometry_atol_mm)
        #: (S, H, W) of each patient's stacks as held: the working grid, or the native one.
        self.grid_shapes: list[Shape3] = [
            working_shape(stack_shape(i.shape, i.affine), stack_spacing_mm(i.affine),
                          self.working_spacing_mm) for i in self.infos_a]
        if not is_native(self.working_spacing_mm):
            self._resample_held()
        #: The phase of each slot of the sample index: those served, or phase 0 alone.
        self.slot_phases: tuple[float, ...] = self.phases or (0.0,)
        self.index = self.sample_index(max_slices)
        logger.info("%s: %d patients%s, %d %s; voxels held in memory: %s", self.root,
                    len(self.patient_ids), f", phases {phase_labels(self.phases)} %"
                    if self.phases else "", len(self.index), self.sample_unit,
                    self._memory_text(volume_cache))

    @classmethod
    def from_settings(cls, settings: DataSettings) -> NiftiAlignedDataset:
        """The dataset of ``<dataroot>/<phase>A`` and ``<phase>B`` (and the ``--phases``
        folders) as ``settings`` describe (the registry's constructor; ``--num_test`` limits
        the patients at test time)."""
        _check_settings(settings)
        dir_a, dir_b = dataroot_folders(settings)
        return cls(dir_a, dir_b, hu_min=settings.hu_min, hu_max=settings.hu_max,
                   resize_to=settings.resize_to, context_slices=settings.context_slices,
                   a_to_b=settings.a_to_b, flip=settings.flip,
                   max_patients=settings.max_patients, max_slices=settings.max_dataset_size,
                   volume_cache=settings.volume_cache,
                   geometry_atol_mm=settings.geometry_atol_mm,
                   dicom_series=dicom_choices(settings),
                   phases=dataset_phases(settings.phases, Path(settings.dataroot),
                                         settings.phase),
                   working_spacing_mm=settings.grid_spacing_mm,
                   augment=IntensityAugment.from_values(settings.augment_intensity)
                   if settings.is_train else NO_AUGMENT)

    @property
    def has_target(self) -> bool:
        """Whether samples carry ground truth (``B``)."""
        return bool(self.stacks_b)

    def volume_info(self, patient_index: int) -> VolumeInfo:
        """Geometry of the patient's AVG (input) volume, the reference for predicted volumes
        (from the header alone with ``--volume_cache``)."""
        if isinstance(self.stacks_a, LazyStacks):
            return self.stacks_a.infos[patient_index]
        return self.stacks_a[patient_index].info

    def phase_stack(self, patient_index: int, percent: float) -> SliceStack | None:
        """The patient's volume of phase ``percent`` (%) as a slice stack, the truth of that
        phase (phase 0 = ``stacks_b``); None when the patient has no file of it, the phase is
        not served or the dataset holds no truth."""
        table = self._by_phase.get(float(percent))
        return None if table is None else table.get(patient_index)

    def has_phase(self, patient_index: int, percent: float) -> bool:
        """Whether the patient's volume of phase ``percent`` is held (without decoding it)."""
        table = self._by_phase.get(float(percent))
        return table is not None and patient_index in table.rows

    def slice_shapes(self) -> set[tuple[int, int]]:
        """Distinct (H, W) sizes in pixels of the slices served, before ``--resize_to``: native,
        or on the working grid, padded to :meth:`pad_slices_to`'s rule if one is set."""
        return {self._served_size(h, w) for _, h, w in self.grid_shapes}

    def samples_per_volume(self, patient_index: int) -> int:
        """Samples of one (patient, phase): the patient's axial slices (on the working grid)."""
        return self.grid_shapes[patient_index][0]

    def pad_slices_to(self, multiple: int, least: int = 1) -> None:
        """Serve slices padded with air (:data:`AIR_HU`, input and target alike, around the
        centre) to sides that are multiples of ``multiple`` and at least ``least`` pixels: the
        sizes the generator takes (e.g. after resampling to a working spacing)."""
        if multiple < 1 or least < 1:
            raise ValueError(f"multiple and least must be >= 1, got {multiple}, {least}")
        self.slice_rule = (multiple, least)

    def _served_size(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) pixels of a slice of (``height``, ``width``) once padded to the slice rule."""
        if self.slice_rule is None:
            return height, width
        multiple, least = self.slice_rule
        h, w = (-(-max(side, least) // multiple) * multiple for side in (height, width))
        return h, w

    def _pad_slice(self, hu: np.ndarray) -> np.ndarray:
        """``hu`` (..., H, W) HU padded with air around the centre to :meth:`_served_size`."""
        height, width = hu.shape[-2:]
        target_h, target_w = self._served_size(height, width)
        if (target_h, target_w) == (height, width):
            return hu
        top, left = (target_h - height) // 2, (target_w - width) // 2
        widths = [(0, 0)] * (hu.ndim - 2) + [(top, target_h - height - top),
                                             (left, target_w - width - left)]
        return np.pad(hu, widths, constant_values=AIR_HU)

    def _resample_held(self) -> None:
        """Replace every stack held (AVG, phase 0, other phases) by its working-grid one."""
        spacing = self.working_spacing_mm
        self.stacks_a = [working_grid_stack(s, spacing) for s in
                         tqdm(self.stacks_a, desc="resampling to the working grid",
                              unit="patient")]
        self.stacks_b = [working_grid_stack(s, spacing) for s in self.stacks_b]
        for percent, table in self._by_phase.items():
            stacks = self.stacks_b if percent == 0 else [working_grid_stack(s, spacing)
                                                         for s in table.stacks]
            self._by_phase[percent] = dataclasses.replace(table, stacks=stacks)
        logger.info("%s: volumes resampled to the working spacing %s mm (slice, row, column)",
                    self.root, _spacing_text(spacing))

    def sample_index(self, max_samples: float) -> list[SampleKey]:
        """(patient, phase slot, slice) of every sample, patient by patient, phase by phase;
        a (patient, phase) without its file is left out; at most ``max_samples``, spread over
        all of them (called once by ``__init__``, after the volumes are indexed)."""
        keys = [(v, k, s) for v in range(len(self.patient_ids))
                for k, percent in enumerate(self.slot_phases)
                if not self.has_target or self.has_phase(v, percent)
                for s in range(self.samples_per_volume(v))]
        return spread_evenly(keys, max_samples)

    def sample_patients(self) -> list[int]:
        """The patient (volume) index of every sample, in sample order."""
        return [v for v, _, _ in self.index]

    def __len__(self) -> int:
        """Number of axial slices served."""
        return len(self.index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Slice ``index``: see the class docstring for the keys."""
        v, k, s = self.index[index]
        percent = self.slot_phases[k]
        flip = self.flip and bool(torch.rand(()) < 0.5)  # torch RNG: seeded per worker
        item: dict[str, Any] = {"patient_id": self.patient_ids[v], "slice_index": s,
                                "patient_index": v}
        sides = [("A", self.stacks_a[v])]
        sides += [("B", self.target_stack(v, percent))] if self.has_target else []
        slices = {}
        for key, stack in sides:
            is_input = (key == "A") == self.a_to_b
            hu = context_window(stack.hu, s, self.context_slices) if is_input \
                else stack.hu[s]  # flipped in NumPy: see slices_to_unit on threads
            slices[key] = self._pad_slice(hu)
            item[f"{key}_paths"] = str(stack.info.path)
        if self.augment.enabled:
            source, target = ("A", "B") if self.a_to_b else ("B", "A")
            slices[source], augmented = self.augment(slices[source], slices.get(target))
            if augmented is not None:
                slices[target] = augmented
        for key, hu in slices.items():
            item[key] = slice_to_unit(hu[..., ::-1] if flip else hu, self.hu_min, self.hu_max,
                                      self.resize_to)
        if not self.a_to_b:
            item["A"], item["B"] = item["B"], item["A"]
            item["A_paths"], item["B_paths"] = item["B_paths"], item["A_paths"]
        return self.add_phase(item, percent)

    def target_stack(self, patient_index: int, percent: float) -> SliceStack:
        """The truth of a sample: the patient's stack of phase ``percent``, which the sample
        index holds only where it exists."""
        stack = self.phase_stack(patient_index, percent)
        if stack is None:
            raise RuntimeError(f"{self.patient_ids[patient_index]}: no volume of phase "
                               f"{phase_label(percent)} %, yet a sample of it was asked for")
        return stack

    def add_phase(self, item: dict[str, Any], percent: float) -> dict[str, Any]:
        """With phases, ``item`` with the phase planes appended to ``A`` (C, *spatial) ->
        (C + 2, *spatial) and ``phase_pct``; unchanged without."""
        if self.phases:
            planes = phase_planes(percent, item["A"].shape[1:])
            item["A"] = torch.cat([item["A"], torch.from_numpy(planes)])
            item["phase_pct"] = float(percent)
        return item

    def _memory_text(self, volume_cache: int) -> str:
        """What the voxels held take, for the log: now, or at most once decoded on use."""
        extra = [t.stacks for p, t in self._by_phase.items() if p != 0]
        if isinstance(self.stacks_a, LazyStacks):
            mib = _largest_pairs_mib(self.stacks_a, volume_cache, 2 + len(extra))
            return (f"none yet, volumes decoded on use, at most {volume_cache} per side "
                    f"{'and phase ' if extra else ''}and process (~{mib:.1f} MiB as int16)")
        return describe_memory([*self.stacks_a, *self.stacks_b, *(s for t in extra for s in t)])

    def _phase_tables(self, files: dict[float, dict[int, Path]], capacity: int,
                      atol_mm: float) -> dict[float, PhaseStacks]:
        """{phase: its stacks}: phase 0 is ``stacks_b``; every other phase's files decoded now
        (or on use with ``capacity`` > 0) and checked against their AVG's geometry, every
        problem reported together in one DataError."""
        tables: dict[float, PhaseStacks] = {}
        if self.has_target:
            tables[0.0] = PhaseStacks(0.0, {v: v for v in range(len(self.patient_ids))},
                                      self.stacks_b)
        problems: list[str] = []
        for percent, by_patient in files.items():
            rows = {v: row for row, v in enumerate(by_patient)}
            refs = [self.infos_a[v] for v in by_patient]
            paths = list(by_patient.values())
            stacks, found = (lazy_against(paths, refs, capacity, atol_mm) if capacity > 0
                             else load_against(paths, refs, atol_mm, phase_label(percent)))
            tables[percent] = PhaseStacks(percent, rows, stacks)
            problems += found
        if problems:
            raise DataError(f"{len(problems)} phase volume(s) cannot be used:\n  "
                            + "\n  ".join(problems))
        return tables


def dataroot_folders(settings: DataSettings) -> tuple[Path, Path | None]:
    """``<dataroot>/<phase>A`` (AVG) and ``<phase>B`` (phase 0; None where it is missing and
    not needed: testing AtoB); DataError naming the missing folder otherwise."""
    root, split = Path(settings.dataroot), settings.phase
    dir_a, dir_b = root / f"{split}A", root / f"{split}B"
    if not dir_a.is_dir():
        raise DataError(f"{dir_a}: folder not found; a dataroot holds {split}A/ (AVG) and "
                        f"{split}B/ (phase 0), as written by prepare_dataset.py")
    if not dir_b.is_dir() and (settings.is_train or not settings.a_to_b):
        raise DataError(f"{dir_b}: folder not found; {split}A/ needs its {split}B/")
    return dir_a, dir_b if dir_b.is_dir() else None


def _spacing_text(spacing_mm: Sequence[float]) -> str:
    """``3 0 1.5`` for messages: spacings as the option takes them."""
    return " ".join(f"{v:g}" for v in spacing_mm)


def dicom_choices(settings: DataSettings) -> tuple[SeriesChoice, SeriesChoice] | None:
    """How DICOM patient folders' series are picked (A: ``--avg_series``, B:
    ``--phase0_series``) when ``settings`` name them (``test.py``'s); None otherwise
    (training reads the NIfTI files prepare_dataset.py writes)."""
    if settings.avg_series is None:
        return None
    return (SeriesChoice(settings.avg_series, "--avg_series"),
            SeriesChoice(settings.phase0_series or DEFAULT_PHASE0_SERIES, "--phase0_series"))


def _check_settings(settings: DataSettings) -> None:
    """Refuse settings the NIfTI slice dataset cannot serve (ConfigError)."""
    s = settings
    if s.preprocess != "none":
        raise ConfigError(f"--dataset_mode nifti_aligned supports --preprocess none only (got "
                          f"'{s.preprocess}'); use --resize_to N to resize slices to N x N")
    if s.context_slices < 0:
        raise ConfigError(f"--context_slices must be 0 or positive, got {s.context_slices}")
    check_phase_direction(s)
    expected_nc = input_channels(s.context_slices, s.phase_planes)
    if s.input_nc != expected_nc or s.output_nc != 1:
        served = (f"{expected_nc} input channels ({2 * s.context_slices + 1} image, then "
                  f"{PHASE_CHANNELS} phase planes: sin, cos)" if s.phase_planes
                  else f"{expected_nc} input channel(s)")
        raise ConfigError(f"--dataset_mode nifti_aligned with --context_slices "
                          f"{s.context_slices}{_phases_flag(s)} serves {served} and 1 "
                          f"output channel; got --input_nc {s.input_nc} --output_nc "
                          f"{s.output_nc}: pass --input_nc {expected_nc} --output_nc 1")


def input_channels(context_slices: int, phase_planes: bool) -> int:
    """Channels of the input a sample carries: 2K + 1 slices for ``context_slices`` K (K = 0
    for a volume), then the two phase planes (sin, cos) when ``phase_planes``."""
    return 2 * context_slices + 1 + (PHASE_CHANNELS if phase_planes else 0)


def check_phase_direction(settings: DataSettings) -> None:
    """ConfigError for ``--phases`` with ``--direction BtoA``: the phase conditions the
    generator that predicts it from the AVG, not the reverse."""
    if settings.phases and not settings.a_to_b:
        raise ConfigError(f"--phases {settings.phases} trains AVG -> phase p, the phase given "
                          f"to the generator as input planes; --direction BtoA has no phase "
                          f"to condition on: pass --direction AtoB or drop --phases")


def _phases_flag(settings: DataSettings) -> str:
    """`` and --phases X`` for messages, empty without phases."""
    return f" and --phases {settings.phases}" if settings.phases else ""


def _load_pairs(pairs: list[tuple[str, Path, Path | None]], atol_mm: float,
                choices: tuple[SeriesChoice, SeriesChoice] = DEFAULT_DICOM_SERIES
                ) -> tuple[list[SliceStack], list[SliceStack]]:
    """Decode every pair once (a DICOM patient folder's series picked by ``choices`` (A, B));
    B stacks are empty when there is no ground truth.

    A and B must share their voxel grid (affines equal within ``atol_mm``). Every unusable file
    or pair is reported together in one DataError (one line when there is one).
    """
    stacks_a: list[SliceStack] = []
    stacks_b: list[SliceStack] = []
    problems: list[str] = []
    for _pid, path_a, path_b in tqdm(pairs, desc="loading volumes", unit="patient"):
        try:
            a = load_ct_stack(path_a, choices[0])
            b = load_ct_stack(path_b, choices[1]) if path_b is not None else None
            if b is not None:
                check_pair_geometry(a.info, b.info, atol_mm)
        except DataError as exc:
            problems.append(str(exc))
            continue
        stacks_a.append(a)
        stacks_b.extend([b] if b is not None else [])
    if problems:
        sep = " " if len(problems) == 1 else "\n  "
        raise DataError(f"{len(problems)} of {len(pairs)} patients cannot be used:{sep}"
                        + "\n  ".join(problems))
    return stacks_a, stacks_b


def _lazy_pairs(pairs: list[tuple[str, Path, Path | None]], capacity: int, atol_mm: float
                ) -> tuple[LazyStacks, LazyStacks]:
    """Headers of every pair, checked for matching geometry (affines equal within
    ``atol_mm``); voxels decoded on use."""
    stacks_a = LazyStacks([a for _, a, _ in pairs], capacity)
    stacks_b = LazyStacks([b for _, _, b in pairs if b is not None], capacity)
    for a, b in zip(stacks_a.infos, stacks_b.infos, strict=False):
        check_pair_geometry(a, b, atol_mm)
    return stacks_a, stacks_b


def _largest_pairs_mib(stacks: LazyStacks, count: int, sides: int = 2) -> float:
    """MiB of ``count`` of the largest volumes of ``stacks`` and their partners (``sides``
    volumes per patient in all: A, phase 0 and any other phases), as int16."""
    sizes = sorted((int(np.prod(i.shape)) * 2 for i in stacks.infos), reverse=True)
    return sides * sum(sizes[:count]) / 2**20


def spread_evenly(items: list[_T], max_size: float) -> list[_T]:
    """``items`` (every sample, in order); at most ``max_size`` of them, spread evenly."""
    if max_size < len(items):
        keep = np.linspace(0, len(items) - 1, num=max(1, int(max_size))).round().astype(int)
        items = [items[i] for i in keep]
    return items

