"""Tiny trained runs and script loaders shared by the tests of test.py and scripts/."""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from models import create_model
from options.base_options import options_to_json, run_settings
from options.train_options import TrainOptions
from util.atomic import atomic_write_json

REPO = Path(__file__).resolve().parents[1]


def load_script(path: str, module_name: str) -> ModuleType:
    """The file ``REPO/path`` as a module called ``module_name`` (registered in sys.modules,
    where its dataclasses look their module up)."""
    spec = importlib.util.spec_from_file_location(module_name, REPO / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def tiny_run(checkpoints: Path, *extra: str, name: str = "run") -> Path:
    """An untrained unet_64 (ngf 8, instance norm, dropout unless ``--no_dropout`` is in
    ``extra``) saved as ``checkpoints/<name>/latest_net_G.pth`` with its ``opt.json``;
    returns ``checkpoints``."""
    opt = TrainOptions().parse(["--dataroot", str(checkpoints), "--checkpoints_dir",
                                str(checkpoints), "--name", name, "--netG", "unet_64", "--ngf",
                                "8", "--norm", "instance", "--axial_slice", "--gpu_ids", "-1",
                                "--recipe", "pix2pix", *extra])
    create_model(run_settings(opt)).save_networks("latest")
    atomic_write_json(checkpoints / name / "opt.json", options_to_json(opt))
    return checkpoints


def dropout_and_plain_runs(checkpoints: Path) -> Path:
    """``checkpoints/run`` (with dropout) and ``checkpoints/plain`` (``--no_dropout``);
    returns ``checkpoints``."""
    tiny_run(checkpoints)
    return tiny_run(checkpoints, "--no_dropout", name="plain")


def run_command(command: str, cwd: Path, expect: int = 0) -> subprocess.CompletedProcess:
    """Run a ``python <repo script> ...`` command line in ``cwd``; fail, with its output,
    unless it exits with ``expect``."""
    args = shlex.split(command)
    args[0:2] = [sys.executable, str(REPO / args[1])]
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == expect, f"{command}\n{proc.stdout}\n{proc.stderr}"
    return proc
