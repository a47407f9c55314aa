"""One volume in, its outputs beside ``--output``: the layout of ``scripts/predict.py`` and what
it refuses before anything is written.

``--output`` is phase 0: a NIfTI file, or with DICOM output the folder of a derived series.
Beside it go ``<stem>_std.nii.gz`` (``--samples`` N > 1, or ``--std_output``),
``<stem>_displacement.nii.gz`` (motion generators, or ``--displacement_output``), and with
``--phases`` ``<stem>_p50``, ``_mip`` and ``_avg`` (``_mean`` for fewer phases than the cycle):
NIfTI files, or series folders with DICOM output. The input is only read: an output that is the
input, lies in its folder or holds it, or two outputs on one path, are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from data.nifti_io import NIFTI_EXTENSIONS, is_nifti_file
from inference.pipeline import CycleKind, OutputPaths, refuse_nifti_inputs
from models.cycle import cycle_volumes
from util.errors import ConfigError, OutputError
from util.names import DISPLACEMENT_SUFFIX, STD_SUFFIX, cycle_suffix


def beside_output(output: Path, suffix: str) -> Path:
    """``<output stem><suffix>`` with the output's extension, beside it: ``p0.nii.gz`` and
    ``_std`` -> ``p0_std.nii.gz``; a series folder ``p0/`` -> ``p0_std.nii.gz``."""
    ext = next((e for e in NIFTI_EXTENSIONS if output.name.lower().endswith(e)), "")
    stem = output.name[:len(output.name) - len(ext)]
    return output.with_name(f"{stem}{suffix}{output.name[len(stem):] or '.nii.gz'}")


@dataclass(frozen=True)
class SingleOutput:
    """Where the user asked the outputs to go: ``output`` (phase 0; a series folder when
    ``dicom``), ``std_output`` and ``displacement_output`` (None: beside ``output``), and
    whether an occupied series folder may be replaced (``overwrite``)."""

    output: Path
    dicom: bool = False
    std_output: Path | None = None
    displacement_output: Path | None = None
    overwrite: bool = False

    def paths(self, samples: int, motion: bool, phases: tuple[float, ...] = ()) -> OutputPaths:
        """The outputs of a prediction of ``samples`` passes by a (``motion``) generator, with
        the cycle of ``phases``: the standard deviation for ``samples`` N > 1, the field of a
        motion generator, and the cycle's other phases, MIP and mean."""
        std = (self.std_output or beside_output(self.output, STD_SUFFIX)) if samples > 1 \
            else None
        field = (self.displacement_output or beside_output(self.output, DISPLACEMENT_SUFFIX)) \
            if motion else None
        cycle = self._cycle(phases)
        return OutputPaths(volume=None if self.dicom else self.output,
                           series=self.output if self.dicom else None, std=std, field=field,
                           cycle_volumes=() if self.dicom else cycle,
                           cycle_series=cycle if self.dicom else (),
                           overwrite_series=self.overwrite)

    def _cycle(self, phases: tuple[float, ...]) -> tuple[tuple[CycleKind, Path], ...]:
        """Where the phases other than 0 and the MIP and mean of ``phases`` go, beside
        ``output``: ``p0_p50.nii.gz``, ``p0_mip.nii.gz``, ``p0_avg.nii.gz`` (``p0_mean.nii.gz``
        for fewer phases than the cycle); series folders ``p0_p50/`` ... with DICOM."""
        def beside(suffix: str) -> Path:
            return (self.output.with_name(self.output.name + suffix) if self.dicom
                    else beside_output(self.output, suffix))

        return tuple((v.kind, beside(cycle_suffix(v.kind))) for v in cycle_volumes(phases)
                     if v.kind != 0)


def check_input(source: Path, dicom: bool) -> None:
    """ConfigError unless ``source`` is a file or a folder, and a folder (DICOM) when the
    output is DICOM."""
    if not source.exists():
        raise ConfigError(f"--input {source}: no such file or folder")
    if dicom and not source.is_dir():
        refuse_nifti_inputs([source], "the folder of the AVG series", option="--input")


def named_outputs(paths: OutputPaths) -> list[tuple[str, Path, bool]]:
    """(option, path, whether a series folder) of every output of ``paths``, in the order
    they are checked."""
    named = [("--output", paths.volume, False), ("--output", paths.series, True),
             ("--std_output", paths.std, False), ("--displacement_output", paths.field, False)]
    named += [("--phases", path, False) for _kind, path in paths.cycle_volumes]
    named += [("--phases", path, True) for _kind, path in paths.cycle_series]
    return [(option, path, folder) for option, path, folder in named if path is not None]


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies below it (both resolved)."""
    return path.resolve().is_relative_to(folder.resolve())


def check_outputs(source: Path, paths: OutputPaths) -> None:
    """ConfigError (OutputError for an occupied series folder) before anything is written
    unless the outputs are NIfTI paths (the series folders: not a NIfTI name, not a file,
    empty or ``paths.overwrite_series``) that are neither the input, nor in an input folder,
    nor a folder holding the input, nor a folder, nor each other, nor inside a series folder."""
    named = named_outputs(paths)
    for option, path, is_folder in named:
        if _inside(path, source) if source.is_dir() else path.resolve() == source.resolve():
            where = "is the input" if path.resolve() == source.resolve() else \
                f"lies inside the input folder {source}"
            raise ConfigError(f"{option} {path} {where}: the source is never written into")
        if is_folder:
            _check_series_folder(path, source, paths.overwrite_series)
        elif not is_nifti_file(path):
            hint = " (or pass --output_format dicom to write a DICOM series folder)" \
                if option == "--output" and source.is_dir() else ""
            raise ConfigError(f"{option} {path}: must end in .nii or .nii.gz{hint}")
        elif path.is_dir():
            raise ConfigError(f"{option} {path} is a folder; give a file name (.nii.gz)")
    for k, (option, path, _folder) in enumerate(named):
        for other, other_path, other_is_folder in named[:k]:
            if path.resolve() == other_path.resolve():
                raise ConfigError(f"{option} {path} is also {other}: one output would "
                                  f"overwrite the other")
            if other_is_folder and _inside(path, other_path):
                raise ConfigError(f"{option} {path} lies inside the --output series folder "
                                  f"{other_path}, which holds the series only")


def _check_series_folder(folder: Path, source: Path, overwrite: bool) -> None:
    """Refuse a series folder that is a NIfTI name, a file, holds the input, or is not empty
    (unless ``overwrite``)."""
    if is_nifti_file(folder):
        raise ConfigError(f"--output {folder}: with --output_format dicom, --output is the "
                          f"folder the series is written into, not a .nii/.nii.gz file")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--output {folder} is a file; --output_format dicom writes a folder")
    if _inside(source, folder):
        raise ConfigError(f"--output {folder} holds the input {source}: writing the series "
                          f"there would replace the source")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise OutputError(f"--output {folder}: the folder exists and is not empty; refusing "
                          f"to replace it (pass --overwrite to replace it, or choose another "
                          f"folder)")
