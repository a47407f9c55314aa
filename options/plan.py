"""The plan of a training run: every option's value and where it came from.

A training's options come from five places; the first that has a value wins:

- ``command line``: a flag given explicitly;
- ``run folder``: with ``--continue_train``, the value the run recorded in its ``opt.json``
  (a resumed run keeps training what it started, whatever the recipe or the machine says now);
- ``planned``: a rule of :mod:`options.plan_rules` applied to the training data (the headers of
  ``<dataroot>/trainA``, :mod:`data.survey`) or to the machine (:mod:`util.machine`), with its
  reason;
- ``recipe``: the recipe named by ``--recipe`` (:mod:`options.recipes`): ``recommended`` (the
  default) or ``pix2pix`` (none: the classic defaults);
- ``default``: the option's own default (pix2pix's, as the model and dataset set it).

:class:`Plan` is built once, by :class:`options.train_options.TrainOptions` at the entry point,
and written as ``plan.json`` beside ``opt.json``; its values are those of ``opt``, so ``test.py``
and ``scripts/predict.py`` read them from ``opt.json`` as before.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from data.survey import TrainingDataFacts
from options.plan_rules import PLANNED_NAMES, Decision
from options.recipes import CT_RECIPE, SLICE_RECIPE
from util.machine import MachineFacts

#: Where a setting's value came from, in plan.json.
SOURCES = ("default", "recipe", "planned", "run folder", "command line")

#: Options a resumed run (``--continue_train``) takes from its opt.json unless given: those
#: the recipes and the plan set.
RUN_NAMES = tuple(sorted({*PLANNED_NAMES, *CT_RECIPE, *SLICE_RECIPE}))


@dataclass(frozen=True)
class Setting:
    """One option of a run: its ``value``, its ``source`` (one of :data:`SOURCES`) and, for a
    planned or adopted one, the ``reason``."""

    value: Any
    source: str
    reason: str = ""


@dataclass(frozen=True)
class Plan:
    """Every option of a training run with where it came from, and the facts it was planned on.

    ``recipe``: the ``--recipe`` used; ``settings``: (option, setting) pairs sorted by option;
    ``data``: the training split surveyed (None: none was, e.g. no data there yet or a resumed
    run); ``machine``: the machine surveyed; ``notes``: what the plan could not do and why.
    """

    recipe: str
    settings: tuple[tuple[str, Setting], ...]
    data: TrainingDataFacts | None = None
    machine: MachineFacts | None = None
    notes: tuple[str, ...] = field(default=())

    def setting(self, name: str) -> Setting:
        """The setting of option ``name``; KeyError naming it when the run has no such option."""
        for key, setting in self.settings:
            if key == name:
                return setting
        raise KeyError(f"the plan has no option '{name}'")

    def value(self, name: str) -> Any:
        """The value of option ``name``."""
        return self.setting(name).value

    def by_source(self, source: str) -> dict[str, Setting]:
        """{option: setting} of the settings that came from ``source``."""
        return {k: s for k, s in self.settings if s.source == source}

    def to_json(self) -> dict[str, Any]:
        """The plan as a JSON object (plan.json): recipe, settings {option: {value, source,
        reason}}, data, machine, notes."""
        return {"recipe": self.recipe,
                "settings": {k: {"value": json_value(s.value), "source": s.source,
                                 **({"reason": s.reason} if s.reason else {})}
                             for k, s in self.settings},
                "data": None if self.data is None else json_value(asdict(self.data)),
                "machine": None if self.machine is None else asdict(self.machine),
                "notes": list(self.notes)}

    def summary(self) -> str:
        """One line per planned or adopted setting: ``--name value (source: reason)``."""
        lines = [f"plan (--recipe {self.recipe}):"]
        lines += [f"  --{k} {s.value} ({s.source}: {s.reason})" for k, s in self.settings
                  if s.source in ("planned", "run folder")]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def json_value(value: Any) -> Any:
    """``value`` with what JSON lacks replaced: infinity -> null, paths -> strings, tuples ->
    lists (recursively)."""
    if isinstance(value, float) and math.isinf(value):
        return None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    return value


def adopt_run_settings(values: Mapping[str, Any], saved: Mapping[str, Any],
                       explicit: frozenset[str], names: Iterable[str],
                       defaults: Mapping[str, Any], source: Path) -> dict[str, Decision]:
    """{option: decision} taking each of ``names`` not given on the command line from a resumed
    run's ``saved`` options (its opt.json at ``source``); an option the run did not record
    (it predates it) takes its classic default, as the run then had."""
    out: dict[str, Decision] = {}
    for name in names:
        if name in explicit or name not in values:
            continue
        if name in saved:
            value = saved[name]
            if isinstance(values[name], list) and isinstance(value, list):
                value = list(value)
            out[name] = Decision(value, f"recorded by the run in {source}")
        elif name in defaults:
            out[name] = Decision(defaults[name], f"not recorded in {source} (the run predates "
                                                 f"it): its default then")
    return out


def settings_of(values: Mapping[str, Any], explicit: frozenset[str],
                planned: Mapping[str, Decision], adopted: Mapping[str, Decision],
                recipe: Mapping[str, Any]) -> tuple[tuple[str, Setting], ...]:
    """(option, setting) of every option in ``values``, sorted, with its source: the command
    line, the run folder (``adopted``), the plan, the recipe, else the default."""
    out = []
    for name in sorted(values):
        value = values[name]
        if name in explicit:
            setting = Setting(value, "command line")
        elif name in adopted:
            setting = Setting(value, "run folder", adopted[name].reason)
        elif name in planned:
            setting = Setting(value, "planned", planned[name].reason)
        elif name in recipe:
            setting = Setting(value, "recipe")
        else:
            setting = Setting(value, "default")
        out.append((name, setting))
    return tuple(out)
