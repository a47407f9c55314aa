"""pix2pix training-step and inference throughput per generator, measured side by side.

    python benchmarks/bench_train_step.py                      # CPU, unet_64 ... unet_512
    python benchmarks/bench_train_step.py --gpu_ids 0 --netG unet_256 unet_512 --steps 50

For each ``--netG`` the slice size is the one the U-Net was named for (64, 128, 256, 512 px),
batch ``--batch_size``, full pix2pix step (G and D forward/backward, both optimizers). Prints
slices/s for training and for inference, the parameter count, and each figure as a ratio to the
first generator in the list, so figures from one run can be compared even on a noisy machine.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import create_model
from options.train_options import TrainOptions


def slice_size(net_g: str) -> int:
    """The slice size (px) a ``unet_<N>`` generator is named for; 256 for others."""
    return int(net_g.split("_")[1]) if net_g.startswith("unet_") else 256


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one, else what :mod:`platform` says."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def time_steps(step: Callable[[], None], n_steps: int, n_warmup: int,
               device: torch.device) -> float:
    """Seconds per call of ``step`` over ``n_steps`` calls, after ``n_warmup`` untimed calls."""
    for _ in range(n_warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(n_steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / n_steps


def bench(net_g: str, args: argparse.Namespace, tmp_dir: str) -> dict[str, float]:
    """Train/inference slices per second and parameter count (millions) of one generator."""
    size = slice_size(net_g)
    opt = TrainOptions().parse(["--dataroot", tmp_dir, "--checkpoints_dir", tmp_dir,
                                "--name", net_g, "--netG", net_g, "--norm", args.norm,
                                "--axial_slice", "--gpu_ids", args.gpu_ids,
                                "--batch_size", str(args.batch_size)])
    model = create_model(opt)
    model.setup()
    device = model.device
    gen = torch.Generator().manual_seed(0)
    data = {"A": torch.rand(args.batch_size, 1, size, size, generator=gen) * 2 - 1,
            "B": torch.rand(args.batch_size, 1, size, size, generator=gen) * 2 - 1,
            "A_paths": ["bench"] * args.batch_size}

    def train_step() -> None:
        model.set_input(data)
        model.optimize_parameters()

    def infer_step() -> None:
        model.set_input(data)
        model.test()

    t_train = time_steps(train_step, args.steps, args.warmup, device)
    model.eval()
    t_infer = time_steps(infer_step, args.steps, args.warmup, device)
    params = sum(p.numel() for p in model.netG.parameters()) / 1e6
    return {"size": size, "params_m": params, "train": args.batch_size / t_train,
            "infer": args.batch_size / t_infer}


def main() -> None:
    """Parse the arguments, run every generator, print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--netG", nargs="+",
                        default=["unet_64", "unet_128", "unet_256", "unet_512"])
    parser.add_argument("--norm", default="instance")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per generator")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--gpu_ids", default="-1", help="-1 for CPU, 0 for the first GPU")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp_dir:
        rows = {net_g: bench(net_g, args, tmp_dir) for net_g in args.netG}
    device = (torch.cuda.get_device_name(0) if args.gpu_ids != "-1"
              else f"CPU {cpu_name()}, "
                   f"{torch.get_num_threads()} threads")
    print(f"torch {torch.__version__}, {device}, batch {args.batch_size}, norm {args.norm}, "
          f"{args.steps} timed steps")
    first = rows[args.netG[0]]
    print(f"{'netG':10} {'slice px':>8} {'params M':>9} {'train sl/s':>11} {'x first':>8} "
          f"{'infer sl/s':>11} {'x first':>8}")
    for net_g, r in rows.items():
        print(f"{net_g:10} {r['size']:8d} {r['params_m']:9.1f} {r['train']:11.2f} "
              f"{r['train'] / first['train']:8.3f} {r['infer']:11.2f} "
              f"{r['infer'] / first['infer']:8.3f}")


if __name__ == "__main__":
    main()
