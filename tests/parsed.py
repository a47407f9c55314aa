"""Run settings as the entry points build them: the command line parsed, then turned into the
typed value (:func:`options.base_options.run_settings`)."""

from __future__ import annotations

from models.settings import RunSettings
from options.base_options import run_settings
from options.test_options import TestOptions
from options.train_options import TrainOptions


def parsed_settings(*argv: str, train: bool = True, record: bool = False) -> RunSettings:
    """The settings of ``train.py argv`` (``test.py argv`` when not ``train``); ``record``
    writes the run's ``opt.json`` as the entry point does once its checks pass."""
    options = TrainOptions() if train else TestOptions()
    opt = options.parse(list(argv))
    if record:
        options.record(opt)
    return run_settings(opt)
