"""Dataset memory and serving speed for N patients at 512 x 512 x 120, cached vs lazy.

    python benchmarks/bench_data.py                       # N = 1 2 4 8, synthetic patients
    python benchmarks/bench_data.py --patients 2 16 --volume_cache 2

The synthetic generator (``synthetic/``) makes ``--distinct`` patients; the dataset
of N patients links their AVG and phase-0 files under N names (decoding makes separate arrays
either way). Each (N, mode) runs in a child process of its own and reports the growth of its
resident memory (VmRSS) from before the dataset is built to after one epoch has been served,
as a ratio to the int16 size of all its volumes (A and B), the peak on the way (VmHWM), and the
slices per second served through a DataLoader (batch 4, no workers): uniformly shuffled when
cached, in patient blocks (``data/sampling.py``) when lazy.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import proc_status_mib
from data import create_dataloader
from data.nifti_aligned_dataset import NiftiAlignedDataset
from data.sampling import PatientBlockSampler
from options.base_options import run_settings
from options.train_options import TrainOptions
from synthetic import SyntheticGrid, avg_file_name, phase_file_name, write_synthetic_4dct


def make_dataset_tree(synthetic: Path, out: Path, n_patients: int) -> None:
    """``out/trainA``, ``out/trainB`` with ``n_patients`` hard links to the synthetic patients'
    AVG and phase-0 files, reused in turn."""
    pids = sorted(p.name for p in (synthetic / "res_avg").iterdir())
    for side in "AB":
        (out / f"train{side}").mkdir(parents=True)
    for k in range(n_patients):
        pid = pids[k % len(pids)]
        os.link(synthetic / "res_avg" / pid / avg_file_name(pid),
                out / "trainA" / f"P{k:03d}.nii.gz")
        os.link(synthetic / "res_phases" / pid / phase_file_name(pid, 0),
                out / "trainB" / f"P{k:03d}.nii.gz")


def measure(root: Path, volume_cache: int) -> dict[str, float]:
    """Memory and serving figures of one dataset, in this process."""
    logging.disable(logging.INFO)
    opt = TrainOptions().parse(["--dataroot", str(root), "--checkpoints_dir", str(root / "ck"),
                                "--axial_slice", "--gpu_ids", "-1", "--volume_cache",
                                str(volume_cache), "--recipe", "pix2pix"])
    rss0 = proc_status_mib("VmRSS")
    dataset = NiftiAlignedDataset.from_settings(run_settings(opt).data)
    infos = dataset.infos_a
    int16_mib = 2 * sum(2 * i.shape[0] * i.shape[1] * i.shape[2] for i in infos) / 2**20
    rss_built = proc_status_mib("VmRSS") - rss0
    sampler = (PatientBlockSampler(dataset.sample_patients(), block=volume_cache)
               if volume_cache else None)
    loader = create_dataloader(dataset, batch_size=4, shuffle=True, num_workers=0,
                               sampler=sampler)
    start = time.perf_counter()
    for _ in loader:
        pass
    seconds = time.perf_counter() - start
    return {"int16_mib": int16_mib, "rss_built_mib": rss_built,
            "rss_served_mib": proc_status_mib("VmRSS") - rss0,
            "peak_mib": proc_status_mib("VmHWM") - rss0, "slices_per_s": len(dataset) / seconds}


def main() -> None:
    """Make the synthetic patients, run every (N, mode) in a child process, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--distinct", type=int, default=2, help="synthetic patients generated")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--n_slices", type=int, default=120)
    parser.add_argument("--volume_cache", type=int, default=1, help="lazy mode's cache")
    parser.add_argument("--synthetic", type=Path, help="reuse this synthetic tree")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # child: root, cache
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(Path(args.one[0]), int(args.one[1]))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        synthetic = args.synthetic or Path(tmp) / "synthetic"
        if args.synthetic is None:
            grid = SyntheticGrid(size=args.size, n_slices=args.n_slices)
            write_synthetic_4dct(synthetic, args.distinct, grid=grid, progress=False)
        print(f"torch {torch.__version__}; {args.size} x {args.size} x {args.n_slices} "
              "synthetic patients (int16 on disk, gzip)")
        print(f"{'N':>3} {'mode':>8} {'int16 MiB':>9} {'RSS built':>9} {'RSS served':>10} "
              f"{'ratio':>6} {'peak':>7} {'slices/s':>9}")
        for n in args.patients:
            root = Path(tmp) / f"n{n}"
            make_dataset_tree(synthetic, root, n)
            for cache in (0, args.volume_cache):
                out = subprocess.run([sys.executable, __file__, "--one", str(root), str(cache)],
                                     check=True, stdout=subprocess.PIPE, text=True).stdout
                r = json.loads(out.splitlines()[-1])
                mode = "cached" if cache == 0 else f"lazy {cache}"
                print(f"{n:3d} {mode:>8} {r['int16_mib']:9.1f} {r['rss_built_mib']:9.1f} "
                      f"{r['rss_served_mib']:10.1f} "
                      f"{r['rss_served_mib'] / r['int16_mib']:6.3f} {r['peak_mib']:7.1f} "
                      f"{r['slices_per_s']:9.1f}", flush=True)


if __name__ == "__main__":
    main()
