"""Models by name: ``--model X`` loads the class in ``models/X_model.py``.

Contract of a model module: a subclass of :class:`models.base_model.BaseModel` named ``<X>Model``
(case-insensitive, underscores dropped) that lists ``loss_names``, ``model_names``,
``visual_names`` and ``optimizers`` and implements ``modify_commandline_options`` (options, at the
parser), ``__init__`` (given the run's :class:`models.settings.RunSettings`), ``set_input``,
``forward`` and ``optimize_parameters``; the base class does setup, saving, loading and schedules.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from models.base_model import BaseModel
from models.settings import RunSettings
from util.registry import available_names, find_class


def available_models() -> list[str]:
    """Valid ``--model`` names."""
    return available_names("models", "model")


def find_model_using_name(name: str) -> type[BaseModel]:
    """The model class for ``--model name``; ConfigError listing the valid names otherwise."""
    # The abstract base is only an issubclass test here, never instantiated; mypy refuses
    # any abstract class where type[T] is expected.
    return find_class("models", "model", name, BaseModel)  # type: ignore[type-abstract]


def get_option_setter(name: str) -> Callable[[argparse.ArgumentParser, bool],
                                             argparse.ArgumentParser]:
    """The model's ``modify_commandline_options`` static method."""
    return find_model_using_name(name).modify_commandline_options


def create_model(settings: RunSettings) -> BaseModel:
    """The model ``settings.run.model`` names, built from ``settings`` (call ``setup()`` on it
    next)."""
    return find_model_using_name(settings.run.model)(settings)
