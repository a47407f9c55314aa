"""Name -> object look-ups shared by the registries of this package."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from util.errors import ConfigError

V = TypeVar("V")


def lookup(table: Mapping[str, V], name: str, option: str) -> V:
    """Return ``table[name]``, or raise ConfigError naming ``option`` and every valid name.

    option: the command-line flag the name came from, e.g. ``"--netG"``.
    """
    try:
        return table[name]
    except KeyError:
        valid = ", ".join(sorted(table))
        raise ConfigError(f"unknown {option} '{name}'; valid names: {valid}") from None


def check_positive(**values: int) -> None:
    """Raise ConfigError naming every argument that is not a positive integer."""
    bad = [f"{key} must be a positive integer, got {value!r}"
           for key, value in values.items() if isinstance(value, bool) or value < 1]
    if bad:
        raise ConfigError("; ".join(bad))
