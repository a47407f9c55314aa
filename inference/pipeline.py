"""The one inference flow of ``test.py`` and ``scripts/predict.py``: load, predict, write.

:func:`load_pipeline` loads a trained run (:func:`models.trained_run.load_generator`) and
refuses what it cannot do (``--samples`` without dropout, ``--phases`` on a phase-0 run);
:meth:`InferencePipeline.predict` predicts phase 0 of one patient's slice stack and, when asked,
the other phases of the cycle (:func:`models.cycle.predict_cycle`); :meth:`InferencePipeline.write`
writes every output where an :class:`OutputPaths` says, in the source's geometry, and returns
what it wrote. The refusals of DICOM output (NIfTI inputs, series without a frame of reference)
are here too, so that both entry points ask them in the same words, before anything is
written. Where the outputs go is the entry point's layout (:mod:`inference.results_folder`,
:mod:`inference.single_volume`); settings arrive as the frozen values below, never as options.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data.ct_volumes import SliceStack
from data.dicom_io import DicomSource
from data.dicom_write import DERIVED_SERIES_OFFSET, write_derived_series
from data.displacement_field import stack_field_to_world, write_displacement_field
from data.nifti_io import save_volume
from models.cycle import CyclePrediction, predict_cycle
from models.inference import StackPrediction, check_sample_count, check_samples, float32_storage
from models.networks import is_motion_generator
from models.settings import GeneratorSettings
from models.trained_run import TrainedGenerator, load_generator
from models.volume_inference import DEFAULT_OVERLAP, field_summary
from util.errors import ConfigError, DataError
from util.geometry import from_slice_stack
from util.phases import parse_phases
from util.speed import resolve_speed

logger = logging.getLogger(__name__)

#: A volume of a cycle: a phase (%) or one of :data:`util.names.CYCLE_KINDS`.
CycleKind = float | str


@dataclass(frozen=True)
class RunChoice:
    """Which trained generator: ``<checkpoints_dir>/<name>/<checkpoint>_net_G.pth``
    (``checkpoint``: ``latest``, ``best``, ``N`` or ``iter_N``), on the GPU ``gpu_ids[0]``
    (the CPU when empty); ``settings``: its architecture and input, None for the run's own
    ``opt.json``."""

    checkpoints_dir: Path
    name: str
    checkpoint: str = "latest"
    gpu_ids: tuple[int, ...] = ()
    settings: GeneratorSettings | None = None

    @property
    def run_dir(self) -> Path:
        """The run folder, only read."""
        return self.checkpoints_dir / self.name

    @property
    def device(self) -> torch.device:
        """Where the generator runs."""
        return torch.device(f"cuda:{self.gpu_ids[0]}" if self.gpu_ids else "cpu")

    @property
    def label(self) -> str:
        """``<name> <checkpoint>`` (``ct_phase0 best``): which model a derived series says
        made it."""
        return f"{self.name} {self.checkpoint}"


@dataclass(frozen=True)
class PhaseRequest:
    """``--phases`` as given (``text``, named in refusals) and the phases (%) it asks for
    besides phase 0: () without it, the ten standard phases for ``all``."""

    text: str = ""
    phases: tuple[float, ...] = ()

    @classmethod
    def parse(cls, text: str) -> PhaseRequest:
        """The request of ``--phases text``; ConfigError for text that names no phases."""
        text = text.strip()
        return cls(text, parse_phases(text) if text else ())


@dataclass(frozen=True)
class PredictSettings:
    """How each patient is predicted: ``batch_size`` slices per forward pass, ``samples``
    passes (1: deterministic; N > 1: the mean and std of N passes with dropout from ``seed``),
    mixed precision ``amp`` (:data:`util.speed.AMP_MODES`), the share of a volumetric
    generator's window its neighbour overlaps, and the phases of the cycle to predict too.
    ConfigError for fewer than one sample."""

    batch_size: int = 1
    samples: int = 1
    seed: int = 0
    amp: str = "off"
    window_overlap: float = DEFAULT_OVERLAP
    cycle: PhaseRequest = field(default_factory=PhaseRequest)

    def __post_init__(self) -> None:
        check_sample_count(self.samples)


@dataclass(frozen=True)
class OutputPaths:
    """Where one patient's outputs go; None (or empty) for an output not written.

    ``volume``: phase 0 as NIfTI (the source's geometry and storage); ``series``: phase 0 as a
    derived DICOM series folder described as ``series_description``; ``std``: the standard
    deviation of sampled passes (NIfTI, float32); ``field``: a motion generator's displacement
    field (NIfTI); ``cycle_volumes``/``cycle_series``: ((kind, path), ...) of the cycle's other
    volumes (phases, MIP, mean) as NIfTI / DICOM series; ``cycle_fields``: ((phase, path), ...)
    of the other phases' displacement fields. ``overwrite_series``: replace an existing series
    folder. A std or field is written only when the prediction has one."""

    volume: Path | None = None
    series: Path | None = None
    std: Path | None = None
    field: Path | None = None
    cycle_volumes: tuple[tuple[CycleKind, Path], ...] = ()
    cycle_series: tuple[tuple[CycleKind, Path], ...] = ()
    cycle_fields: tuple[tuple[float, Path], ...] = ()
    series_description: str = "phase 0"
    overwrite_series: bool = False


@dataclass(frozen=True)
class PatientPrediction:
    """Phase 0 of one patient and, with a cycle asked, every phase asked (phase 0 among them
    when asked), in the slice-stack frame."""

    phase0: StackPrediction
    cycle: CyclePrediction | None = None


@dataclass(frozen=True)
class Written:
    """What :meth:`InferencePipeline.write` wrote: phase 0 as NIfTI and as a series (None when
    not asked), the displacement field's figures (:func:`models.volume_inference.field_summary`,
    None without a field), and {kind: NIfTI file} of the cycle's volumes (phase 0, when asked,
    being :attr:`volume`)."""

    volume: Path | None
    series: Path | None
    field_figures: dict[str, float] | None = None
    cycle_volumes: dict[CycleKind, Path] = field(default_factory=dict)

    def volume_file(self) -> Path:
        """The phase-0 NIfTI file (RuntimeError when the paths asked for none)."""
        if self.volume is None:
            raise RuntimeError("no phase-0 NIfTI volume was asked for")
        return self.volume


def check_cycle(request: PhaseRequest, generator: TrainedGenerator) -> None:
    """ConfigError for phases asked of a generator trained on phase 0 alone."""
    if request.phases and not generator.settings.phase_input:
        raise ConfigError(f"--phases {request.text}: {generator.weights} was trained on phase 0 "
                          f"alone (without --phases); it cannot predict other phases")


def refuse_nifti_inputs(nifti: Sequence[Path], remedy: str, option: str | None = None) -> None:
    """ConfigError when DICOM output is asked of NIfTI inputs (``nifti``; none: nothing to
    refuse), which have no patient, study or frame of reference to place a derived series in.
    ``option`` names a single input's option (``--input``); without it the inputs are counted.
    ``remedy``: what to give instead."""
    if not nifti:
        return
    if option is not None:
        found = f"a DICOM input series, but {option} {nifti[0]} is a file (NIfTI), which has"
    else:
        more = " ..." if len(nifti) > 3 else ""
        found = (f"DICOM input series, but {len(nifti)} input(s) are NIfTI files "
                 f"({', '.join(map(str, nifti[:3]))}{more}), which have")
    raise ConfigError(f"--output_format dicom needs {found} no patient, study or frame of "
                      f"reference to place a derived series in; give {remedy}, or "
                      f"--output_format nifti")


def check_series_source(source: DicomSource | None) -> None:
    """DataError naming the folder of an input series without a FrameOfReferenceUID or
    StudyInstanceUID, beside which a derived series could not be placed."""
    if source is not None and not (source.frame_of_reference_uid and source.study_uid):
        raise DataError(f"{source.folder}: the input series has no FrameOfReferenceUID or "
                        f"StudyInstanceUID, so a derived series could not be placed beside "
                        f"it; use --output_format nifti")


@dataclass(frozen=True)
class InferencePipeline:
    """A loaded generator, how to run it, and the model label its DICOM series carry."""

    generator: TrainedGenerator
    settings: PredictSettings
    amp_dtype: torch.dtype | None
    label: str

    @property
    def motion(self) -> bool:
        """Whether the generator also predicts a displacement field."""
        return is_motion_generator(self.generator.net)

    def predict(self, source: SliceStack) -> PatientPrediction:
        """Phase 0 of ``source`` (the AVG, (S, H, W) HU) and the cycle asked, if any."""
        s = self.settings
        options: dict[str, Any] = {
            "spacing_mm": source.stack_spacing_mm, "batch_size": s.batch_size,
            "samples": s.samples, "seed": s.seed, "amp_dtype": self.amp_dtype,
            "overlap": s.window_overlap}
        phase0 = self.generator.predict(source.hu, **options)
        if not s.cycle.phases:
            return PatientPrediction(phase0)
        return PatientPrediction(phase0, predict_cycle(self.generator, source.hu, s.cycle.phases,
                                                       {0.0: phase0}, **options))

    def write(self, prediction: PatientPrediction, source: SliceStack,
              paths: OutputPaths) -> Written:
        """Write ``prediction`` of ``source`` where ``paths`` say: HU volumes with the source's
        geometry and storage, derived series registered with its DICOM series."""
        affine, info = source.info.affine, source.info
        hu = from_slice_stack(prediction.phase0.hu, affine)
        volume = series = figures = None
        if paths.volume is not None:
            volume = save_volume(hu, info, paths.volume)
            logger.info("wrote %s: %d axial slices, HU, the geometry of %s", volume,
                        source.hu.shape[0], info.path)
        if paths.series is not None:
            series = self._series(hu, source, paths.series, paths.series_description,
                                  DERIVED_SERIES_OFFSET, paths.overwrite_series)
            logger.info("wrote %s: a derived CT series of %d slices registered with %s", series,
                        hu.shape[2], _dicom(source).folder)
        std_hu, field_vox = prediction.phase0.std_hu, prediction.phase0.displacement_vox
        if paths.std is not None and std_hu is not None:
            save_volume(from_slice_stack(std_hu, affine), float32_storage(info), paths.std)
            logger.info("wrote %s: voxelwise standard deviation of %d passes with dropout "
                        "(seed %d), HU, float32", paths.std, self.settings.samples,
                        self.settings.seed)
        if paths.field is not None and field_vox is not None:
            write_displacement_field(paths.field, stack_field_to_world(field_vox, affine), info)
            figures = field_summary(field_vox, source.stack_spacing_mm)
            logger.info("wrote %s: displacement field, RAS mm, up to %.1f mm (p95 %.1f), "
                        "folding %.3f %% of voxels", paths.field, figures["max_mm"],
                        figures["p95_mm"], figures["folding_pct"])
        cycle = ({} if prediction.cycle is None
                 else self._write_cycle(prediction.cycle, source, paths))
        if volume is not None and prediction.cycle is not None and 0 in prediction.cycle.phases:
            cycle[0.0] = volume
        return Written(volume, series, figures, cycle)

    def _write_cycle(self, cycle: CyclePrediction, source: SliceStack,
                     paths: OutputPaths) -> dict[CycleKind, Path]:
        """The cycle's volumes other than phase 0 and their fields where ``paths`` say;
        returns {kind: NIfTI file}."""
        affine, info = source.info.affine, source.info
        volumes = {v.kind: v for v in cycle.volumes()}
        written: dict[CycleKind, Path] = {}
        for kind, path in paths.cycle_volumes:
            written[kind] = save_volume(from_slice_stack(cycle.volume_hu(kind), affine), info,
                                        path)
            logger.info("wrote %s: %s", path, volumes[kind].description)
        for percent, path in paths.cycle_fields:
            field_vox = cycle.phases[percent].displacement_vox
            if field_vox is not None:
                write_displacement_field(path, stack_field_to_world(field_vox, affine), info)
        for kind, path in paths.cycle_series:
            self._series(from_slice_stack(cycle.volume_hu(kind), affine), source, path,
                         volumes[kind].description, volumes[kind].series_offset,
                         paths.overwrite_series)
            logger.info("wrote %s: %s", path, volumes[kind].description)
        return written

    def _series(self, hu: np.ndarray, source: SliceStack, folder: Path, description: str,
                series_offset: int, overwrite: bool) -> Path:
        """Write ``hu`` ((I, J, K) HU on the source's grid) as a derived series in ``folder``."""
        return write_derived_series(hu, _dicom(source), folder, description, self.label,
                                    overwrite=overwrite, series_offset=series_offset)


def _dicom(source: SliceStack) -> DicomSource:
    """The series ``source`` was read from (:func:`refuse_nifti_inputs` refused NIfTI inputs
    of DICOM outputs before anything was written)."""
    if source.dicom is None:
        raise RuntimeError(f"{source.info.path}: the input is not a DICOM series")
    return source.dicom


def load_pipeline(run: RunChoice, settings: PredictSettings) -> InferencePipeline:
    """The generator of ``run`` ready to predict with ``settings``; ConfigError (before
    anything is written) for a run that cannot be read, ``--samples`` N > 1 without dropout,
    or phases asked of a phase-0 run."""
    generator = load_generator(run.run_dir, run.checkpoint, run.device, run.settings)
    check_samples(generator.net, settings.samples, str(run.run_dir))
    check_cycle(settings.cycle, generator)
    amp_dtype = resolve_speed(run.device, amp=settings.amp).amp_dtype
    return InferencePipeline(generator, settings, amp_dtype, run.label)
