"""Optional remote dashboards of a training run: a visdom client and a wandb run.

Both packages are imported only when an option asks for them; a missing package or an absent
visdom server is a :class:`ConfigError` that names the option and how to do without it.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

from util.errors import ConfigError

logger = logging.getLogger(__name__)


def import_optional(module: str, wanted_by: str, instead: str) -> ModuleType:
    """Import an optional package, or say which option needs it and how to do without it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"{wanted_by} needs the {module} package: pip install {module}, "
                          f"or {instead}") from exc


def connect_visdom(display_id: int, server: str, port: int, env: str) -> Any:
    """A visdom client connected to ``server:port``; :class:`ConfigError` if it cannot be."""
    visdom = import_optional("visdom", f"--display_id {display_id}", "use --display_id 0")
    client = visdom.Visdom(server=server, port=port, env=env)
    if not client.check_connection():
        raise ConfigError(f"--display_id {display_id}: no visdom server answers at {server}:"
                          f"{port}; start one with `python -m visdom.server`, or use "
                          f"--display_id 0")
    logger.info("sending pictures and losses to visdom at %s:%d, environment %r", server, port,
                env)
    return client


def start_wandb(project: str, name: str, run_dir: Path) -> tuple[ModuleType, Any]:
    """The wandb module and a run (the current one, or a new one in ``project``)."""
    wandb = import_optional("wandb", "--use_wandb", "leave out --use_wandb")
    run_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.run if wandb.run is not None else wandb.init(project=project, name=name,
                                                             dir=str(run_dir))
    logger.info("logging to wandb project %r as %r", project, name)
    return wandb, run
