"""Paired NIfTI volumes served as axial slices: ``<phase>A/<id>.nii.gz`` (AVG) with
``<phase>B/<id>.nii.gz`` (phase 0), paired by file name.

Every volume is decoded once, at start-up, and held as a compact slice stack (int16 HU where
lossless); or, with ``--volume_cache N``, decoded on first use with the N most recently used kept
(memory flat in the number of patients). A sample is one axial slice of one patient, converted to
float32 and windowed to [-1, 1] only when it is served.

At test time (options with ``--avg_series``, i.e. ``test.py``) a patient may also be a folder
``<phase>A/<id>/`` holding DICOM CT series, paired by id with ``<phase>B/<id>/`` (DICOM) or
``<phase>B/<id>.nii.gz``: the only CT series of the folder is read, or of several the one whose
description matches ``--avg_series`` (A) / ``--phase0_series`` (B). Such stacks keep their
:class:`~data.dicom_io.DicomSource`. DICOM folders are read whole at start-up (not with
``--volume_cache``).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from data.base_dataset import BaseDataset
from data.ct_volumes import (
    AFFINE_ATOL_MM,
    SeriesChoice,
    SliceStack,
    check_same_geometry,
    context_window,
    describe_memory,
    load_ct_stack,
    slice_to_unit,
)
from data.dicom_io import DEFAULT_AVG_SERIES, DEFAULT_PHASE0_SERIES
from data.image_folder import pair_by_name
from data.nifti_io import VolumeInfo
from data.volume_cache import LazyStacks
from util.errors import ConfigError, DataError
from util.geometry import stack_shape
from util.hu_window import DEFAULT_HU_MAX, DEFAULT_HU_MIN

logger = logging.getLogger(__name__)

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
    """

    #: What one sample is, for the log.
    sample_unit = "slices"

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser,
                                   is_train: bool) -> argparse.ArgumentParser:  # noqa: ARG004
        """NIfTI slices keep their native size unless ``--resize_to`` is given."""
        parser.set_defaults(preprocess="none")
        parser.add_argument("--volume_cache", type=int, default=0,
                            help="0: decode every volume at start-up and keep all (int16); N > 0: "
                                 "decode volumes on first use, keep the N most recently used per "
                                 "side and process (memory flat in the number of patients)")
        return parser

    def __init__(self, folder_a: str | Path, folder_b: str | Path | None = None, *,
                 hu_min: float = DEFAULT_HU_MIN, hu_max: float = DEFAULT_HU_MAX,
                 resize_to: int = 0, context_slices: int = 0, a_to_b: bool = True,
                 flip: bool = False, max_patients: int | None = None,
                 max_slices: float = float("inf"), volume_cache: int = 0,
                 geometry_atol_mm: float = AFFINE_ATOL_MM,
                 dicom_series: tuple[SeriesChoice, SeriesChoice] | None = None) -> None:
        """Pair ``folder_a/<id>.nii[.gz]`` (AVG) with ``folder_b/<id>...`` (phase 0; None: no
        truth, AtoB only) and index their axial slices.

        ``hu_min``/``hu_max``: the HU window mapped to [-1, 1]; ``resize_to``: slice side in
        pixels (0 = native); ``context_slices``: K neighbours on each side of an input slice;
        ``a_to_b``: A is the input; ``flip``: random left-right flips; ``max_patients``: the
        first N pairs only; ``max_slices``: at most that many samples, spread over all slices;
        ``volume_cache``: 0 = decode every volume now, N = decode on use and keep N per side;
        ``geometry_atol_mm``: largest affine difference (mm) of a pair on one grid;
        ``dicom_series``: how the series of DICOM patient folders ``<id>/`` are picked (A, B);
        None: NIfTI files only (such folders are not volumes).
        """
        for name, value in (("context_slices", context_slices), ("resize_to", resize_to),
                            ("volume_cache", volume_cache)):
            if value < 0:
                raise ConfigError(f"--{name} must be 0 or positive, got {value}")
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
        pairs = pair_by_name(dir_a, dir_b, dicom_folders=dicom_series is not None)[:max_patients]
        self.patient_ids: list[str] = [pid for pid, _, _ in pairs]
        #: Each patient's A and B: a NIfTI file or a DICOM patient folder (B: None, no truth).
        self.paths_a: list[Path] = [a for _, a, _ in pairs]
        self.paths_b: list[Path | None] = [b for _, _, b in pairs]
        self.lazy = volume_cache > 0
        folders = [p for p in (*self.paths_a, *self.paths_b) if p is not None and p.is_dir()]
        if self.lazy and folders:
            raise ConfigError(f"{folders[0]}: a DICOM series folder; --volume_cache reads NIfTI "
                              f"files only, DICOM series are read whole: run without "
                              f"--volume_cache")
        self.stacks_a: Sequence[SliceStack]
        self.stacks_b: Sequence[SliceStack]
        if self.lazy:
            self.stacks_a, self.stacks_b = _lazy_pairs(pairs, volume_cache, geometry_atol_mm)
            memory = (f"none yet, volumes decoded on use, at most {volume_cache} per side "
                      f"and process (~{_largest_pairs_mib(self.stacks_a, volume_cache):.1f} "
                      "MiB as int16)")
        else:
            self.stacks_a, self.stacks_b = _load_pairs(pairs, geometry_atol_mm,
                                                       dicom_series or DEFAULT_DICOM_SERIES)
            memory = describe_memory([*self.stacks_a, *self.stacks_b])
        self.infos_a = [self.volume_info(i) for i in range(len(pairs))]
        self.index = self.sample_index(max_slices)
        logger.info("%s: %d patients, %d %s; voxels held in memory: %s", self.root,
                    len(self.patient_ids), len(self.index), self.sample_unit, memory)

    @classmethod
    def from_options(cls, opt: argparse.Namespace) -> NiftiAlignedDataset:
        """The dataset of ``<dataroot>/<phase>A`` and ``<phase>B`` as the options describe
        (the registry's constructor; ``--num_test`` limits the patients at test time)."""
        _check_options(opt)
        dir_a, dir_b = dataroot_folders(opt)
        return cls(dir_a, dir_b, hu_min=opt.hu_min,
                   hu_max=opt.hu_max, resize_to=opt.resize_to,
                   context_slices=opt.context_slices, a_to_b=opt.direction == "AtoB",
                   flip=opt.isTrain and not opt.no_flip,
                   max_patients=None if opt.isTrain else opt.num_test,
                   max_slices=opt.max_dataset_size, volume_cache=opt.volume_cache,
                   geometry_atol_mm=opt.geometry_atol_mm, dicom_series=dicom_choices(opt))

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

    def slice_shapes(self) -> set[tuple[int, int]]:
        """Distinct native (H, W) slice sizes in the dataset, in pixels."""
        return {stack_shape(i.shape, i.affine)[1:] for i in self.infos_a}

    def sample_index(self, max_samples: float) -> list[tuple[int, int]]:
        """(patient, slice) of every sample; at most ``max_samples``, spread over all slices
        (called once by ``__init__``, after the volumes are indexed)."""
        return spread_index([stack_shape(i.shape, i.affine)[0] for i in self.infos_a],
                            max_samples)

    def sample_patients(self) -> list[int]:
        """The patient (volume) index of every sample, in sample order."""
        return [v for v, _ in self.index]

    def __len__(self) -> int:
        """Number of axial slices served."""
        return len(self.index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Slice ``index``: see the class docstring for the keys."""
        v, s = self.index[index]
        flip = self.flip and bool(torch.rand(()) < 0.5)  # torch RNG: seeded per worker
        item: dict[str, Any] = {"patient_id": self.patient_ids[v], "slice_index": s,
                                "patient_index": v}
        sides = [("A", self.stacks_a)] + ([("B", self.stacks_b)] if self.stacks_b else [])
        for key, stacks in sides:
            is_input = (key == "A") == self.a_to_b
            hu = context_window(stacks[v].hu, s, self.context_slices) if is_input \
                else stacks[v].hu[s]  # flipped in NumPy: see slices_to_unit on threads
            item[key] = slice_to_unit(hu[..., ::-1] if flip else hu, self.hu_min, self.hu_max,
                                      self.resize_to)
            item[f"{key}_paths"] = str(stacks[v].info.path)
        if not self.a_to_b:
            item["A"], item["B"] = item["B"], item["A"]
            item["A_paths"], item["B_paths"] = item["B_paths"], item["A_paths"]
        return item


def dataroot_folders(opt: argparse.Namespace) -> tuple[Path, Path | None]:
    """``<dataroot>/<phase>A`` (AVG) and ``<phase>B`` (phase 0; None where it is missing and
    not needed: testing AtoB); DataError naming the missing folder otherwise."""
    root = Path(opt.dataroot)
    dir_a, dir_b = root / f"{opt.phase}A", root / f"{opt.phase}B"
    if not dir_a.is_dir():
        raise DataError(f"{dir_a}: folder not found; a dataroot holds {opt.phase}A/ (AVG) and "
                        f"{opt.phase}B/ (phase 0), as written by prepare_dataset.py")
    if not dir_b.is_dir() and (opt.isTrain or opt.direction != "AtoB"):
        raise DataError(f"{dir_b}: folder not found; {opt.phase}A/ needs its {opt.phase}B/")
    return dir_a, dir_b if dir_b.is_dir() else None


def dicom_choices(opt: argparse.Namespace) -> tuple[SeriesChoice, SeriesChoice] | None:
    """How DICOM patient folders' series are picked (A: ``--avg_series``, B:
    ``--phase0_series``), for options that have them (``test.py``'s); None for the others
    (training reads the NIfTI files prepare_dataset.py writes)."""
    if getattr(opt, "avg_series", None) is None:
        return None
    return (SeriesChoice(opt.avg_series, "--avg_series"),
            SeriesChoice(opt.phase0_series, "--phase0_series"))


def _check_options(opt: argparse.Namespace) -> None:
    """Refuse option combinations the NIfTI slice dataset cannot serve (ConfigError)."""
    if not opt.axial_slice:
        raise ConfigError("--dataset_mode nifti_aligned serves 2-D axial slices: pass "
                          "--axial_slice")
    if opt.preprocess != "none":
        raise ConfigError(f"--dataset_mode nifti_aligned supports --preprocess none only (got "
                          f"'{opt.preprocess}'); use --resize_to N to resize slices to N x N")
    if opt.context_slices < 0:
        raise ConfigError(f"--context_slices must be 0 or positive, got {opt.context_slices}")
    expected_nc = 2 * opt.context_slices + 1
    if opt.input_nc != expected_nc or opt.output_nc != 1:
        raise ConfigError(f"--dataset_mode nifti_aligned with --context_slices "
                          f"{opt.context_slices} serves {expected_nc} input channel(s) and 1 "
                          f"output channel; got --input_nc {opt.input_nc} --output_nc "
                          f"{opt.output_nc}: pass --input_nc {expected_nc} --output_nc 1")


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
                _check_pair_geometry(a.info, b.info, atol_mm)
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
        _check_pair_geometry(a, b, atol_mm)
    return stacks_a, stacks_b


def _check_pair_geometry(a: VolumeInfo, b: VolumeInfo, atol_mm: float) -> None:
    """:func:`check_same_geometry` of an A/B pair, pointing a hand-made folder's user to
    prepare_dataset.py when it fails."""
    try:
        check_same_geometry(a, b, atol_mm)
    except DataError as exc:
        raise DataError(f"{exc}; prepare_dataset.py checks each pair's world grid and writes "
                        f"phase 0 in its AVG's voxel order") from exc


def _largest_pairs_mib(stacks: LazyStacks, count: int) -> float:
    """MiB of ``count`` of the largest volumes of ``stacks`` and their pairs, as int16."""
    sizes = sorted((int(np.prod(i.shape)) * 2 for i in stacks.infos), reverse=True)
    return 2 * sum(sizes[:count]) / 2**20


def spread_index(n_slices: list[int], max_size: float) -> list[tuple[int, int]]:
    """(volume, slice) of every sample, ``n_slices[v]`` samples of volume v; at most
    ``max_size``, spread evenly over all of them."""
    index = [(v, s) for v, n in enumerate(n_slices) for s in range(n)]
    if max_size < len(index):
        keep = np.linspace(0, len(index) - 1, num=max(1, int(max_size))).round().astype(int)
        index = [index[i] for i in keep]
    return index
