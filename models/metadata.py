"""Checkpoints with their CT metadata: ``<epoch>_metadata.json`` beside ``<epoch>_net_*.pth``.

The metadata records what a checkpoint is and what it was trained on, so that a prediction can be
checked against it later: model and architecture, every setting of the generator
(``generator_settings``: the fields of :class:`models.settings.GeneratorSettings`, checked
against ``opt.json`` when the generator is loaded), input/output, slice size, voxel spacing and
slice thickness read from the training volumes (with their range when patients differ), training
parameters, preprocessing and HU window, the training patients, library versions and git commit.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import platform
import subprocess
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from data.image_folder import make_dataset
from data.nifti_io import nifti_stem, read_geometry
from models.base_model import BaseModel, load_weights
from models.settings import ARCHITECTURE_NAMES, RunSettings
from util.errors import DataError
from util.file_set import FileSet, file_set
from util.geometry import stack_shape, stack_spacing_mm
from util.settings import settings_to_json

logger = logging.getLogger(__name__)

METADATA_VERSION = 1
#: The options recorded as the checkpoint's ``training`` section (with ``max_slices``).
TRAINING_NAMES = ("batch_size", "lr", "beta1", "lambda_L1", "lambda_GAN", "motion_weight",
                  "gan_mode", "pool_size", "n_epochs", "n_epochs_decay", "lr_policy",
                  "epoch_count", "seed")
Geometry = tuple[tuple[int, int, int], np.ndarray]
#: Stages more members of a checkpoint set, given {network name: SHA-256 of its weights file}.
StageExtra = Callable[[FileSet, Mapping[str, str]], None]


def summarize_geometry(volumes: Mapping[str, Geometry]) -> dict[str, Any]:
    """Per-patient and overall geometry of training volumes.

    volumes: {patient id: ((I, J, K) voxels, (4, 4) affine)}. Spacing in mm is derived from each
    affine: row/column spacing of the axial slices and slice thickness; ``range`` gives min/max
    over patients and ``uniform`` says whether all patients agree (both None with no volumes,
    e.g. a model trained on pictures).
    """
    patients: dict[str, Any] = {}
    for pid, (shape, affine) in sorted(volumes.items()):
        thickness, row, col = stack_spacing_mm(affine)
        n_slices, height, width = stack_shape(shape, affine)
        patients[pid] = {"voxels": list(shape), "axial_slices": n_slices,
                         "slice_size_px": [height, width],
                         "pixel_spacing_mm": [round(row, 6), round(col, 6)],
                         "slice_thickness_mm": round(thickness, 6),
                         "orientation": "".join(nib.orientations.aff2axcodes(affine))}

    def span(values: list[float]) -> dict[str, float]:
        return {"min": min(values), "max": max(values)}

    rows = [p["pixel_spacing_mm"][0] for p in patients.values()]
    cols = [p["pixel_spacing_mm"][1] for p in patients.values()]
    thick = [p["slice_thickness_mm"] for p in patients.values()]
    sizes = {tuple(p["slice_size_px"]) for p in patients.values()}
    if not patients:  # trained on pictures (--dataset_mode aligned), not volumes
        return {"patients": {}, "range": None, "uniform": None, "slice_sizes_px": []}
    return {
        "patients": patients,
        "range": {"pixel_spacing_row_mm": span(rows), "pixel_spacing_col_mm": span(cols),
                  "slice_thickness_mm": span(thick),
                  "axial_slices": span([p["axial_slices"] for p in patients.values()])},
        "uniform": len({*rows}) == 1 and len({*cols}) == 1 and len({*thick}) == 1
        and len(sizes) == 1,
        "slice_sizes_px": sorted([list(s) for s in sizes]),
    }


def geometry_from_folder(folder: Path) -> dict[str, Geometry]:
    """{patient id: (shape, affine)} of the NIfTI files in ``folder``, from headers only."""
    files = make_dataset(folder, nifti_only=True)
    if not files:
        raise DataError(f"{folder}: no NIfTI volumes to read the training geometry from")
    return {nifti_stem(p): read_geometry(p) for p in files}


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """Git commit of this code (and whether the tree had local changes), when in a checkout."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=here, capture_output=True, text=True,
                                 timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": bool(dirty) if commit else None}


def build_metadata(model: BaseModel, settings: RunSettings, epoch: str | int,
                   geometry: Mapping[str, Geometry], *, epoch_number: int | None = None,
                   total_iters: int | None = None,
                   validation: Mapping[str, Any] | None = None,
                   train_history: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The metadata dict of a checkpoint (see the module docstring for its parts), from the
    run's ``settings``.

    ``validation``: the latest validation result (epoch, patients, MAE in HU), when there is one;
    ``train_history``: the earlier training sets of a run resumed on changed data
    (``--allow_data_change``), recorded as ``patients.train_history``.
    """
    summary = summarize_geometry(geometry)
    run, data, g = settings.run, settings.data, settings.generator
    options = settings.to_json()
    avg, phase0 = ("average CT (AVG)", "respiratory phase 0 (end-inhale)")
    return {
        "format_version": METADATA_VERSION,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "checkpoint": {"epoch": str(epoch), "epoch_number": epoch_number,
                       "total_iters": total_iters,
                       "files": {n: model.checkpoint_path(epoch, n).name
                                 for n in model.saved_networks()}},
        "model": {"type": run.model, "class": type(model).__name__, "name": run.name},
        "architecture": {k: options[k] for k in
                         (*ARCHITECTURE_NAMES, "init_type", "netD", "ndf", "n_layers_D")},
        "generator_settings": settings_to_json(g),
        "input": {"image": avg if data.a_to_b else phase0, "units": "HU", "slice": "axial",
                  "channels": g.input_nc, "context_slices_each_side": g.context_slices},
        "output": {"image": phase0 if data.a_to_b else avg, "units": "HU", "slice": "axial",
                   "channels": g.output_nc},
        "image_dimensions": {"native_slice_sizes_px": summary["slice_sizes_px"],
                             "network_slice_size_px": g.resize_to or None},
        "voxel_geometry": summary,
        "training": {k: options[k] for k in TRAINING_NAMES}
        | {"max_slices": None if data.max_dataset_size == math.inf
           else int(data.max_dataset_size)},
        "preprocessing": {"dataset_mode": data.dataset_mode, "preprocess": data.preprocess,
                          "resize_to": g.resize_to, "flip": not data.no_flip,
                          "hu_window": {"hu_min": g.hu_min, "hu_max": g.hu_max,
                                        "maps_to": [-1.0, 1.0]},
                          "slice_frame": "axial slices inferior->superior; rows anterior->"
                                         "posterior; columns patient right->left"},
        "patients": {"train": sorted(geometry)}
        | ({"train_history": [dict(h) for h in train_history]} if train_history else {}),
        "software": {"python": platform.python_version(), "torch": torch.__version__,
                     "numpy": np.__version__, "nibabel": nib.__version__} | code_version(),
    } | ({"validation": dict(validation)} if validation is not None else {})


def save_model_with_metadata(model: BaseModel, settings: RunSettings, epoch: str | int,
                             save_dir: str | Path,
                             geometry: Mapping[str, Geometry] | None = None, *,
                             also: StageExtra | None = None, **progress: Any) -> Path:
    """Save ``<save_dir>/<epoch>_net_<name>.pth`` for every network and
    ``<save_dir>/<epoch>_metadata.json`` as one checkpoint set (:mod:`util.file_set`): after
    a crash or a full disk at any moment, ``save_dir`` holds either the whole new set or the
    whole previous one.

    ``settings``: the run's (:class:`models.settings.RunSettings`); ``geometry`` ({patient:
    (shape, affine)}) defaults to the headers in ``<dataroot>/<phase>A``; ``also(stage,
    digests)`` stages more members of the set (the training state), given the weights'
    SHA-256 by network name; ``progress`` may give ``epoch_number``, ``total_iters``,
    ``validation`` and ``train_history`` (see :func:`build_metadata`).
    Returns the metadata path.
    """
    if geometry is None:
        data = settings.data
        geometry = geometry_from_folder(Path(data.dataroot) / f"{data.phase}A")
    meta = build_metadata(model, settings, epoch, geometry, **progress)
    with file_set(save_dir, str(epoch)) as stage:
        digests = model.stage_networks(stage, epoch)
        path = stage.stage_json(f"{epoch}_metadata.json", meta)
        if also is not None:
            also(stage, digests)
    logger.info("saved checkpoint '%s' with metadata %s", epoch, path)
    return path


def load_model_with_metadata(path: str | Path, map_location: str | torch.device = "cpu",
                             ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a generator checkpoint and its metadata.

    ``path``: ``<epoch>_net_G.pth`` or ``<epoch>_metadata.json``. Returns (state dict of G,
    metadata dict); weights are loaded with ``weights_only=True``.
    """
    path = Path(path)
    epoch = path.name.removesuffix("_metadata.json").split("_net_")[0]
    meta_path = path.parent / f"{epoch}_metadata.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{meta_path}: cannot read checkpoint metadata ({exc})") from exc
    weights = path if path.suffix == ".pth" else path.parent / meta["checkpoint"]["files"]["G"]
    return load_weights(weights, torch.device(map_location)), meta
