"""Command-line edge: project errors become one logged line and exit status 1."""

import logging

import pytest

from util.cli import printable, run_cli
from util.errors import DataError


def test_project_error_is_logged_with_undecodable_name_escaped(caplog):
    name = b"pat\xffient.nii.gz".decode("utf-8", "surrogateescape")

    def fail() -> int:
        raise DataError(f"{name}: not a NIfTI file")

    with caplog.at_level(logging.ERROR):
        assert run_cli(fail) == 1
    assert caplog.messages == ["pat\\udcffient.nii.gz: not a NIfTI file"]
    assert printable("plain") == "plain"


def test_success_status_passes_through_and_other_errors_propagate():
    assert run_cli(lambda: 0) == 0

    def bug() -> int:
        raise KeyError("a programming error keeps its traceback")

    with pytest.raises(KeyError):
        run_cli(bug)
