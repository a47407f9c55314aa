"""Side by side with the peer: the pix2pix training step of this project and of a
pix2pix/CycleGAN checkout that you provide, on the same work.

    python benchmarks/bench_peer.py --peer ~/src/pytorch-CycleGAN-and-pix2pix
    python benchmarks/bench_peer.py --peer PATH --configs unet_256:256:1 unet_128:128:4 \\
        --variants default= fp32="--amp off" --rounds 3

The peer is never vendored: ``--peer`` is the root of its checkout (the folder holding
``models/networks.py``). Same work on both sides, per configuration ``netG:size:batch``:

- the same networks (the peer's ``define_G``/``define_D`` against this project's: U-Net ``netG``
  with 64 filters and dropout, 3-layer PatchGAN with 64 filters, ``--norm``), initialised
  N(0, 0.02);
- the same losses (vanilla GAN on logits + 100 x L1) and optimiser (Adam, lr 2e-4, betas
  0.5/0.999; the peer's as it builds it, ``torch.optim.Adam`` with torch's defaults);
- the same random slices in [-1, 1], ``--channels`` in and out;
- the same order: G forward, D step on (A, G(A)) detached and (A, B), G step on GAN + L1 (the
  order of the peer's ``Pix2PixModel.optimize_parameters``, called here on its networks, so the
  peer's data loader, visualiser and options are not needed).

Each (side, configuration) runs in a child process of its own, ``--rounds`` times interleaved
(peer, project variants, peer, ...), so load changes hit every side alike; a child times
``--steps`` steps after ``--warmup`` and reports their median and its peak resident memory. The
table gives the median over rounds, the speed-up (peer s/iter over project s/iter), the step's
GFLOP (``torch.utils.flop_counter``) and its achieved rate against this machine's float32 and
bfloat16 matrix-product rates (4096 x 4096, best of 5, measured before the children run).
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import cpu_name, matmul_gflops, proc_status_mib

LAMBDA_L1 = 100.0
LR, BETAS = 2e-4, (0.5, 0.999)


def random_batch(channels: int, size: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B): two (batch, channels, size, size) float32 tensors in [-1, 1], seed 0."""
    gen = torch.Generator().manual_seed(0)
    return tuple(torch.rand(2, batch, channels, size, size, generator=gen) * 2 - 1)


def call_supported(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` without the keyword arguments its signature lacks (peer versions
    differ in ``init_gain``, ``gpu_ids``)."""
    params = inspect.signature(fn).parameters
    return fn(*args, **{k: v for k, v in kwargs.items() if k in params})


def peer_step(peer: Path, net_g: str, norm: str, a: torch.Tensor, b: torch.Tensor
              ) -> Callable[[], None]:
    """One pix2pix step of the peer's networks, losses and optimiser (see the module doc)."""
    sys.path.insert(0, str(peer))
    from models import networks  # the peer's package

    channels = a.shape[1]
    net_G = call_supported(networks.define_G, channels, channels, 64, net_g, norm=norm,
                           use_dropout=True, init_type="normal", init_gain=0.02, gpu_ids=[])
    net_D = call_supported(networks.define_D, 2 * channels, 64, "basic", n_layers_D=3, norm=norm,
                           init_type="normal", init_gain=0.02, gpu_ids=[])
    if "gan_mode" not in inspect.signature(networks.GANLoss).parameters:
        raise SystemExit(f"{peer}: this peer's GANLoss has no gan_mode (a version before 2019); "
                         "check out a newer one")
    gan, l1 = networks.GANLoss("vanilla"), nn.L1Loss()
    opt_G = torch.optim.Adam(net_G.parameters(), lr=LR, betas=BETAS)
    opt_D = torch.optim.Adam(net_D.parameters(), lr=LR, betas=BETAS)

    def set_requires_grad(net: nn.Module, flag: bool) -> None:
        for p in net.parameters():
            p.requires_grad = flag

    def step() -> None:
        fake = net_G(a)
        set_requires_grad(net_D, True)
        opt_D.zero_grad()
        loss_d = 0.5 * (gan(net_D(torch.cat((a, fake), 1).detach()), False)
                        + gan(net_D(torch.cat((a, b), 1)), True))
        loss_d.backward()
        opt_D.step()
        set_requires_grad(net_D, False)
        opt_G.zero_grad()
        loss_g = gan(net_D(torch.cat((a, fake), 1)), True) + l1(fake, b) * LAMBDA_L1
        loss_g.backward()
        opt_G.step()

    return step


def project_step(net_g: str, norm: str, flags: list[str], a: torch.Tensor, b: torch.Tensor,
                 workdir: Path) -> Callable[[], None]:
    """One step of this project's ``Pix2PixModel`` with the same work, plus ``flags``."""
    from models import create_model
    from options.base_options import run_settings
    from options.train_options import TrainOptions

    channels = a.shape[1]
    argv = ["--dataroot", str(workdir), "--checkpoints_dir", str(workdir), "--name", "peer",
            "--netG", net_g, "--ngf", "64", "--netD", "basic", "--ndf", "64", "--norm", norm,
            "--input_nc", str(channels), "--output_nc", str(channels), "--gan_mode", "vanilla",
            "--lambda_L1", str(LAMBDA_L1), "--lr", str(LR), "--beta1", str(BETAS[0]),
            "--batch_size", str(a.shape[0]), "--preprocess", "none", "--gpu_ids", "-1",
            "--recipe", "pix2pix", *flags]
    model = create_model(run_settings(TrainOptions().parse(argv)))
    model.setup()
    model.set_input({"A": a, "B": b})
    return model.optimize_parameters


def run_child(args: argparse.Namespace) -> dict[str, Any]:
    """Time one side on one configuration, in this process."""
    logging.disable(logging.INFO)
    net_g, size, batch = args.one.split(":")
    torch.manual_seed(0)
    a, b = random_batch(args.channels, int(size), int(batch))
    with tempfile.TemporaryDirectory() as tmp:
        if args.side == "peer":
            step = peer_step(Path(args.peer), net_g, args.norm, a, b)
        else:
            step = project_step(net_g, args.norm, json.loads(args.flags), a, b, Path(tmp))
        for _ in range(args.warmup):
            step()
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        gflop = 0.0
        if args.count_flops:
            with FlopCounterMode(display=False) as counter:
                step()
            gflop = counter.get_total_flops() / 1e9
    return {"s_per_iter": statistics.median(times),
            "peak_mib": proc_status_mib("VmHWM"),
            "gflop": gflop}


def parse_args() -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", required=True, type=Path,
                        help="root of a pix2pix/CycleGAN checkout (holds models/networks.py)")
    parser.add_argument("--configs", nargs="+", default=["unet_256:256:1", "unet_128:128:4"],
                        help="netG:slice size:batch")
    parser.add_argument("--variants", nargs="+", default=["default=", "fp32=--amp off"],
                        help="LABEL=FLAGS: this project's runs, each with its own train.py flags")
    parser.add_argument("--norm", default="instance")
    parser.add_argument("--channels", type=int, default=1, help="image channels in and out")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per child")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    # child process only
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--flags", default="[]", help=argparse.SUPPRESS)
    parser.add_argument("--count_flops", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def child(args: argparse.Namespace, config: str, side: str, flags: list[str],
          count_flops: bool) -> dict[str, Any]:
    """Run one side on ``config`` in a child process; its JSON result."""
    argv = [sys.executable, __file__, "--peer", str(args.peer), "--one", config, "--side", side,
            "--flags", json.dumps(flags), "--norm", args.norm, "--channels", str(args.channels),
            "--steps", str(args.steps), "--warmup", str(args.warmup)]
    argv += ["--count_flops"] * count_flops
    out = subprocess.run(argv, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.splitlines()[-1])


def main() -> None:
    """Interleave the children, then print one Markdown table."""
    args = parse_args()
    if args.one:
        print(json.dumps(run_child(args)))
        return
    if not (args.peer / "models" / "networks.py").is_file():
        raise SystemExit(f"{args.peer}: no models/networks.py; --peer takes the root of a "
                         "pix2pix/CycleGAN checkout")
    variants = [(label, flags.split()) for label, _, flags in
                (v.partition("=") for v in args.variants)]
    sides = [("peer", "peer", [])] + [(f"project {label}", "project", flags)
                                      for label, flags in variants]
    cpu = torch.device("cpu")
    rates = {name: matmul_gflops(cpu, dtype, reps=5)
             for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in range(args.rounds):
        for config in args.configs:
            for name, side, flags in sides:
                results.setdefault((config, name), []).append(
                    child(args, config, side, flags, count_flops=r == 0 and side == "peer"))
    print(f"torch {torch.__version__}, CPU {cpu_name()}, {torch.get_num_threads()} threads; "
          f"matmul 4096^2: fp32 {rates['fp32']:.0f}, bf16 {rates['bf16']:.0f} GFLOP/s; "
          f"norm {args.norm}, {args.rounds} rounds x {args.steps} steps")
    print("| work | side | s/iter | speed-up vs peer | GFLOP/s | of fp32 matmul "
          "| of bf16 matmul | peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    rows = []
    for config in args.configs:
        gflop = results[(config, "peer")][0]["gflop"]
        peer_s = statistics.median(x["s_per_iter"] for x in results[(config, "peer")])
        for name, _, _ in sides:
            runs = results[(config, name)]
            s = statistics.median(x["s_per_iter"] for x in runs)
            row = {"config": config, "side": name, "s_per_iter": s, "speedup": peer_s / s,
                   "gflops": gflop / s, "peak_mib": max(x["peak_mib"] for x in runs),
                   "gflop_per_iter": gflop, **{f"matmul_{k}": v for k, v in rates.items()}}
            rows.append(row)
            print(f"| {config} | {name} | {s:.3f} | {peer_s / s:.2f} x | {gflop / s:.0f} | "
                  f"{gflop / s / rates['fp32']:.0%} | {gflop / s / rates['bf16']:.0%} | "
                  f"{row['peak_mib']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
