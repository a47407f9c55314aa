"""A GPU run in one command: the CUDA tests, the training step, DDP and whole-volume inference.

    bash benchmarks/gpu_check.sh OUT                      # a fresh GPU machine, at most 8 minutes
    python benchmarks/gpu_check.py --out OUT --budget 480
    python benchmarks/gpu_check.py --dry_run --out OUT    # CPU, tiny sizes, gloo (CI)

Stages, in this order; each job runs in a child process of its own (its peak memory is its own,
and a crash or a hang is recorded as that job's, with its error line, while the rest still run):

1. ``pytest``: ``pytest -m cuda`` over the test files that use the marker;
2. ``train``: the pix2pix training step (G and D forward and backward, both fused-Adam updates,
   instance norm) fed from one pre-made batch, ``unet_256`` @ 256 and ``unet_512`` @ 512,
   batch 1 and 8, plain (float32, TF32 where the GPU has it), ``--amp bf16`` and
   ``--channels_last``; per row s/step, slices/s, achieved TFLOP/s (the FLOPs of one step counted
   by ``torch.utils.flop_counter``, over the measured time) and peak GiB
   (``torch.cuda.max_memory_allocated`` from the model's construction on);
3. ``ddp``: ``torchrun --nproc_per_node 1 train.py`` on a tiny dataset (seconds, success), and
   a generator step in ``DistributedDataParallel`` on a 1-process nccl group (s/step);
4. ``inference``: a 512 x 512 x 120 volume through ``models.inference.predict_volume``,
   ``unet_512``, batch 8, float32 and bf16 (s/volume, slices/s, TFLOP/s, peak GiB);
5. ``compile``: the training step of stage 2 with ``--compile``, last because it is the
   slowest; timing excludes the first (compiling) step and the warm-up steps; what they took
   beyond as many timed steps is reported apart (``compile s``).

A global time budget (``--budget``, seconds) bounds the run: a job is started only while time
is left and is stopped at the budget (or at its stage's cap, :data:`STAGE_CAPS_S`); rows not
reached are recorded as skipped. Writes ``OUT/gpu_check.json``, ``OUT/gpu_check.md`` (one table
under a header naming the device, torch version and date) and ``OUT/logs/`` (each child's
stderr). Exit status 1 when a stage failed.

``--dry_run`` takes the same path on the CPU with tiny sizes (``unet_64`` @ 64, ngf 8, batch 1
and 2, a 64 x 64 x 8 volume, gloo instead of nccl; ``--compile`` where a C++ compiler exists),
so the script is exercised in CI without a GPU (``tests/test_gpu_check.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import gc
import json
import logging
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import nibabel as nib
import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import cpu_name, proc_status_mib, sync
from data.ct_volumes import SliceStack, load_slice_stack
from models import create_model
from models.base_model import BaseModel
from models.inference import predict_hu, predict_volume
from models.networks import define_G
from options.base_options import run_settings
from options.train_options import TrainOptions
from util.atomic import atomic_write_json, atomic_write_text
from util.cli import setup_logging
from util.speed import compile_supported, configure_backends, make_adam, resolve_amp

REPO = Path(__file__).resolve().parents[1]
#: Prefix of the lines on which a child process reports one row (JSON) on stdout.
ROW_PREFIX = "gpu_check row: "
STAGES = ("pytest", "train", "ddp", "inference", "compile")
#: Most seconds a stage may take (None: whatever the budget leaves), so that one hang cannot
#: starve the stages after it.
STAGE_CAPS_S: dict[str, float | None] = {"pytest": 150.0, "train": 150.0, "ddp": 90.0,
                                         "inference": 90.0, "compile": None}
#: Fewest seconds left for a job to be started.
MIN_JOB_S = 3.0
#: Seconds of a job's time limit that its child keeps in hand (it starts no row past the rest).
CHILD_MARGIN_S = 2.0
#: Seconds a stopped job gets to end its own children (torchrun) before it is killed.
STOP_GRACE_S = 5.0
ROW_STATUSES = ("ok", "failed", "skipped")
#: Training-step variant -> its train.py flags.
#: Every variant but bf16 in float32 (train.py's --amp auto would take bf16 on an AMX CPU).
VARIANT_FLAGS: dict[str, tuple[str, ...]] = {"plain": ("--amp", "off"),
                                             "bf16": ("--amp", "bf16"),
                                             "channels_last": ("--channels_last", "--amp", "off"),
                                             "compile": ("--compile", "--amp", "off")}
HU_MIN, HU_MAX = -1024.0, 3071.0


@dataclass(frozen=True)
class Plan:
    """What one run measures. ``train_configs``: (netG, slice side in pixels); ``volume_shape``:
    (I, J, K) voxels of the inference volume, K axial slices; ``gpu_ids``: "0" or "-1" (CPU)."""

    dry_run: bool
    gpu_ids: str
    train_configs: tuple[tuple[str, int], ...]
    batches: tuple[int, ...]
    variants: tuple[str, ...]
    compile_batches: tuple[int, ...]
    ngf: int
    warmup: int
    steps: int
    volume_shape: tuple[int, int, int]
    infer_net: str
    infer_batch: int
    ddp_config: tuple[str, int]
    ddp_backend: str

    @property
    def device(self) -> torch.device:
        """The device every job runs on."""
        return torch.device("cpu" if self.gpu_ids == "-1" else f"cuda:{self.gpu_ids}")


FULL_PLAN = Plan(dry_run=False, gpu_ids="0",
                 train_configs=(("unet_256", 256), ("unet_512", 512)), batches=(1, 8),
                 variants=("plain", "bf16", "channels_last"), compile_batches=(1, 8), ngf=64,
                 warmup=2, steps=10, volume_shape=(512, 512, 120), infer_net="unet_512",
                 infer_batch=8, ddp_config=("unet_256", 256), ddp_backend="nccl")
DRY_PLAN = Plan(dry_run=True, gpu_ids="-1", train_configs=(("unet_64", 64),), batches=(1, 2),
                variants=("plain", "bf16", "channels_last"), compile_batches=(1,), ngf=8,
                warmup=1, steps=2, volume_shape=(64, 64, 8), infer_net="unet_64",
                infer_batch=8, ddp_config=("unet_64", 64), ddp_backend="gloo")


@dataclass(frozen=True)
class Row:
    """One measured case. ``seconds`` per ``per`` (a step, a volume, a run); ``peak_gib``: the
    GPU's max allocated memory (GiB) for the row, on the CPU the process's max resident set
    (not reset between rows); ``compile_s`` (``--compile`` only): what the untimed first and
    warm-up steps took beyond as many timed ones, i.e. compiling and recompiling."""

    case: str
    status: str
    seconds: float | None = None
    per: str = ""
    slices_per_s: float | None = None
    tflops: float | None = None
    peak_gib: float | None = None
    compile_s: float | None = None
    note: str = ""


@dataclass(frozen=True)
class Job:
    """One child process: ``stage``, ``key`` (its configuration, e.g. ``unet_256:256``, or
    empty) and the ``cases`` it reports, in order."""

    stage: str
    key: str
    cases: tuple[str, ...]


@dataclass(frozen=True)
class StageResult:
    """A stage's ``status`` (ok, failed, timeout, skipped), wall ``seconds``, first ``error``
    line (None when none) and its rows."""

    name: str
    status: str
    seconds: float
    error: str | None
    rows: tuple[Row, ...]


# ---------------------------------------------------------------- names of the cases

def train_case(net_g: str, size: int, batch: int, variant: str) -> str:
    """``unet_256@256 batch 8 bf16``."""
    return f"{net_g}@{size} batch {batch} {variant}"


def inference_case(plan: Plan, precision: str) -> str:
    """``unet_512 512x512x120 batch 8 bf16``."""
    return (f"{plan.infer_net} {'x'.join(map(str, plan.volume_shape))} batch {plan.infer_batch} "
            f"{precision}")


def ddp_cases(plan: Plan) -> tuple[str, str]:
    """The torchrun run and the DDP step."""
    return ("torchrun train.py, 1 process", f"DDP step, 1 process, {plan.ddp_backend}")


def plan_jobs(plan: Plan) -> dict[str, list[Job]]:
    """Stage -> its jobs, in run order."""
    def train_jobs(stage: str, variants: Sequence[str], batches: Sequence[int]) -> list[Job]:
        return [Job(stage, f"{net}:{size}", tuple(train_case(net, size, b, v) for b in batches
                                                  for v in variants))
                for net, size in plan.train_configs]

    return {"pytest": [Job("pytest", "", ("pytest -m cuda",))],
            "train": train_jobs("train", plan.variants, plan.batches),
            "ddp": [Job("ddp", "", ddp_cases(plan))],
            "inference": [Job("inference", "", tuple(inference_case(plan, p)
                                                     for p in ("fp32", "bf16")))],
            "compile": train_jobs("compile", ("compile",), plan.compile_batches)}


# ---------------------------------------------------------------- parent: jobs and stages

def error_line(text: str) -> str:
    """The last non-empty line of ``text`` (an error's message), at most 300 characters."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def parse_rows(stdout: str) -> list[Row]:
    """The rows a child reported on its stdout (a line cut short by a kill is left out)."""
    rows = []
    for line in stdout.splitlines():
        if line.startswith(ROW_PREFIX):
            try:
                rows.append(Row(**json.loads(line[len(ROW_PREFIX):])))
            except (json.JSONDecodeError, TypeError):
                continue
    return rows


def stop_group(proc: subprocess.Popen) -> None:
    """End the child's process group (it was started in a session of its own): SIGTERM, so
    torchrun ends its workers, then SIGKILL after :data:`STOP_GRACE_S`."""
    for sig, wait_s in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run_job(job: Job, argv: Sequence[str], timeout_s: float, log: Path
            ) -> tuple[list[Row], str | None, bool]:
    """Run one child with ``argv`` for at most ``timeout_s``; its stderr goes to ``log``.

    Returns (a row for each of ``job.cases``, in order, plus any other it reported; the
    child's error line, None when it exited 0; whether it was stopped at the time limit). A
    case the child did not report is failed with the child's error, or skipped when the child
    was stopped first.
    """
    with log.open("w") as err, tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=err, cwd=REPO, text=True,
                                start_new_session=True)
        try:
            proc.wait(timeout=max(timeout_s, 0.1))
            timed_out = False
        except subprocess.TimeoutExpired:
            stop_group(proc)
            timed_out = True
        out.seek(0)
        reported = {row.case: row for row in parse_rows(out.read())}
    error = None
    if timed_out:
        error = f"stopped at its time limit after {timeout_s:.0f} s"
    elif proc.returncode != 0:
        error = error_line(log.read_text(errors="replace")) or f"exit status {proc.returncode}"
    missing = (Row(case, "skipped", note=f"not reached: {error}") if timed_out
               else Row(case, "failed", note=error or "the child reported no row")
               for case in job.cases)
    rows = [reported.pop(case, default) for case, default in zip(job.cases, missing,
                                                                  strict=True)]
    return rows + list(reported.values()), error, timed_out


def stage_status(rows: Sequence[Row], errors: Sequence[str], timeouts: Sequence[str]) -> str:
    """failed (a row failed or a child exited non-zero), timeout (a child was stopped at its
    time limit), skipped (no row ran) or ok."""
    if errors or any(r.status == "failed" for r in rows):
        return "failed"
    if timeouts:
        return "timeout"
    return "skipped" if all(r.status == "skipped" for r in rows) else "ok"


def run_stage(name: str, jobs: Sequence[Job], command: Callable[[Job, float], list[str]],
              deadline: float, log_dir: Path) -> StageResult:
    """Run a stage's jobs while time is left before ``deadline`` (time.monotonic seconds) and
    its cap; jobs that cannot start are recorded as skipped."""
    start = time.monotonic()
    cap = STAGE_CAPS_S.get(name)
    stage_deadline = deadline if cap is None else min(deadline, start + cap)
    rows: list[Row] = []
    errors: list[str] = []
    timeouts: list[str] = []
    for job in jobs:
        left = stage_deadline - time.monotonic()
        if left < MIN_JOB_S:
            reason = "budget spent" if stage_deadline == deadline else "stage cap reached"
            rows += [Row(case, "skipped", note=f"{reason} before the job started")
                     for case in job.cases]
            continue
        log = log_dir / f"{name}{'-' + job.key.replace(':', '_') if job.key else ''}.log"
        job_rows, error, stopped = run_job(job, command(job, left - CHILD_MARGIN_S), left, log)
        rows += job_rows
        (timeouts if stopped else errors).extend([] if error is None else [error])
    first_error = next(iter(errors), None) or next(
        (r.note for r in rows if r.status == "failed"), None) or next(iter(timeouts), None)
    return StageResult(name, stage_status(rows, errors, timeouts), time.monotonic() - start,
                       first_error, tuple(rows))


def run_stages(jobs: Mapping[str, Sequence[Job]], command: Callable[[Job, float], list[str]],
               budget_s: float, log_dir: Path) -> list[StageResult]:
    """Every stage in order within ``budget_s`` seconds from now."""
    log_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + budget_s
    return [run_stage(name, stage_jobs, command, deadline, log_dir)
            for name, stage_jobs in jobs.items()]


def child_command(plan: Plan, work: Path) -> Callable[[Job, float], list[str]]:
    """The command line of a job's child process, given the seconds it has."""
    def command(job: Job, seconds_left: float) -> list[str]:
        return [sys.executable, str(Path(__file__).resolve()), "--child", job.stage,
                "--key", job.key, "--seconds_left", f"{seconds_left:.1f}", "--work",
                str(work), *(["--dry_run"] if plan.dry_run else [])]
    return command


# ---------------------------------------------------------------- report

def machine_meta(plan: Plan) -> dict[str, object]:
    """Device, versions and date of the run."""
    meta: dict[str, object] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "python": platform.python_version(), "dry_run": plan.dry_run,
        "cpu": f"{cpu_name()}, {os.cpu_count()} logical cores"}
    if plan.device.type == "cuda":
        props = torch.cuda.get_device_properties(plan.device)
        meta |= {"device": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                 "compute_capability": f"{props.major}.{props.minor}"}
    else:
        meta["device"] = f"CPU ({meta['cpu']})"
    return meta


def fmt(value: float | None) -> str:
    """A figure to 4 significant digits; empty for None."""
    return "" if value is None else f"{value:.4g}"


def markdown(report: Mapping[str, object]) -> str:
    """The report as a header and one Markdown table (a row per case, every stage)."""
    meta = cast(dict[str, Any], report["meta"])
    stages = cast(list[dict[str, Any]], report["stages"])
    mode = ("dry run on the CPU (tiny sizes, gloo)" if meta["dry_run"]
            else f"{meta.get('gpu_memory_gib')} GiB, compute capability "
                 f"{meta.get('compute_capability')}")
    lines = [f"# GPU check: {meta['device']}", "",
             f"torch {meta['torch']} (CUDA {meta['cuda'] or 'none'}), Python {meta['python']}, "
             f"{meta['date']}; {mode}; CPU {meta['cpu']}. Budget {meta['budget_s']:.0f} s, "
             f"{meta['elapsed_s']:.0f} s used.", "",
             "Stages: " + "; ".join(
                 f"{s['name']} **{s['status']}** ({s['seconds']:.0f} s"
                 + (f": {s['error']}" if s["error"] else "") + ")" for s in stages) + ".", "",
             "Seconds are per step (training), per volume (inference) or per run; peak GiB is "
             "torch.cuda.max_memory_allocated for the row (on the CPU: the process's max "
             "resident set); compile s is what the untimed first and warm-up steps took "
             "beyond as many timed ones (compiling).", "",
             "| stage | case | status | seconds | per | slices/s | TFLOP/s | peak GiB | "
             "compile s | note |",
             "|---|---|---|---:|---|---:|---:|---:|---:|---|"]
    for stage in stages:
        for row in stage["rows"]:
            note = str(row["note"]).replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {stage['name']} | {row['case']} | {row['status']} | "
                         f"{fmt(row['seconds'])} | {row['per']} | {fmt(row['slices_per_s'])} | "
                         f"{fmt(row['tflops'])} | {fmt(row['peak_gib'])} | "
                         f"{fmt(row['compile_s'])} | {note} |")
    return "\n".join(lines) + "\n"


def make_report(meta: dict[str, object], results: Sequence[StageResult]) -> dict[str, object]:
    """The JSON document: ``meta`` and the stages with their rows."""
    return {"meta": meta, "stages": [dataclasses.asdict(r) for r in results]}


# ---------------------------------------------------------------- child: measuring helpers

def reset_peak(device: torch.device) -> None:
    """Free cached blocks and start a new peak-memory count (GPU); nothing on the CPU."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float:
    """GiB: the most allocated on the GPU since :func:`reset_peak`; on the CPU, the process's
    peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return proc_status_mib("VmHWM") / 1024


def exception_line(exc: BaseException) -> str:
    """``Type: message`` on one line, at most 300 characters."""
    return f"{type(exc).__name__}: {error_line(str(exc)) or repr(exc)}"[:300]


def guarded(case: str, measure: Callable[[], Row]) -> Row:
    """``measure()``, or a failed row with the exception's line (the job goes on)."""
    try:
        return measure()
    except Exception as exc:
        print(f"{case}: failed", file=sys.stderr)
        traceback.print_exc()
        return Row(case, "failed", note=exception_line(exc))


def random_pair(batch: int, size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A pre-made batch: ``A`` and ``B`` (batch, 1, size, size) float32 in [-1, 1] on the CPU,
    pinned for a GPU (as the DataLoader serves them)."""
    gen = torch.Generator().manual_seed(0)
    pair = {k: torch.rand(batch, 1, size, size, generator=gen) * 2 - 1 for k in "AB"}
    return {k: v.pin_memory() for k, v in pair.items()} if device.type == "cuda" else pair


def build_model(plan: Plan, work: Path, net_g: str, batch: int, variant: str) -> BaseModel:
    """A pix2pix training model as ``train.py`` builds it (instance norm, the variant's
    flags), set up; weights from seed 0."""
    argv = ["--dataroot", str(work), "--checkpoints_dir", str(work / "ck"), "--name", "check",
            "--model", "pix2pix", "--netG", net_g, "--ngf", str(plan.ngf), "--ndf",
            str(plan.ngf), "--norm", "instance", "--axial_slice", "--preprocess", "none",
            "--gpu_ids", plan.gpu_ids, "--batch_size", str(batch), "--num_threads", "0",
            "--recipe", "pix2pix", *VARIANT_FLAGS[variant]]
    torch.manual_seed(0)
    model = create_model(run_settings(TrainOptions().parse(argv)))
    model.setup()
    return model


def speed_path_missing(model: BaseModel, variant: str) -> str | None:
    """Why the model does not run the speed path ``variant`` asks for (None when it does)."""
    if variant == "bf16" and model.speed.amp_dtype is not torch.bfloat16:
        return f"--amp bf16 is off on {model.device} (no bfloat16 support)"
    if variant == "compile" and not model.speed.compile:
        return f"--compile is off on {model.device}: {compile_supported(model.device)}"
    return None


def time_steps(model: BaseModel, batch: dict[str, torch.Tensor], n: int) -> float:
    """Seconds of ``n`` training steps on ``batch``, the device's queue drained at both ends."""
    sync(model.device)
    start = time.perf_counter()
    for _ in range(n):
        model.set_input(batch)
        model.optimize_parameters()
    sync(model.device)
    return time.perf_counter() - start


def step_flops(plan: Plan, work: Path, net_g: str, size: int, batch: int) -> float:
    """FLOPs of one plain training step (G and D, forward and backward) at ``batch``."""
    model = build_model(plan, work, net_g, batch, "plain")
    try:
        with FlopCounterMode(display=False) as counter:
            time_steps(model, random_pair(batch, size, plan.device), 1)
        return float(counter.get_total_flops())
    finally:
        del model
        reset_peak(plan.device)


def time_training(plan: Plan, work: Path, net_g: str, size: int, batch: int, variant: str,
                  flops: float | None) -> Row:
    """One row of the training-step table (``flops``: of one step, None when not counted)."""
    case = train_case(net_g, size, batch, variant)
    reset_peak(plan.device)
    model = build_model(plan, work, net_g, batch, variant)
    try:
        missing = speed_path_missing(model, variant)
        if missing is not None:
            return Row(case, "skipped", note=missing)
        pair = random_pair(batch, size, plan.device)
        untimed_s = time_steps(model, pair, 1) + time_steps(model, pair, plan.warmup)
        seconds = time_steps(model, pair, plan.steps)
        bad = sorted(k for k, v in model.get_current_losses().items() if not math.isfinite(v))
        peak = peak_gib(plan.device)
    finally:
        del model
        reset_peak(plan.device)
    return Row(case, "failed" if bad else "ok", seconds / plan.steps, "step",
               plan.steps * batch / seconds,
               None if flops is None else flops * plan.steps / seconds / 1e12, peak,
               untimed_s - (1 + plan.warmup) * seconds / plan.steps if variant == "compile"
               else None,
               f"non-finite losses: {', '.join(bad)}" if bad else
               f"{plan.steps} steps after {1 + plan.warmup} untimed")


# ---------------------------------------------------------------- child: the jobs

def train_job(plan: Plan, key: str, work: Path, deadline: float, variants: Sequence[str],
              batches: Sequence[int]) -> Iterator[Row]:
    """Rows of the training step for ``key`` (``netG:size``). A row starts only if the time
    left is at least what the previous row took."""
    net_g, size = key.split(":")[0], int(key.split(":")[1])
    last_s = 0.0
    for batch in batches:
        flops: float | None = None
        flops_note = ""
        for variant in variants:
            case = train_case(net_g, size, batch, variant)
            if time.monotonic() + last_s > deadline:
                yield Row(case, "skipped", note="budget: not enough time left for this row")
                continue
            start = time.monotonic()
            if variant == "compile":
                torch.compiler.reset()  # no recompilation with dynamic shapes across batches
            if flops is None and not flops_note:
                try:
                    flops = step_flops(plan, work, net_g, size, batch)
                except Exception as exc:
                    flops_note = f"FLOPs not counted: {exception_line(exc)}"
            row = guarded(case, functools.partial(time_training, plan, work, net_g, size, batch,
                                                  variant, flops))
            last_s = time.monotonic() - start
            yield dataclasses.replace(row, note="; ".join(n for n in (row.note, flops_note) if n))


def write_volume(path: Path, shape: tuple[int, int, int]) -> SliceStack:
    """A random CT-like int16 volume of ``shape`` (I, J, K) voxels, 0.9 x 0.9 x 3 mm, written
    as NIfTI at ``path`` and read back as a slice stack."""
    vol = np.random.default_rng(0).integers(-1000, 1500, shape).astype(np.int16)
    nib.save(nib.Nifti1Image(vol, np.diag([0.9, 0.9, 3.0, 1.0])), path)
    return load_slice_stack(path)


def forward_flops(net: nn.Module, stack: SliceStack, batch: int, device: torch.device) -> float:
    """FLOPs per slice of the generator's forward pass on a batch of ``stack``'s slices."""
    x = torch.zeros(batch, 1, *stack.hu.shape[1:], device=device)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        net(x)
    return counter.get_total_flops() / batch


def time_inference(plan: Plan, net: nn.Module, stack: SliceStack, precision: str,
                   flops_per_slice: float) -> Row:
    """Seconds to predict the whole volume with ``predict_volume`` (after a warm-up batch)."""
    case = inference_case(plan, precision)
    amp_dtype = resolve_amp("off" if precision == "fp32" else "bf16", plan.device)
    if precision == "bf16" and amp_dtype is None:
        return Row(case, "skipped", note=f"no bfloat16 support on {plan.device}")
    predict_hu(net, stack.hu[:plan.infer_batch], hu_min=HU_MIN, hu_max=HU_MAX,
               batch_size=plan.infer_batch, device=plan.device,
               amp_dtype=amp_dtype)  # warm-up: cudnn autotuning of this shape
    reset_peak(plan.device)
    sync(plan.device)
    start = time.perf_counter()
    volume = predict_volume(net, stack, hu_min=HU_MIN, hu_max=HU_MAX,
                            batch_size=plan.infer_batch, device=plan.device,
                            amp_dtype=amp_dtype)
    sync(plan.device)
    seconds = time.perf_counter() - start
    n_slices = stack.hu.shape[0]
    ok = volume.shape == plan.volume_shape and bool(np.isfinite(volume).all())
    return Row(case, "ok" if ok else "failed", seconds, "volume", n_slices / seconds,
               flops_per_slice * n_slices / seconds / 1e12, peak_gib(plan.device),
               note="" if ok else f"output {volume.shape}, finite {np.isfinite(volume).all()}")


def inference_job(plan: Plan, key: str, work: Path, deadline: float  # noqa: ARG001
                  ) -> Iterator[Row]:
    """Rows of whole-volume inference, float32 then bf16."""
    configure_backends(plan.device)  # TF32 and the cudnn autotuner, as test.py has them
    stack = write_volume(work / "volume.nii", plan.volume_shape)
    torch.manual_seed(0)
    net = define_G(1, 1, plan.ngf, plan.infer_net, norm="instance", use_dropout=False)
    net = net.to(plan.device).eval()
    flops = forward_flops(net, stack, plan.infer_batch, plan.device)
    for precision in ("fp32", "bf16"):
        case = inference_case(plan, precision)
        if time.monotonic() > deadline:
            yield Row(case, "skipped", note="budget: no time left for this row")
            continue
        yield guarded(case, functools.partial(time_inference, plan, net, stack, precision, flops))


def write_pairs(root: Path, size: int, n_slices: int, n_patients: int = 2) -> None:
    """Random CT-like int16 AVG / phase-0 NIfTI pairs in ``root/trainA``, ``root/trainB``."""
    rng = np.random.default_rng(0)
    for side in "AB":
        (root / f"train{side}").mkdir(parents=True, exist_ok=True)
    for p in range(n_patients):
        avg = rng.integers(-1000, 1500, (size, size, n_slices)).astype(np.int16)
        for side, vol in (("A", avg), ("B", avg + 100)):
            nib.save(nib.Nifti1Image(vol, np.diag([0.9, 0.9, 3.0, 1.0])),
                     root / f"train{side}" / f"p{p}.nii")


def torchrun_row(plan: Plan, work: Path, deadline: float) -> Row:
    """``torchrun --nproc_per_node 1 train.py`` for one epoch on two tiny patients."""
    case = ddp_cases(plan)[0]
    net_g, size = plan.ddp_config
    root, n_slices, batch = work / "ddp_data", 4, 2
    write_pairs(root, size, n_slices)
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "1", str(REPO / "train.py"), "--dataroot", str(root), "--checkpoints_dir",
            str(work / "ddp_ck"), "--name", "ddp", "--model", "pix2pix", "--dataset_mode",
            "nifti_aligned", "--axial_slice", "--preprocess", "none", "--netG", net_g, "--ngf",
            str(plan.ngf), "--ndf", str(plan.ngf), "--norm", "instance", "--batch_size",
            str(batch), "--gpu_ids", plan.gpu_ids, "--num_threads", "0", "--n_epochs", "1",
            "--n_epochs_decay", "0", "--val_freq", "0", "--no_html", "--display_freq",
            "1000000", "--print_freq", "1000000", "--recipe", "pix2pix"]
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=work, capture_output=True, text=True,
                          timeout=max(deadline - time.monotonic(), 1.0))
    seconds = time.perf_counter() - start
    log = proc.stdout + proc.stderr
    print(log, file=sys.stderr)
    ran_on = re.search(r"speed paths on (\S+):", log)
    saved = (work / "ddp_ck" / "ddp" / "latest_net_G.pth").is_file()
    if proc.returncode != 0 or not saved:
        return Row(case, "failed", seconds, "run",
                   note=error_line(proc.stderr) or f"exit {proc.returncode}, saved {saved}")
    return Row(case, "ok", seconds, "run", note=(
        f"{net_g}@{size}, {2 * n_slices} slices, batch {batch}, 1 epoch on "
        f"{ran_on.group(1) if ran_on else '?'}; the wall time includes start-up. With "
        "WORLD_SIZE 1, train.py runs without a process group"))


def ddp_step_row(plan: Plan) -> Row:
    """The generator in DistributedDataParallel on a 1-process group of ``plan.ddp_backend``:
    L1 loss, backward (gradients all-reduced), fused Adam; seconds per step."""
    case = ddp_cases(plan)[1]
    device = plan.device
    net_g, size = plan.ddp_config
    batch = plan.batches[-1]
    dist.init_process_group(plan.ddp_backend, store=dist.HashStore(), rank=0, world_size=1,
                            device_id=device if device.type == "cuda" else None)
    try:
        torch.manual_seed(0)
        net = define_G(1, 1, plan.ngf, net_g, norm="instance", use_dropout=False).to(device)
        reset_peak(device)
        ddp = DistributedDataParallel(net, device_ids=[device.index] if device.index is not None
                                      else None)
        adam = make_adam(ddp.parameters(), lr=2e-4, betas=(0.5, 0.999), device=device)
        pair = {k: v.to(device) for k, v in random_pair(batch, size, device).items()}

        def step() -> float:
            adam.zero_grad(set_to_none=True)
            loss = (ddp(pair["A"]) - pair["B"]).abs().mean()
            loss.backward()
            adam.step()
            return float(loss.detach())

        for _ in range(1 + plan.warmup):
            step()
        with FlopCounterMode(display=False) as counter:
            step()
        sync(device)
        start = time.perf_counter()
        losses = [step() for _ in range(plan.steps)]
        sync(device)
        seconds = time.perf_counter() - start
    finally:
        dist.destroy_process_group()
    ok = all(math.isfinite(v) for v in losses)
    return Row(case, "ok" if ok else "failed", seconds / plan.steps, "step",
               plan.steps * batch / seconds,
               counter.get_total_flops() * plan.steps / seconds / 1e12, peak_gib(device),
               note=f"{net_g}@{size} G alone, batch {batch}, L1 + fused Adam"
               + ("" if ok else f"; non-finite losses {losses}"))


def ddp_job(plan: Plan, key: str, work: Path, deadline: float  # noqa: ARG001
            ) -> Iterator[Row]:
    """The torchrun run, then the DDP step."""
    run_case, step_case = ddp_cases(plan)
    yield guarded(run_case, lambda: torchrun_row(plan, work, deadline))
    if time.monotonic() > deadline:
        yield Row(step_case, "skipped", note="budget: no time left for this row")
    else:
        yield guarded(step_case, lambda: ddp_step_row(plan))


def cuda_test_files() -> list[Path]:
    """The test files that use the ``cuda`` marker."""
    return sorted(p for p in (REPO / "tests").rglob("test_*.py")
                  if "mark.cuda" in p.read_text(encoding="utf-8"))


def junit_outcomes(path: Path) -> dict[str, str]:
    """Test id -> passed, failed or skipped, from pytest's JUnit XML report."""
    outcomes = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        outcome = ("failed" if kinds & {"failure", "error"} else
                   "skipped" if "skipped" in kinds else "passed")
        outcomes[f"{case.get('classname')}::{case.get('name')}"] = outcome
    return outcomes


def pytest_job(plan: Plan, key: str, work: Path, deadline: float  # noqa: ARG001
               ) -> Iterator[Row]:
    """``pytest -m cuda`` over the files that use the marker: one row with the counts."""
    case = plan_jobs(plan)["pytest"][0].cases[0]
    files = cuda_test_files()
    if not files:
        yield Row(case, "skipped", note="no test file uses the cuda marker")
        return
    xml = work / "pytest_cuda.xml"
    argv = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
            f"--junitxml={xml}", *map(str, files)]
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True,
                          timeout=max(deadline - time.monotonic(), 1.0))
    seconds = time.perf_counter() - start
    print(proc.stdout + proc.stderr, file=sys.stderr)
    outcomes = junit_outcomes(xml) if xml.is_file() else {}
    counts = {k: sum(v == k for v in outcomes.values()) for k in ("passed", "failed", "skipped")}
    failed = [name for name, v in outcomes.items() if v == "failed"]
    note = (", ".join(f"{n} {k}" for k, n in counts.items()) + f" in {len(files)} file(s)"
            + (f"; failed: {', '.join(failed)}" if failed else "")
            + ("" if outcomes else f"; {error_line(proc.stdout + proc.stderr)}"))
    yield Row(case, "ok" if proc.returncode == 0 else "failed", seconds, "run", note=note)


CHILD_JOBS: dict[str, Callable[[Plan, str, Path, float], Iterator[Row]]] = {
    "pytest": pytest_job,
    "train": lambda plan, key, work, deadline: train_job(plan, key, work, deadline,
                                                         plan.variants, plan.batches),
    "ddp": ddp_job,
    "inference": inference_job,
    "compile": lambda plan, key, work, deadline: train_job(plan, key, work, deadline,
                                                           ("compile",), plan.compile_batches),
}


# ---------------------------------------------------------------- entry point

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check_out"),
                        help="folder for gpu_check.json, gpu_check.md and logs/")
    parser.add_argument("--budget", type=float, default=480.0,
                        help="seconds for all stages together; jobs past it are skipped")
    parser.add_argument("--dry_run", action="store_true",
                        help="CPU, tiny sizes, gloo: the same path, for CI")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES),
                        help="stages to run (default: all, in order)")
    parser.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--key", default="", help=argparse.SUPPRESS)
    parser.add_argument("--seconds_left", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def child_main(args: argparse.Namespace) -> int:
    """Run one job and print its rows on stdout as they are measured."""
    plan = DRY_PLAN if args.dry_run else FULL_PLAN
    deadline = time.monotonic() + args.seconds_left
    setup_logging()  # stderr, i.e. the job's log: speed paths, TF32, torchrun's output
    logging.getLogger("options.base_options").setLevel(logging.WARNING)  # options per model
    if plan.device.type == "cuda":
        torch.cuda.set_device(plan.device)
    for row in CHILD_JOBS[args.child](plan, args.key, args.work, deadline):
        print(ROW_PREFIX + json.dumps(dataclasses.asdict(row)), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the stages, write the JSON and the Markdown table, print the table."""
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    plan = DRY_PLAN if args.dry_run else FULL_PLAN
    if plan.device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU visible to torch (torch.cuda.is_available() is False); "
              "use --dry_run for the CPU check", file=sys.stderr)
        return 2
    started = time.monotonic()
    meta = machine_meta(plan)
    jobs = {name: js for name, js in plan_jobs(plan).items() if name in args.stages}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as work:
        results = run_stages(jobs, child_command(plan, Path(work)), args.budget,
                             args.out / "logs")
    meta |= {"budget_s": args.budget, "elapsed_s": round(time.monotonic() - started, 1)}
    report = make_report(meta, results)
    atomic_write_json(args.out / "gpu_check.json", report)
    table = markdown(report)
    atomic_write_text(args.out / "gpu_check.md", table)
    print(table)
    print(f"written: {args.out / 'gpu_check.json'}, {args.out / 'gpu_check.md'}")
    return 1 if any(r.status == "failed" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
