"""pix2pix training step: full pipeline vs pre-made tensors, NIfTI vs PNG, and FLOP efficiency.

    python benchmarks/bench_train.py                                  # CPU: unet_64/256/512
    python benchmarks/bench_train.py --configs unet_256:256 --profile  # where the time goes
    python benchmarks/bench_train.py --gpu_ids 0 --batch_size 8 --amp bf16 --channels_last

Each configuration ``netG:size`` runs in a child process of its own (so its peak memory is its
own) and measures, on the same random-CT slices, side by side and interleaved:

- ``model``: the training step (G and D forward/backward, both Adam updates) fed from one
  pre-made batch already in memory;
- ``nifti``: the full pipeline, ``--dataset_mode nifti_aligned`` -> DataLoader -> the step;
- ``png``: the same slices as A|B PNG pictures, ``--dataset_mode aligned``.

``nifti / model`` is the loader's cost (target: within 5 %). The step's FLOPs are counted with
``torch.utils.flop_counter`` and the achieved rate is given as a fraction of the best float32
matmul rate measured in the same process (a 4096 x 4096 product, before and after).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import cpu_name, matmul_gflops, sync
from data import create_dataloader, create_dataset
from models import create_model
from models.settings import RunSettings
from options.base_options import run_settings
from options.train_options import TrainOptions

MODES = ("model", "nifti", "png")


def write_data(root: Path, size: int, n_slices: int, n_patients: int = 2) -> None:
    """Random CT-like int16 NIfTI pairs (trainA/trainB) and the same slices as A|B PNGs
    (train/), 8-bit, in ``root``."""
    rng = np.random.default_rng(0)
    (root / "train").mkdir(parents=True)
    for p in range(n_patients):
        pair = rng.integers(-1000, 1500, size=(2, size, size, n_slices)).astype(np.int16)
        for side, vol in zip("AB", pair, strict=True):
            (root / f"train{side}").mkdir(exist_ok=True)
            nib.save(nib.Nifti1Image(vol, np.diag([0.9, 0.9, 3.0, 1.0])),
                     root / f"train{side}" / f"p{p}.nii.gz")
        for s in range(n_slices):
            png = ((pair[:, :, :, s].astype(np.float32) + 1024) / 4095 * 255).clip(0, 255)
            Image.fromarray(np.concatenate(list(png), axis=1).astype(np.uint8)).save(
                root / "train" / f"p{p}_{s:03d}.png")


def make_settings(root: Path, net_g: str, mode: str, args: argparse.Namespace) -> RunSettings:
    """The training settings of one configuration; ``mode`` picks the dataset."""
    argv = ["--dataroot", str(root), "--checkpoints_dir", str(root / "ck"), "--name", mode,
            "--netG", net_g, "--norm", args.norm, "--axial_slice", "--gpu_ids", args.gpu_ids,
            "--batch_size", str(args.batch_size), "--num_threads", str(args.num_workers),
            "--preprocess", "none", "--amp", args.amp, "--no_flip", "--recipe", "pix2pix"]
    argv += ["--channels_last"] * args.channels_last + ["--compile"] * args.compile
    argv += ["--dataset_mode", "aligned" if mode == "png" else "nifti_aligned"]
    return run_settings(TrainOptions().parse(argv))


def run_one(net_g: str, size: int, args: argparse.Namespace) -> dict[str, float]:
    """All figures of one configuration, in this process."""
    logging.disable(logging.INFO)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        n_steps = args.steps * args.rounds + args.warmup
        write_data(root, size, n_slices=max(4, -(-n_steps * args.batch_size // 2)))
        model = create_model(make_settings(root, net_g, "model", args))
        model.setup()
        device = model.device
        loaders = {m: create_dataloader(create_dataset(make_settings(root, net_g, m, args).data),
                                        batch_size=args.batch_size, shuffle=True,
                                        num_workers=args.num_workers,
                                        pin_memory=device.type == "cuda") for m in MODES[1:]}
        premade = next(iter(loaders["nifti"]))
        batches = {"model": iter(lambda: premade, None), **{m: iter(loader) for m, loader
                                                             in loaders.items()}}

        def steps(mode: str, n: int) -> float:
            sync(device)
            start = time.perf_counter()
            for _ in range(n):
                model.set_input(next(batches[mode]))
                model.optimize_parameters()
            sync(device)
            return time.perf_counter() - start

        rate0 = matmul_gflops(device)
        for mode in MODES:
            steps(mode, args.warmup)
        seconds = dict.fromkeys(MODES, 0.0)
        for _ in range(args.rounds):  # interleaved, so load changes hit every mode alike
            for mode in MODES:
                seconds[mode] += steps(mode, args.steps)
        with FlopCounterMode(display=False) as counter:
            steps("model", 1)
        peak_gflops = max(rate0, matmul_gflops(device))
        if args.profile:
            profile_step(lambda: steps("model", 1))
    n = args.steps * args.rounds * args.batch_size
    flops = counter.get_total_flops() / args.batch_size
    achieved = flops * n / seconds["model"] / 1e9
    peak_mib = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"netG": net_g, "size": size, **{f"{m}_sps": n / seconds[m] for m in MODES},
            "gflop_per_slice": flops / 1e9, "achieved_gflops": achieved,
            "matmul_gflops": peak_gflops, "peak_mib": peak_mib}


def profile_step(step: Callable[[], object]) -> None:
    """Print the operators that take the most time over three steps."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20),
          file=sys.stderr)


def parse_args() -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+",
                        default=["unet_64:64", "unet_256:256", "unet_512:512"],
                        help="netG:slice size pairs")
    parser.add_argument("--norm", default="instance")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--steps", type=int, default=0,
                        help="timed steps per mode and round (0: 12, 3, 1 by size)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--num_workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--gpu_ids", default="-1")
    parser.add_argument("--amp", default="off")
    parser.add_argument("--channels_last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default, one per core)")
    parser.add_argument("--profile", action="store_true", help="print the top operators")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child process: one netG:size
    return parser.parse_args()


def child_argv(args: argparse.Namespace, config: str) -> list[str]:
    """The command line of the child process measuring ``config``."""
    size = int(config.split(":")[1])
    steps = args.steps or (12 if size <= 64 else 3 if size <= 256 else 1)
    argv = [sys.executable, __file__, "--one", config, "--steps", str(steps)]
    for key in ("norm", "batch_size", "rounds", "warmup", "num_workers", "gpu_ids", "amp",
                "threads"):
        argv += [f"--{key}", str(getattr(args, key))]
    for flag in ("channels_last", "compile", "profile"):
        argv += [f"--{flag}"] * getattr(args, flag)
    return argv


def main() -> None:
    """Run every configuration in a child process and print one table."""
    args = parse_args()
    if args.one:
        net_g, size = args.one.split(":")
        print(json.dumps(run_one(net_g, int(size), args)))
        return
    rows = [json.loads(subprocess.run(child_argv(args, c), check=True, capture_output=False,
                                      stdout=subprocess.PIPE, text=True).stdout.splitlines()[-1])
            for c in args.configs]
    device = (torch.cuda.get_device_name(0) if args.gpu_ids != "-1"
              else f"CPU {cpu_name()}, {args.threads or torch.get_num_threads()} threads")
    print(f"torch {torch.__version__}, {device}; batch {args.batch_size}, norm {args.norm}, "
          f"amp {args.amp}, channels_last {args.channels_last}, compile {args.compile}, "
          f"{args.num_workers} loader workers")
    print(f"{'netG':9} {'px':>4} {'model sl/s':>10} {'nifti sl/s':>10} {'nifti/model':>11} "
          f"{'png sl/s':>9} {'png/nifti':>9} {'GFLOP/sl':>8} {'GFLOP/s':>8} {'matmul':>7} "
          f"{'fraction':>8} {'peak MiB':>8}")
    for r in rows:
        print(f"{r['netG']:9} {r['size']:4d} {r['model_sps']:10.3f} {r['nifti_sps']:10.3f} "
              f"{r['nifti_sps'] / r['model_sps']:11.3f} {r['png_sps']:9.3f} "
              f"{r['png_sps'] / r['nifti_sps']:9.3f} {r['gflop_per_slice']:8.1f} "
              f"{r['achieved_gflops']:8.1f} {r['matmul_gflops']:7.1f} "
              f"{r['achieved_gflops'] / r['matmul_gflops']:8.3f} {r['peak_mib']:8.0f}")


if __name__ == "__main__":
    main()
