"""Frozen settings named like options: built from option values, written back as JSON.

A settings class is a frozen dataclass whose fields are named as the command-line options they
hold (``--ngf`` -> ``ngf``); a field whose option is spelt otherwise names it in its metadata
(``field(metadata={"option": "isTrain"})``). The option values come from a run's ``opt.json``
or from the parsed command line turned into the same JSON (``options/``), so both give the
same value:

- :func:`settings_from_options` picks a class's fields from a mapping of option values: other
  names are ignored (options of other parts, or that no longer exist), a missing one takes the
  field's default (a run recorded before the option existed), JSON lists become tuples and
  null stands for infinity where the field's default is a float;
- :func:`settings_to_json` writes the fields back under their option names, tuples as lists and
  infinity as null, as ``opt.json`` holds them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, TypeVar

from util.errors import ConfigError

_S = TypeVar("_S")


def option_name(field: dataclasses.Field) -> str:
    """The option a settings field holds: its metadata's ``option``, else the field's name."""
    return str(field.metadata.get("option", field.name))


def settings_from_options(cls: type[_S], options: Mapping[str, Any]) -> _S:
    """``cls`` (a dataclass of settings) from ``options`` ({option: value}); ConfigError naming
    every option it needs that ``options`` lacks."""
    values: dict[str, Any] = {}
    missing = []
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = option_name(field)
        if name not in options:
            required = (field.default is dataclasses.MISSING
                        and field.default_factory is dataclasses.MISSING)
            missing += [f"--{name}"] if required else []
            continue
        value = options[name]
        if isinstance(value, list):
            value = tuple(value)
        elif value is None and isinstance(field.default, float):
            value = math.inf
        values[field.name] = value
    if missing:
        raise ConfigError(f"{cls.__name__} needs the options {', '.join(missing)}, which are "
                          f"not there")
    return cls(**values)


def settings_to_json(settings: Any) -> dict[str, Any]:
    """{option: value} of the fields of the dataclass ``settings``: tuples as lists, infinity
    as null (``opt.json``'s spelling)."""
    return {option_name(f): _json_value(getattr(settings, f.name))
            for f in dataclasses.fields(settings)}


def _json_value(value: Any) -> Any:
    """``value`` as JSON holds it: tuples as lists, infinite floats as null."""
    if isinstance(value, tuple | list):
        return [_json_value(v) for v in value]
    if isinstance(value, float) and value == math.inf:
        return None
    return value
