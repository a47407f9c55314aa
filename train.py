"""Train an image-to-image model, e.g. pix2pix on axial CT slices (AVG -> phase 0).

    python train.py --dataroot ./datasets/ct_phases_dataset --name phase0

trains the recommended recipe, with what the data and the machine decide planned from them
(``--recipe pix2pix``: the classic pix2pix defaults); every option given wins, e.g.

    python train.py --dataroot ./datasets/ct_phases_dataset --name ct_phase0_generator \
        --model pix2pix --dataset_mode nifti_aligned --preprocess none --input_nc 1 \
        --output_nc 1 --axial_slice --norm instance --batch_size 1 --netG unet_64

Checkpoints (``latest`` and every ``--save_epoch_freq`` epochs, with ``<epoch>_metadata.json``),
``opt.json``, ``plan.json`` (every option's value and where it came from: default, recipe,
planned with the reason, run folder or command line; :mod:`options.plan`), ``loss_log.txt`` and
the HTML page go to ``<checkpoints_dir>/<name>/``.

Several processes (GPUs, machines) train one model with DistributedDataParallel when started by
torchrun, e.g. ``torchrun --nproc_per_node 4 train.py ...``; rank 0 alone writes files.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping, Sized
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from data import create_dataloader, create_dataset
from data.base_dataset import BaseDataset
from data.ct_volumes import SliceStack
from data.nifti_aligned_dataset import NiftiAlignedDataset
from data.nifti_volume_dataset import NiftiVolumeDataset
from data.phase_volumes import dataset_phases
from data.sampling import EpochSampler
from data.settings import DataSettings
from display.visualizer import Visualizer, rewind_logs
from models import create_model
from models.base_model import BaseModel
from models.metadata import Geometry, save_model_with_metadata
from models.networks import (
    is_volumetric,
    slice_size_rule,
    volume_size_rule,
)
from models.run_folder import check_new_training, clear_run, tidy_run_folder
from models.run_lock import hold_run_lock
from models.settings import SETTING_NAMES, RunSettings
from models.training_data import training_digests
from models.training_setup import check_sizes, training_sampler
from models.training_state import (
    Plan,
    Progress,
    TrainingState,
    load_training_state,
    restore_rng,
    seed_everything,
    stage_training_state,
)
from models.validation import Validator, selection_score
from options.base_options import run_settings
from options.train_options import TrainOptions
from util.cli import run_cli
from util.distributed import (
    SINGLE_PROCESS,
    DistContext,
    barrier,
    cleanup,
    init_distributed,
    unwrap,
    weights_digest,
)
from util.errors import ConfigError
from util.file_set import FileSet
from util.phases import phase_label
from util.resample import is_native

logger = logging.getLogger("train")


def training_geometry(dataset: BaseDataset) -> dict[str, Geometry]:
    """{patient: (shape, affine)} of the training volumes, for checkpoint metadata; empty for
    datasets of pictures."""
    if not isinstance(dataset, NiftiAlignedDataset):
        return {}
    return {pid: (info.shape, info.affine) for pid, info in
            zip(dataset.patient_ids, dataset.infos_a, strict=True)}


def crossed(total: int, step: int, every: int) -> bool:
    """Whether the counter passed a multiple of ``every`` while growing by ``step`` to ``total``."""
    return every > 0 and total // every > (total - step) // every


def make_validator(settings: RunSettings, window_overlap: float,
                   device: torch.device) -> Validator | None:
    """A validator over ``<dataroot>/valA``, ``valB`` when ``--val_freq`` asks for one and
    the data allows it (NIfTI slices, AVG -> phase 0, both folders); None otherwise.
    ``window_overlap``: of a volumetric generator's windows (``--window_overlap``)."""
    data, g = settings.data, settings.generator
    if settings.schedule.val_freq <= 0:
        return None
    root = Path(data.dataroot)
    reason = ("--dataset_mode is neither nifti_aligned nor nifti_volume"
              if data.dataset_mode not in ("nifti_aligned", "nifti_volume")
              else "--direction BtoA" if not data.a_to_b
              else f"no {root / 'valA'} and {root / 'valB'}"
              if not ((root / "valA").is_dir() and (root / "valB").is_dir()) else None)
    if reason is not None:
        logger.info("validation off: %s", reason)
        return None
    val_set = NiftiAlignedDataset(root / "valA", root / "valB", hu_min=data.hu_min,
                                  hu_max=data.hu_max, resize_to=data.resize_to,
                                  context_slices=data.context_slices,
                                  geometry_atol_mm=data.geometry_atol_mm,
                                  phases=training_phases(data))
    native = is_native(g.working_spacing_mm)
    if native and not g.volumetric:  # volumetric windows take any volume size
        check_sizes(val_set, settings)
    return Validator(validation_targets(val_set), settings.regions,
                     resize_to=g.resize_to, batch_size=data.batch_size,
                     context_slices=g.context_slices, device=device,
                     windows=g.windows(window_overlap),
                     size_rule=None if native else g.size_rule(),
                     working_spacing_mm=g.working_spacing_mm,
                     residual_gate_hu=g.residual_gate_hu)


def training_phases(data: DataSettings) -> tuple[float, ...] | None:
    """The phases (%) a ``--phases`` run trains on (None: a phase-0 run), as the training
    dataset resolves them (:func:`data.nifti_aligned_dataset.dataset_phases`)."""
    return dataset_phases(data.phases, Path(data.dataroot), data.phase)


def validation_targets(val_set: NiftiAlignedDataset
                       ) -> list[tuple[str, SliceStack, SliceStack]
                                 | tuple[str, SliceStack, SliceStack, float]]:
    """(id, AVG, phase 0) for every validation patient of a phase-0 run; (id@p<p>, AVG, target,
    phase %) for every patient and phase it has of a phase-conditioned one (``--phases``)."""
    if not val_set.phases:
        return list(zip(val_set.patient_ids, val_set.stacks_a, val_set.stacks_b, strict=True))
    targets: list[tuple[str, SliceStack, SliceStack] | tuple[str, SliceStack, SliceStack, float]]
    targets = []
    for v, pid in enumerate(val_set.patient_ids):
        for percent in val_set.phases:
            truth = val_set.phase_stack(v, percent)
            if truth is not None:
                targets.append((f"{pid}@p{phase_label(percent)}", val_set.stacks_a[v], truth,
                                percent))
    return targets


def previous_best(run_dir: Path) -> float:
    """The selection score of an earlier run's ``best`` checkpoint (inf when there is none)."""
    path = run_dir / "best_metadata.json"
    if not path.is_file():
        return math.inf
    validation = json.loads(path.read_text(encoding="utf-8")).get("validation") or {}
    return selection_score(validation.get("mae_hu", {}))


def check_distributed(settings: RunSettings, ctx: DistContext) -> None:
    """Refuse what DistributedDataParallel cannot do (ConfigError)."""
    if ctx.enabled and settings.losses.gan_mode == "wgangp":
        raise ConfigError("--gan_mode wgangp differentiates D's gradient (torch.autograd.grad), "
                          "which DistributedDataParallel does not support; use lsgan or vanilla "
                          "with several processes, or train wgangp in one process")


def make_visualizer(opt: argparse.Namespace, run_dir: Path) -> Visualizer:
    """The loss log, HTML page and optional visdom/wandb of the run."""
    return Visualizer(run_dir, opt.name, hu_min=opt.hu_min, hu_max=opt.hu_max,
                      display_id=opt.display_id, display_server=opt.display_server,
                      display_port=opt.display_port, display_env=opt.display_env,
                      use_wandb=opt.use_wandb, wandb_project=opt.wandb_project_name,
                      no_html=opt.no_html, display_winsize=opt.display_winsize)


def train(opt: argparse.Namespace, record_options: Callable[[], None] = lambda: None) -> Path:
    """Run the whole training the parsed options ``opt`` describe; return the run's checkpoint
    folder.

    The options become the run's settings (:func:`options.base_options.run_settings`) once
    this process's GPU is known. Rank 0 first takes the run folder's lock
    (:mod:`models.run_lock`): a second training in the same folder is refused while this one
    runs. Every check (run folder, data, slice sizes, networks, training state, validation
    data) runs before anything is written to the run folder; then ``record_options()`` is
    called (it writes ``opt.json``) and training starts.
    """
    ctx, opt.gpu_ids = init_distributed(opt.gpu_ids)
    settings = run_settings(opt)
    check_distributed(settings, ctx)
    with hold_run_lock(settings.run.run_dir) if ctx.is_main else contextlib.nullcontext():
        return run_training(settings, ctx, record_options, opt.window_overlap,
                            lambda: make_visualizer(opt, settings.run.run_dir))


def run_training(settings: RunSettings, ctx: DistContext, record_options: Callable[[], None],
                 window_overlap: float, visualizer_factory: Callable[[], Visualizer]) -> Path:
    """:func:`train` once the run folder is this process's (rank 0 holds its lock);
    ``window_overlap``: of validation's volumetric windows; ``visualizer_factory()``: the
    run's page and logs (rank 0 alone, once the checks have passed)."""
    run, data, schedule = settings.run, settings.data, settings.schedule
    run_dir = run.run_dir
    check_new_training(run_dir, continue_train=run.continue_train, overwrite=run.overwrite,
                       current=settings.to_json(), architecture_keys=SETTING_NAMES)
    seed_everything(run.seed)  # every rank builds the same initial weights
    dataset = create_dataset(data)
    net_g = settings.generator.netG
    if isinstance(dataset, NiftiVolumeDataset) and is_volumetric(net_g):
        dataset.pad_whole_axes_to(volume_size_rule(net_g).multiple)  # as inference does
    elif isinstance(dataset, NiftiAlignedDataset) and not is_native(data.working_spacing_mm):
        rule = slice_size_rule(net_g)  # resampled slices padded with air, as inference does
        dataset.pad_slices_to(rule.multiple, rule.least)
    check_sizes(dataset, settings)
    patients = training_digests(dataset, Path(data.dataroot))
    sampler = training_sampler(dataset, settings, rank=ctx.rank, world_size=ctx.world_size)
    loader = create_dataloader(dataset, batch_size=data.batch_size,
                               num_workers=data.num_threads, sampler=sampler,
                               pin_memory=bool(run.gpu_ids))
    logger.info("training slices: %d, batches per epoch: %d%s", len(dataset), len(loader),
                f" in each of {ctx.world_size} processes" if ctx.enabled else "")
    model = create_model(settings)
    model.setup()
    plan = training_plan(sampler, settings)
    state = (load_training_state(model, model.load_suffix, plan, patients,
                                 allow_data_change=run.allow_data_change)
             if run.continue_train else None)
    history = state.data_history if state is not None else []
    validator = make_validator(settings, window_overlap, model.device) if ctx.is_main else None
    if ctx.is_main:  # every check passed: from here on the run folder is written
        if run.overwrite:
            clear_run(run_dir)
        tidy_run_folder(run_dir)
        record_options()
        if state is not None:  # the interrupted run's lines after the resumed point go
            rewind_logs(run_dir, state.progress.epoch,
                        state.progress.batches_done * data.batch_size * ctx.world_size)
    barrier()
    visualizer = visualizer_factory() if ctx.is_main else None
    geometry = training_geometry(dataset)
    validation: dict | None = None  # the latest validation result, kept in every metadata

    def save(tag: str | int, epoch: int, at: Progress) -> None:
        """Weights and metadata of ``tag`` as one set (rank 0 only); for ``latest`` the set
        also holds the state to resume ``at``."""
        if not ctx.is_main:
            return

        def stage_state(stage: FileSet, digests: Mapping[str, str]) -> None:
            stage_training_state(stage, model, tag, at, plan, digests, patients, history)

        save_model_with_metadata(model, settings, tag, run_dir, geometry, epoch_number=epoch,
                                 total_iters=at.total_iters, validation=validation,
                                 train_history=history,
                                 also=stage_state if tag == "latest" else None)

    if ctx.enabled:  # ranks differ from here on in dropout masks and flips
        seed_everything(run.seed + ctx.rank)
    start = resume_point(model, settings, state)
    total_iters = start.total_iters
    best = previous_best(run_dir) if run.continue_train else math.inf
    last_epoch = schedule.last_epoch
    train_seconds = 0.0  # in run_epoch, this process (the time axis of val_log.jsonl)
    for epoch in range(start.epoch, last_epoch + 1):
        done = start.batches_done if epoch == start.epoch else 0
        sampler.set_epoch(epoch, skip=done * data.batch_size)
        t_epoch = time.perf_counter()
        total_iters = run_epoch(model, loader, visualizer, settings,
                                Progress(epoch, done, total_iters), save, ctx)
        train_seconds += time.perf_counter() - t_epoch
        at = Progress(epoch + 1, 0, total_iters)
        if validator is not None and (epoch % schedule.val_freq == 0 or epoch == last_epoch):
            metrics = validator(unwrap(model.saved_networks()["G"]))  # the G tests will use
            if visualizer is not None:  # both exist on rank 0 alone
                visualizer.log_validation(epoch, metrics, train_seconds=train_seconds)
            validation = {"epoch": epoch, "patients": [p.patient_id for p in validator.patients],
                          "mae_hu": metrics}
            if selection_score(metrics) < best:
                best = selection_score(metrics)
                save("best", epoch, at)
                logger.info("new best checkpoint: epoch %d, selection score %.3f (model/AVG MAE, "
                            "mean of the motion region and the whole volume)", epoch, best)
        model.update_learning_rate()
        if epoch % schedule.save_epoch_freq == 0 or epoch == last_epoch:
            save("latest", epoch, at)
        if epoch % schedule.save_epoch_freq == 0:
            save(epoch, epoch, at)
        barrier()  # the other ranks wait for rank 0's validation and checkpoints
    if ctx.enabled:  # equal on every rank: the replicas stayed in step
        logger.info("weights digest: %s", ", ".join(
            f"net{name} {weights_digest(net)}" for name, net in model.networks().items()))
    logger.info("done: epochs %d-%d, %d slices in all; checkpoints in %s", start.epoch,
                last_epoch, total_iters, run_dir)
    return run_dir


def training_plan(sampler: EpochSampler, settings: RunSettings) -> Plan:
    """The settings that fix the batch order, which a mid-epoch resume must share: the
    sampler's and the batch size."""
    return sampler.order_settings() | {"batch_size": settings.data.batch_size,
                                       "epoch_count": settings.schedule.epoch_count}


def resume_point(model: BaseModel, settings: RunSettings,
                 state: TrainingState | None) -> Progress:
    """Where training starts: from ``--epoch_count``, or with ``--continue_train`` where the
    loaded training ``state`` says (its optimizers and schedulers are already restored; its
    random state is applied here, so call this just before training)."""
    epoch_count = settings.schedule.epoch_count
    fresh = Progress(epoch_count, 0, 0)
    if not settings.run.continue_train:
        return fresh
    if state is None:
        logger.warning("no %s_training_state.pth in %s: resuming from the weights alone; the "
                       "optimizers and the learning-rate schedule start afresh at epoch %d",
                       model.load_suffix, model.save_dir, epoch_count)
        return fresh
    restore_rng(state.rng)
    return state.progress


def run_epoch(model: BaseModel, loader: DataLoader, visualizer: Visualizer | None,
              settings: RunSettings, start: Progress,
              save: Callable[[str | int, int, Progress], None],
              ctx: DistContext = SINGLE_PROCESS) -> int:
    """The rest of epoch ``start.epoch`` (the loader skips the ``start.batches_done`` batches
    already run): optimise, log, display and save ``latest`` on schedule.

    Returns the updated count of slices seen since the start of training, by all processes
    (``ctx.world_size`` batches per step); only rank 0 has a ``visualizer``.
    """
    if not isinstance(loader.dataset, Sized):  # torch's Dataset declares no __len__
        raise TypeError(f"the training loader's dataset ({type(loader.dataset).__name__}) has "
                        f"no length")
    n_slices = len(loader.dataset)
    epoch, batches, total_iters = start.epoch, start.batches_done, start.total_iters
    schedule = settings.schedule
    epoch_iter = batches * settings.data.batch_size * ctx.world_size
    t_data_start = time.perf_counter()
    for batch in tqdm(loader, desc=f"epoch {epoch}", unit="batch", leave=False,
                      disable=not ctx.is_main):
        t_start = time.perf_counter()
        step = batch["A"].shape[0] * ctx.world_size
        total_iters += step
        epoch_iter += step
        batches += 1
        model.set_input(batch)
        model.optimize_parameters()
        if visualizer is not None and crossed(total_iters, step, schedule.display_freq):
            visualizer.display_current_results(model.get_current_visuals(), epoch, total_iters)
        if visualizer is not None and crossed(total_iters, step, schedule.print_freq):
            visualizer.print_current_losses(epoch, epoch_iter, model.get_current_losses(),
                                            (time.perf_counter() - t_start) / step,
                                            (t_start - t_data_start) / step,
                                            epoch - 1 + epoch_iter / n_slices)
        if crossed(total_iters, step, schedule.save_latest_freq):
            save("latest", epoch, Progress(epoch, batches, total_iters))
            if schedule.save_by_iter:
                save(f"iter_{total_iters}", epoch, Progress(epoch, batches, total_iters))
        t_data_start = time.perf_counter()
    return total_iters


def main(argv: list[str] | None = None) -> int:
    """Parse options and train; exit status 0 on success, 1 on a reported error."""
    def go() -> int:
        options = TrainOptions()
        opt = options.parse(argv)
        try:
            train(opt, lambda: options.record(opt))
        finally:
            cleanup()
        return 0

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
