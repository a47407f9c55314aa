"""Name-based registries: ``--model X`` -> ``models/X_model.py``, ``--dataset_mode Y`` ->
``data/Y_dataset.py``.

A module ``<package>/<name>_<kind>.py`` must define exactly one subclass of the base class whose
lower-cased name, without underscores, is ``<name><kind>`` (``pix2pix_model.py`` ->
``Pix2PixModel``; ``nifti_aligned_dataset.py`` -> ``NiftiAlignedDataset``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TypeVar

from util.errors import ConfigError

T = TypeVar("T")


def available_names(package: str, kind: str) -> list[str]:
    """Sorted names ``X`` for which ``<package>/X_<kind>.py`` exists, except the abstract
    ``base_<kind>.py`` (no import needed)."""
    init_file = importlib.import_module(package).__file__
    if init_file is None:
        raise ConfigError(f"package '{package}' has no __init__.py, so it has no folder of "
                          f"*_{kind}.py modules to list")
    folder = Path(init_file).parent
    suffix = f"_{kind}.py"
    names = (p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}"))
    return sorted(n for n in names if n != "base")


def find_class(package: str, kind: str, name: str, base: type[T]) -> type[T]:
    """Import ``<package>.<name>_<kind>`` and return its ``<Name><Kind>`` subclass of ``base``.

    Raises ConfigError listing the valid names when ``name`` is unknown.
    """
    valid = available_names(package, kind)
    if name not in valid:
        raise ConfigError(f"unknown {kind} '{name}'; valid names: {', '.join(valid)}")
    module = importlib.import_module(f"{package}.{name}_{kind}")
    wanted = f"{name}{kind}".replace("_", "").lower()
    for obj in vars(module).values():
        if isinstance(obj, type) and issubclass(obj, base) and obj.__name__.lower() == wanted:
            return obj
    raise ConfigError(f"{module.__file__}: defines no subclass of {base.__name__} named like "
                      f"'{wanted}' (case-insensitive)")
