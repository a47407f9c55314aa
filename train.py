"""Train an image-to-image model, e.g. pix2pix on axial CT slices (AVG -> phase 0).

    python train.py --dataroot ./datasets/ct_phases_dataset --name ct_phase0_generator \
        --model pix2pix --dataset_mode nifti_aligned --preprocess none --input_nc 1 \
        --output_nc 1 --axial_slice --norm instance --batch_size 1 --netG unet_64

Checkpoints (``latest`` and every ``--save_epoch_freq`` epochs, with ``<epoch>_metadata.json``),
``opt.json``, ``loss_log.txt`` and the HTML page go to ``<checkpoints_dir>/<name>/``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from torch.utils.data import DataLoader
from tqdm import tqdm

from data import create_dataloader, create_dataset
from data.base_dataset import BaseDataset
from data.nifti_aligned_dataset import NiftiAlignedDataset
from models import create_model
from models.base_model import BaseModel
from models.networks import check_slice_size
from options.train_options import TrainOptions
from save_ct_metadata import Geometry, save_model_with_metadata
from util.cli import run_cli, seed_everything
from util.visualizer import Visualizer

logger = logging.getLogger("train")


def network_slice_sizes(dataset: BaseDataset, opt: argparse.Namespace) -> set[tuple[int, int]]:
    """(H, W) sizes, in pixels, of the slices the generator will see."""
    if opt.resize_to > 0:
        return {(opt.resize_to, opt.resize_to)}
    if isinstance(dataset, NiftiAlignedDataset):
        return dataset.slice_shapes()
    return {(opt.crop_size, opt.crop_size)} if opt.preprocess != "none" else set()


def check_sizes(dataset: BaseDataset, opt: argparse.Namespace) -> None:
    """Refuse, before any training, slice sizes the chosen generator cannot take."""
    for height, width in sorted(network_slice_sizes(dataset, opt)):
        check_slice_size(opt.netG, height, width)


def training_geometry(dataset: BaseDataset) -> dict[str, Geometry] | None:
    """{patient: (shape, affine)} of the training volumes, for checkpoint metadata."""
    if not isinstance(dataset, NiftiAlignedDataset):
        return None
    return {pid: (info.shape, info.affine) for pid, info in
            zip(dataset.patient_ids, (s.info for s in dataset.stacks_a), strict=True)}


def crossed(total: int, step: int, every: int) -> bool:
    """Whether the counter passed a multiple of ``every`` while growing by ``step`` to ``total``."""
    return every > 0 and total // every > (total - step) // every


def train(opt: argparse.Namespace) -> Path:
    """Run the whole training; return the run's checkpoint folder."""
    seed_everything(opt.seed)
    dataset = create_dataset(opt)
    check_sizes(dataset, opt)
    loader = create_dataloader(dataset, batch_size=opt.batch_size,
                               shuffle=not opt.serial_batches, num_workers=opt.num_threads,
                               pin_memory=bool(opt.gpu_ids))
    logger.info("training slices: %d, batches per epoch: %d", len(dataset), len(loader))
    model = create_model(opt)
    model.setup()
    run_dir = Path(opt.checkpoints_dir) / opt.name
    visualizer = Visualizer(run_dir, opt.name, hu_min=opt.hu_min, hu_max=opt.hu_max,
                            display_id=opt.display_id, display_server=opt.display_server,
                            display_port=opt.display_port, display_env=opt.display_env,
                            use_wandb=opt.use_wandb, wandb_project=opt.wandb_project_name,
                            no_html=opt.no_html, display_winsize=opt.display_winsize)
    geometry = training_geometry(dataset)

    def save(tag: str | int, epoch: int, total_iters: int) -> None:
        save_model_with_metadata(model, opt, tag, run_dir, geometry, epoch_number=epoch,
                                 total_iters=total_iters)

    total_iters = 0
    last_epoch = opt.n_epochs + opt.n_epochs_decay
    for epoch in range(opt.epoch_count, last_epoch + 1):
        total_iters = run_epoch(model, loader, visualizer, opt, epoch, total_iters, save)
        if epoch % opt.save_epoch_freq == 0 or epoch == last_epoch:
            save("latest", epoch, total_iters)
        if epoch % opt.save_epoch_freq == 0:
            save(epoch, epoch, total_iters)
        model.update_learning_rate()
    logger.info("done: %d epochs, %d slices; checkpoints in %s", last_epoch - opt.epoch_count + 1,
                total_iters, run_dir)
    return run_dir


def run_epoch(model: BaseModel, loader: DataLoader, visualizer: Visualizer,
              opt: argparse.Namespace, epoch: int, total_iters: int,
              save: Callable[[str | int, int, int], None]) -> int:
    """One pass over the data: optimise, log, display and save ``latest`` on schedule.

    Returns the updated count of slices seen since the start of training.
    """
    epoch_iter = 0
    t_data_start = time.perf_counter()
    for batch in tqdm(loader, desc=f"epoch {epoch}", unit="batch", leave=False):
        t_start = time.perf_counter()
        step = batch["A"].shape[0]
        total_iters += step
        epoch_iter += step
        model.set_input(batch)
        model.optimize_parameters()
        if crossed(total_iters, step, opt.display_freq):
            visualizer.display_current_results(model.get_current_visuals(), epoch, total_iters)
        if crossed(total_iters, step, opt.print_freq):
            visualizer.print_current_losses(epoch, epoch_iter, model.get_current_losses(),
                                            (time.perf_counter() - t_start) / step,
                                            (t_start - t_data_start) / step)
        if crossed(total_iters, step, opt.save_latest_freq):
            save("latest", epoch, total_iters)
            if opt.save_by_iter:
                save(f"iter_{total_iters}", epoch, total_iters)
        t_data_start = time.perf_counter()
    return total_iters


def main(argv: list[str] | None = None) -> int:
    """Parse options and train; exit status 0 on success, 1 on a reported error."""
    def go() -> int:
        train(TrainOptions().parse(argv))
        return 0

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
