"""Run a trained generator over a dataset split and write HU volumes, pictures and a summary.

    python test.py --dataroot ./datasets/ct_phases_dataset --name ct_phase0_generator \
        --model pix2pix --dataset_mode nifti_aligned --preprocess none --input_nc 1 \
        --output_nc 1 --axial_slice

Reads ``<dataroot>/<phase>A`` (and ``<phase>B`` when present) and writes, under
``<results_dir>/<name>/<phase>_<epoch>/``: ``volumes/<id>_fake_B.nii.gz`` (HU, the source AVG's
shape, affine and on-disk type), per-slice pictures with ``index.html``, and, with ground truth,
``metrics.json`` (MAE in HU of the prediction and of the AVG itself against phase 0).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from data import create_dataloader, create_dataset
from data.ct_volumes import slices_to_volume
from data.nifti_aligned_dataset import NiftiAlignedDataset
from data.nifti_io import load_volume, save_volume
from models import create_model
from models.base_model import BaseModel
from options.test_options import TestOptions
from train import check_sizes
from util.atomic import atomic_write_json
from util.cli import run_cli
from util.errors import ConfigError
from util.geometry import from_slice_stack
from util.html import HTMLPage
from util.metrics import mae_hu
from util.visualizer import save_test_images

logger = logging.getLogger("test")


@dataclass(frozen=True)
class PatientResult:
    """Where a patient's predicted volume went, and its MAE in HU when the truth is known."""

    patient_id: str
    volume_path: Path
    mae_model_hu: float | None
    mae_avg_hu: float | None


def write_patient(dataset: NiftiAlignedDataset, index: int, pred: torch.Tensor,
                  volume_dir: Path, hu_min: float, hu_max: float) -> PatientResult:
    """Reassemble a patient's predicted slices ((S, 1, h, w) in [-1, 1]) into an HU volume with
    the AVG's geometry, save it, and score the saved file (as a user will read it, after the
    on-disk type's rounding) and the AVG against phase 0 when present."""
    info = dataset.volume_info(index)
    pid = dataset.patient_ids[index]
    hu = slices_to_volume(pred, info, hu_min, hu_max)
    path = save_volume(hu, info, volume_dir / f"{pid}_fake_B.nii.gz")
    if not dataset.has_target or not dataset.a_to_b:
        return PatientResult(pid, path, None, None)
    saved = load_volume(path).hu
    truth = from_slice_stack(dataset.stacks_b[index].hu, info.affine)
    avg = from_slice_stack(dataset.stacks_a[index].hu, info.affine)
    return PatientResult(pid, path, mae_hu(saved, truth), mae_hu(avg, truth))


def predict_volumes(model: BaseModel, dataset: NiftiAlignedDataset, opt: argparse.Namespace,
                    out_dir: Path, page: HTMLPage | None) -> list[PatientResult]:
    """Predict every slice in order; write each patient's volume as soon as it is complete."""
    loader = create_dataloader(dataset, batch_size=opt.batch_size, shuffle=False, num_workers=0)
    pending: dict[int, dict[int, torch.Tensor]] = {}
    results = []
    for batch in tqdm(loader, desc="predicting", unit="batch"):
        model.set_input(batch)
        model.test()
        fake = model.fake_B.detach().cpu()
        for k, (v, s) in enumerate(zip(batch["patient_index"].tolist(),
                                       batch["slice_index"].tolist(), strict=True)):
            pending.setdefault(v, {})[s] = fake[k]
            if page is not None:
                visuals = {name: t[k:k + 1] for name, t in model.get_current_visuals().items()}
                save_test_images(page, visuals, f"{dataset.patient_ids[v]}_slice{s:03d}",
                                 width=opt.display_winsize)
        for v in [v for v in pending if len(pending[v]) == dataset.stacks_a[v].hu.shape[0]]:
            slices = pending.pop(v)
            pred = torch.stack([slices[s] for s in sorted(slices)])
            results.append(write_patient(dataset, v, pred, out_dir / "volumes", opt.hu_min,
                                         opt.hu_max))
    for v, slices in pending.items():
        logger.warning("%s: only %d of %d slices predicted (--max_dataset_size?); volume not "
                       "written", dataset.patient_ids[v], len(slices),
                       dataset.stacks_a[v].hu.shape[0])
    return results


def summarize(results: list[PatientResult], out_dir: Path) -> str:
    """A table of the results; also written as ``metrics.json`` when any truth was available."""
    scored = [r for r in results if r.mae_model_hu is not None]
    lines = [f"{'patient':<24}{'MAE model (HU)':>16}{'MAE AVG (HU)':>14}  volume"]
    for r in results:
        model_mae = f"{r.mae_model_hu:.1f}" if r.mae_model_hu is not None else "-"
        avg_mae = f"{r.mae_avg_hu:.1f}" if r.mae_avg_hu is not None else "-"
        lines.append(f"{r.patient_id:<24}{model_mae:>16}{avg_mae:>14}  {r.volume_path}")
    if scored:
        mean_model = float(np.mean([r.mae_model_hu for r in scored]))
        mean_avg = float(np.mean([r.mae_avg_hu for r in scored]))
        lines.append(f"{'mean':<24}{mean_model:>16.1f}{mean_avg:>14.1f}")
        atomic_write_json(out_dir / "metrics.json", {
            "region": "whole volume", "units": "HU",
            "patients": {r.patient_id: {"mae_model_hu": r.mae_model_hu,
                                        "mae_avg_baseline_hu": r.mae_avg_hu} for r in scored},
            "mean": {"mae_model_hu": mean_model, "mae_avg_baseline_hu": mean_avg}})
    return "\n".join(lines)


def test(opt: argparse.Namespace) -> Path:
    """Run the test; return the results folder."""
    dataset = create_dataset(opt)
    if not isinstance(dataset, NiftiAlignedDataset):
        raise ConfigError("test.py writes volumes from --dataset_mode nifti_aligned only")
    check_sizes(dataset, opt)
    model = create_model(opt)
    model.setup()
    if opt.eval:
        model.eval()
    out_dir = Path(opt.results_dir) / opt.name / f"{opt.phase}_{opt.epoch}"
    page = None if opt.no_pictures else HTMLPage(
        out_dir, f"{opt.name}: {opt.phase}, epoch {opt.epoch}")
    results = predict_volumes(model, dataset, opt, out_dir, page)
    if page is not None:
        page.save()
    table = summarize(results, out_dir)
    print(table)  # noqa: T201 - the command's summary table
    print(f"volumes: {out_dir / 'volumes'}")  # noqa: T201
    if page is not None:
        print(f"pictures: {out_dir / 'index.html'}")  # noqa: T201
    return out_dir


def main(argv: list[str] | None = None) -> int:
    """Parse options and test; exit status 0 on success, 1 on a reported error."""
    def go() -> int:
        test(TestOptions().parse(argv))
        return 0

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
