"""Seconds per 512 x 512 x 120 volume: batched inference vs one slice at a time, or, for a
volumetric generator, windows overlapping by half vs by a quarter.

    python benchmarks/bench_infer.py                                  # CPU, unet_512, batch 8
    python benchmarks/bench_infer.py --gpu_ids 0 --batch_size 32 --amp bf16 --channels_last
    python benchmarks/bench_infer.py --netG motion3d_4 --ngf 16 --patch_size 32 128 128

A random-CT int16 volume is written as NIfTI, read once (timed), and predicted whole with
``models.inference.predict_volume`` (the path of ``test.py`` and ``scripts/predict.py``) by an
initialised generator in eval mode, with ``--batch_size`` slices per forward pass and with one
(a volumetric generator: ``--patch_size`` windows overlapping by 0.5 and by 0.25); the two runs
alternate ``--rounds`` times so load changes on a shared machine hit both alike. The peak
resident memory of the process is printed at the end.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.ct_volumes import load_slice_stack
from models.inference import predict_volume
from models.networks import define_G, is_volumetric, volume_size_rule
from models.volume_inference import VolumeWindows
from options.base_options import resolve_gpu_ids
from util.speed import SpeedSettings, resolve_amp, speed_up_network


def main() -> None:
    """Time reading and predicting one volume, batched and slice by slice."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--netG", default="unet_512")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--n_slices", type=int, default=120)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--gpu_ids", default="-1")
    parser.add_argument("--amp", default="off")
    parser.add_argument("--channels_last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--patch_size", type=int, nargs=3, default=[32, 128, 128],
                        help="volumetric generators: the window (D H W voxels)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    gpu_ids = resolve_gpu_ids(args.gpu_ids)
    device = torch.device(f"cuda:{gpu_ids[0]}" if gpu_ids else "cpu")
    amp_dtype = resolve_amp(args.amp, device)
    torch.manual_seed(0)
    net = define_G(1, 1, args.ngf, args.netG, norm="instance", use_dropout=False).to(device).eval()
    net = speed_up_network(net, SpeedSettings(amp_dtype, args.channels_last, args.compile))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "avg.nii.gz"
        vol = np.random.default_rng(0).integers(-1000, 1500, (args.size, args.size,
                                                              args.n_slices)).astype(np.int16)
        nib.save(nib.Nifti1Image(vol, np.diag([0.9, 0.9, 3.0, 1.0])), path)
        start = time.perf_counter()
        stack = load_slice_stack(path)
        t_read = time.perf_counter() - start
    volumetric = is_volumetric(args.netG)
    runs: dict[str, dict] = (
        {f"overlap {o}": {"windows": VolumeWindows(tuple(args.patch_size), o,
                                                   volume_size_rule(args.netG))}
         for o in (0.5, 0.25)} if volumetric
        else {f"batch {b:3d}": {"batch_size": b} for b in (args.batch_size, 1)})
    seconds = dict.fromkeys(runs, 0.0)
    first = next(iter(runs.values()))
    predict_volume(net, stack, hu_min=-1024, hu_max=3071, device=device, amp_dtype=amp_dtype,
                   **first)  # warm-up (and compilation)
    for _ in range(args.rounds):
        for name, kwargs in runs.items():
            start = time.perf_counter()
            predict_volume(net, stack, hu_min=-1024, hu_max=3071, device=device,
                           amp_dtype=amp_dtype, **kwargs)
            seconds[name] += (time.perf_counter() - start) / args.rounds
    where = torch.cuda.get_device_name(device) if gpu_ids else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}; {args.netG} (ngf {args.ngf}), {args.size} x "
          f"{args.size} x {args.n_slices} volume, amp {args.amp}, channels_last "
          f"{args.channels_last}, compile {args.compile}"
          + (f", windows {' x '.join(map(str, args.patch_size))}" if volumetric else ""))
    print(f"read (decode, int16 stack): {t_read:.2f} s")
    last = seconds[list(runs)[-1]]
    for name, s in seconds.items():
        print(f"{name}: {s:7.2f} s per volume, {args.n_slices / s:6.2f} slices/s, "
              f"x{last / s:.2f} vs the last row")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak_mib:.0f} MiB")

if __name__ == "__main__":
    main()
