"""Clinical scale: a synthetic 512 x 512 x 120 patient through generate, prepare, training steps
and whole-volume inference, with the seconds and peak memory of each stage.

    python benchmarks/bench_clinical.py --threads 1 --json clinical.json
    python benchmarks/bench_clinical.py --models recipe motion3d --patients 1 2
    python benchmarks/bench_clinical.py --quick --patients 1 2   # 64 x 64 x 16, one step

One patient is generated (``scripts/make_synthetic_4dct.py``: 0.98 mm pixels are a field of view
of 512 x 0.98 mm; slices at 3 mm) and its AVG and phase-0 files are hard-linked under N patient
names (``--patients``), so generation runs once. Every stage runs in a child process of its own,
whose peak resident memory (its VmHWM: the whole process, Python and torch included) is its
own:

- ``generate``: the script, one patient (AVG, ten phases, tumour masks);
- ``prepare``: ``prepare_dataset.py`` on the export of N patients, all into ``train``;
- ``train``: per model and N, with every volume decoded at start-up (``cache 0``, the default)
  and lazily (``--volume_cache``): the dataset is built, one whole epoch served without the
  model (so a lazy cache loads and evicts every patient; ``data`` is the process's resident
  growth from before the dataset to after that epoch), then the model is built and one warm-up
  and ``--steps`` timed training steps run, batches from the loader included; seconds are per
  step. Bounded memory: the lazy rows' data and peak are flat in N from N = 2 on (with one
  patient nothing is decoded once the model is built, so its peak is lower), the cached rows'
  grow by a patient's int16 volumes (A and B) each;
- ``infer``: an initialised generator of the model's architecture predicts the first patient's
  volume whole with :func:`models.inference.predict_volume` (slice nets ``--infer_batch`` slices
  per pass; volumetric ones in ``--patch_size`` windows overlapping by ``--overlap``); seconds
  exclude reading the volume (given apart).

Models: ``recipe`` is the recommended slice recipe (``benchmarks/cohorts.py``: ``COMMON`` and
``RECIPE``, ``unet_64`` with ngf 32, 2.5-D input, batch 8); ``unet512`` the same with the deeper
``unet_512`` that the README recommends for 512 x 512 slices; ``unet3d`` and ``motion3d`` the
volumetric variants of ``benchmarks/quality.py`` (ngf 16) on ``--patch_size`` patches.
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
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from subprocess import PIPE
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cohorts import COMMON, RECIPE, ROOT, VOLUME
from benchmarks.machine import cpu_name, proc_status_mib
from data import create_dataloader, create_dataset
from data.ct_volumes import load_slice_stack
from data.nifti_io import read_info
from data.sampling import EpochSampler
from models import create_model
from models.inference import predict_volume
from models.settings import RunSettings
from models.trained_run import build_generator
from models.training_setup import check_sizes, training_sampler
from options.base_options import run_settings
from options.train_options import TrainOptions
from synthetic import avg_file_name, patient_id, phase_file_name
from util.atomic import atomic_write_text


@dataclass(frozen=True)
class ModelConfig:
    """A model to train and run: its training flags (architecture, batch, HU window) and
    whether it is volumetric (``--patch_size`` patches of ``nifti_volume``)."""

    name: str
    flags: tuple[str, ...]
    volumetric: bool = False


MODELS: dict[str, ModelConfig] = {c.name: c for c in (
    ModelConfig("recipe", (*COMMON, *RECIPE)),
    ModelConfig("unet512", (*COMMON, *RECIPE, "--netG", "unet_512")),
    ModelConfig("unet3d", (*VOLUME, "--netG", "unet3d_4", "--ngf", "16", "--residual"), True),
    ModelConfig("motion3d", (*VOLUME, "--netG", "motion3d_4", "--ngf", "16"), True),
)}
#: Models of ``--quick`` (``unet_512`` needs slices of 512 pixels or more).
QUICK_MODELS = ("recipe", "unet3d", "motion3d")


@dataclass(frozen=True)
class Row:
    """One line of the table: ``seconds`` of the stage (per step for ``train``), the child
    process's peak resident memory in MiB, and further figures by name."""

    stage: str
    model: str
    patients: int
    cache: str
    seconds: float
    peak_mib: float
    figures: dict[str, Any] = field(default_factory=dict)

    def note(self) -> str:
        """The figures a reader needs beside seconds and peak, in words."""
        f = self.figures
        if self.stage == "train":
            return (f"{f['samples_per_s']:.2f} samples/s; data {f['data_mib']:.0f} MiB, "
                    f"epoch served in {f['epoch_s']:.1f} s")
        if self.stage == "infer":
            return f"{f['slices_per_s']:.2f} slices/s; read {f['read_s']:.1f} s; {f['how']}"
        return f.get("what", "")


@dataclass(frozen=True)
class Child:
    """What a child process gave back: wall seconds, peak resident memory (MiB), its JSON."""

    seconds: float
    peak_mib: float
    result: dict[str, Any]


def thread_env(threads: int) -> dict[str, str]:
    """The environment of a child: OpenMP/MKL threads pinned to ``threads`` when > 0."""
    env = dict(os.environ)
    if threads > 0:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


#: ``python -c PEAK_WRAPPER script.py args...`` runs the script as ``__main__`` in that process
#: and then prints its peak resident memory as the last stdout line, keeping its exit status.
PEAK_WRAPPER = """
import json, runpy, sys
sys.argv = sys.argv[1:]
code = 0
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as stop:
    code = stop.code
with open("/proc/self/status") as status:
    kib = int(status.read().split("VmHWM:")[1].split()[0])
print(json.dumps({"peak_mib": kib / 1024}), flush=True)
sys.exit(code)
"""


def script_cmd(script: str, *argv: str) -> list[str]:
    """The command running a project script (path from the root) under :data:`PEAK_WRAPPER`."""
    return [sys.executable, "-c", PEAK_WRAPPER, script, *argv]


def run_child(cmd: Sequence[str], log: Path, threads: int) -> Child:
    """Run ``cmd`` from the project root (stderr to ``log``) and read the JSON of its last stdout
    line, which must hold ``peak_mib``: the child's own VmHWM. (The kernel's ``ru_maxrss`` of a
    child is no use here: it counts the parent's memory shared at the fork.) SystemExit naming
    ``log`` with its tail when the child fails or prints no figures."""
    start = time.perf_counter()
    with log.open("w") as err:
        done = subprocess.run(list(cmd), cwd=ROOT, env=thread_env(threads), stdout=PIPE,
                              stderr=err, text=True, check=False)
    seconds = time.perf_counter() - start
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    if done.returncode != 0 or "peak_mib" not in result:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        why = f"exit {done.returncode}" if done.returncode else "no figures printed"
        raise SystemExit(f"{' '.join(cmd[:4])} failed ({why}, {log}):\n{tail}")
    return Child(seconds, result.pop("peak_mib"), result)


# --- child processes ------------------------------------------------------------------------

def parse_training(dataroot: str, flags: Sequence[str], work: Path) -> RunSettings:
    """The settings of a training of a model on ``dataroot`` (CPU; nothing is written)."""
    return run_settings(TrainOptions().parse(["--dataroot", dataroot, "--checkpoints_dir",
                                              str(work), "--name", "bench", "--gpu_ids", "-1",
                                              *flags]))


def endless(loader: Any, sampler: EpochSampler, first_epoch: int) -> Iterator[dict[str, Any]]:
    """Batches of ``loader``, epoch after epoch from ``first_epoch``."""
    epoch = first_epoch
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def train_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Dataset, one epoch served, model, 1 + ``spec['steps']`` training steps, in this process.
    Returns seconds per timed step, samples/s, the dataset's resident MiB after the epoch."""
    with tempfile.TemporaryDirectory() as work:
        settings = parse_training(spec["dataroot"], spec["flags"], Path(work))
        batch_size = settings.data.batch_size
        rss0 = proc_status_mib("VmRSS")
        dataset = create_dataset(settings.data)
        check_sizes(dataset, settings)
        sampler = training_sampler(dataset, settings)
        loader = create_dataloader(dataset, batch_size=batch_size, num_workers=0,
                                   sampler=sampler)
        start = time.perf_counter()
        for _ in loader:
            pass
        epoch_s = time.perf_counter() - start
        data_mib = proc_status_mib("VmRSS") - rss0
        model = create_model(settings)
        model.setup()
        batches = endless(loader, sampler, first_epoch=1)
        step_s = []
        for _ in range(1 + spec["steps"]):  # the first is the warm-up
            start = time.perf_counter()
            model.set_input(next(batches))
            model.optimize_parameters()
            step_s.append(time.perf_counter() - start)
    per_step = sum(step_s[1:]) / len(step_s[1:])
    return {"step_s": per_step, "samples_per_s": batch_size / per_step,
            "warmup_s": step_s[0], "epoch_s": epoch_s, "epoch_samples": len(dataset),
            "data_mib": data_mib, "batch_size": batch_size,
            "netG": settings.generator.netG}


def infer_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Read one volume and predict it whole with an initialised generator, in this process."""
    with tempfile.TemporaryDirectory() as work:
        settings = parse_training(spec["dataroot"], spec["flags"], Path(work)).generator
    net = build_generator(settings)
    start = time.perf_counter()
    stack = load_slice_stack(spec["volume"])
    read_s = time.perf_counter() - start
    windows = settings.windows(spec["overlap"])
    start = time.perf_counter()
    predict_volume(net, stack, hu_min=settings.hu_min, hu_max=settings.hu_max,
                   resize_to=settings.resize_to, batch_size=spec["batch_size"],
                   context_slices=settings.context_slices, size_rule=settings.size_rule(),
                   windows=windows)
    seconds = time.perf_counter() - start
    n_slices = stack.hu.shape[0]
    how = (f"windows {'x'.join(map(str, windows.window(stack.hu.shape)))}, overlap "
           f"{windows.overlap}" if windows else f"batch {spec['batch_size']}")
    return {"seconds": seconds, "slices_per_s": n_slices / seconds, "read_s": read_s,
            "n_slices": n_slices, "how": how, "netG": settings.netG}


def child_main(stage: str, spec: dict[str, Any]) -> None:
    """Entry of a child process: print the stage's figures as one JSON line."""
    logging.disable(logging.INFO)
    if spec["threads"] > 0:
        torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    result = train_child(spec) if stage == "train" else infer_child(spec)
    print(json.dumps({**result, "peak_mib": proc_status_mib("VmHWM")}))


# --- the parent -----------------------------------------------------------------------------

def generate(out: Path, args: argparse.Namespace, log: Path) -> Row:
    """One synthetic patient with ``scripts/make_synthetic_4dct.py``; its AVG's grid checked."""
    child = run_child(script_cmd(
        "scripts/make_synthetic_4dct.py", "--out", str(out), "--n_patients", "1", "--size",
        str(args.size), "--n_slices", str(args.n_slices), "--fov_mm",
        str(args.size * args.pixel_mm), "--slice_thickness_mm", str(args.slice_mm), "--seed", "0",
        "--no_progress"), log, args.threads)
    return Row("generate", "-", 1, "-", child.seconds, child.peak_mib,
               {"what": grid_text(out)})


def grid_text(synthetic: Path) -> str:
    """``512 x 512 x 120 voxels, 0.98 x 0.98 x 3.00 mm`` of the first AVG of a tree."""
    pid = sorted(p.name for p in (synthetic / "res_avg").iterdir())[0]
    info = read_info(synthetic / "res_avg" / pid / avg_file_name(pid))
    return (f"{' x '.join(map(str, info.shape))} voxels, "
            f"{' x '.join(f'{s:.2f}' for s in info.spacing_mm)} mm")


def link_export(synthetic: Path, export: Path, n_patients: int) -> None:
    """``export/res_avg``, ``export/res_phases``: ``n_patients`` patients whose AVG and phase-0
    files are hard links to the first synthetic patient's."""
    source = sorted(p.name for p in (synthetic / "res_avg").iterdir())[0]
    for k in range(n_patients):
        pid = patient_id(k)
        for tree, src, dst in (("res_avg", avg_file_name(source), avg_file_name(pid)),
                               ("res_phases", phase_file_name(source, 0),
                                phase_file_name(pid, 0))):
            (export / tree / pid).mkdir(parents=True)
            os.link(synthetic / tree / source / src, export / tree / pid / dst)


def prepare(synthetic: Path, work: Path, n_patients: int, threads: int) -> tuple[Row, Path]:
    """``prepare_dataset.py`` on an export of ``n_patients`` (all to ``train``); its row and
    the dataset root."""
    export, dataroot = work / f"export_{n_patients}", work / f"dataset_{n_patients}"
    link_export(synthetic, export, n_patients)
    child = run_child(script_cmd(
        "prepare_dataset.py", "--avg_root", str(export / "res_avg"), "--phases_root",
        str(export / "res_phases"), "--output", str(dataroot), "--val_fraction", "0",
        "--test_fraction", "0", "--no_progress"), work / f"prepare_{n_patients}.log", threads)
    return Row("prepare", "-", n_patients, "-", child.seconds, child.peak_mib), dataroot


def model_flags(model: ModelConfig, args: argparse.Namespace) -> list[str]:
    """The model's training flags, with ``--patch_size`` for a volumetric one."""
    patch = ["--patch_size", *map(str, args.patch_size)] if model.volumetric else []
    return [*model.flags, *patch]


def child_cmd(stage: str, spec: dict[str, Any]) -> list[str]:
    """The command line of a child process running ``stage`` on ``spec``."""
    return [sys.executable, str(Path(__file__).resolve()), "--child", stage, json.dumps(spec)]


def train(model: ModelConfig, dataroot: Path, n_patients: int, cache: int,
          args: argparse.Namespace, log: Path) -> Row:
    """Training steps of ``model`` on ``n_patients`` with ``--volume_cache cache``."""
    spec = {"dataroot": str(dataroot), "steps": args.steps, "threads": args.threads,
            "flags": [*model_flags(model, args), "--volume_cache", str(cache)]}
    child = run_child(child_cmd("train", spec), log, args.threads)
    return Row("train", model.name, n_patients, f"lazy {cache}" if cache else "all",
               child.result["step_s"], child.peak_mib, child.result)


def infer(model: ModelConfig, dataroot: Path, args: argparse.Namespace, log: Path) -> Row:
    """Whole-volume inference of ``model``'s architecture on the first training AVG."""
    volume = sorted((dataroot / "trainA").glob("*.nii*"))[0]
    spec = {"dataroot": str(dataroot), "volume": str(volume), "threads": args.threads,
            "flags": model_flags(model, args), "batch_size": args.infer_batch,
            "overlap": args.overlap}
    child = run_child(child_cmd("infer", spec), log, args.threads)
    return Row("infer", model.name, 1, "-", child.result["seconds"], child.peak_mib,
               child.result)


def table(rows: Sequence[Row]) -> str:
    """The rows as one Markdown table."""
    lines = ["| stage | model | patients | cache | seconds | peak MiB | note |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.stage} | {r.model} | {r.patients} | {r.cache} | {r.seconds:.2f} | "
              f"{r.peak_mib:.0f} | {r.note()} |" for r in rows]
    return "\n".join(lines)


def run_all(args: argparse.Namespace, work: Path) -> list[Row]:
    """Every stage in order, each row printed as it comes (stderr) and returned."""
    rows: list[Row] = []

    def add(row: Row) -> None:
        rows.append(row)
        print(f"  {row.stage} {row.model} N={row.patients} {row.cache}: {row.seconds:.2f} s, "
              f"peak {row.peak_mib:.0f} MiB", file=sys.stderr, flush=True)

    synthetic = args.synthetic or work / "synthetic"
    if args.synthetic is None:
        add(generate(synthetic, args, work / "generate.log"))
    dataroots = {}
    for n in args.patients:
        row, dataroots[n] = prepare(synthetic, work, n, args.threads)
        add(row)
    for name in args.models:
        model = MODELS[name]
        for n in args.patients:
            for cache in (0, args.volume_cache):
                add(train(model, dataroots[n], n, cache, args, work / f"train_{name}_{n}.log"))
        add(infer(model, dataroots[args.patients[0]], args, work / f"infer_{name}.log"))
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line; ``--quick`` sets the tiny sizes and one step."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="in-plane voxels (N x N)")
    parser.add_argument("--n_slices", type=int, default=120)
    parser.add_argument("--pixel_mm", type=float, default=0.98)
    parser.add_argument("--slice_mm", type=float, default=3.0)
    parser.add_argument("--patients", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=None,
                        help=f"default: all ({', '.join(MODELS)}); --quick: "
                             f"{', '.join(QUICK_MODELS)}")
    parser.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up")
    parser.add_argument("--volume_cache", type=int, default=1, help="the lazy rows' cache")
    parser.add_argument("--patch_size", type=int, nargs=3, default=None, metavar=("D", "H", "W"),
                        help="volumetric patches and windows (default 32 128 128; --quick "
                             "32 32 32)")
    parser.add_argument("--infer_batch", type=int, default=8, help="slices per forward pass")
    parser.add_argument("--overlap", type=float, default=0.5, help="volumetric window overlap")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch (and OpenMP) threads of every child (0: torch's default)")
    parser.add_argument("--quick", action="store_true",
                        help="64 x 64 x 16 voxels, one step (a smoke test)")
    parser.add_argument("--synthetic", type=Path, help="reuse this synthetic tree (no generate)")
    parser.add_argument("--work", type=Path, help="keep the files here (default: a temp folder)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # stage, JSON spec
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.n_slices, args.steps = 64, 16, 1
    args.synthetic = args.synthetic and args.synthetic.resolve()  # children run from ROOT
    args.work = args.work and args.work.resolve()
    args.models = args.models or list(QUICK_MODELS if args.quick else MODELS)
    args.patch_size = args.patch_size or ([32, 32, 32] if args.quick else [32, 128, 128])
    if min(args.patients) < 1 or args.steps < 1 or args.volume_cache < 1:
        parser.error("--patients, --steps and --volume_cache must be at least 1")
    if args.work is not None and args.work.exists() and any(args.work.iterdir()):
        parser.error(f"--work {args.work}: not empty; give a new or empty folder")
    return args


def header(args: argparse.Namespace, load: tuple[float, float, float]) -> str:
    """What was run, on what: the line above the table."""
    threads = args.threads or torch.get_num_threads()
    return (f"torch {torch.__version__}, CPU {cpu_name()}, {threads} threads; "
            f"{args.size} x {args.size} x {args.n_slices} at {args.pixel_mm} x {args.pixel_mm} "
            f"x {args.slice_mm} mm; {args.steps} timed steps; load average "
            f"{' '.join(f'{x:.2f}' for x in load)}")


def main(argv: Sequence[str] | None = None) -> None:
    """Run the stages, print the table, write ``--json``."""
    args = parse_args(argv)
    if args.child:
        child_main(args.child[0], json.loads(args.child[1]))
        return
    load_before = os.getloadavg()
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
        rows = run_all(args, args.work)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            rows = run_all(args, Path(tmp))
    load_after = os.getloadavg()
    print(header(args, load_before))
    print(table(rows))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in load_after)}")
    if args.json:
        atomic_write_text(args.json, json.dumps({
            "torch": torch.__version__, "cpu": cpu_name(),
            "threads": args.threads or torch.get_num_threads(),
            "grid": {"size": args.size, "n_slices": args.n_slices, "pixel_mm": args.pixel_mm,
                     "slice_mm": args.slice_mm},
            "load_before": load_before, "load_after": load_after,
            "rows": [asdict(r) for r in rows]}, indent=1) + "\n")


if __name__ == "__main__":
    main()
