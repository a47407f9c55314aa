"""Atomic writes: complete new content or the old one, never a partial file or a temp left."""

import errno
from pathlib import Path

import pytest

from util.atomic import atomic_write_json, atomic_write_with
from util.errors import OutputError


def test_failed_write_keeps_previous_file_and_names_it(tmp_path):
    dest = atomic_write_json(tmp_path / "metrics.json", {"mae_hu": 12.5})
    before = dest.read_bytes()

    def half_then_disk_full(tmp: Path) -> None:
        tmp.write_bytes(b'{"mae_hu": 9')
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match=r"metrics\.json: writing failed .*No space left"):
        atomic_write_with(dest, half_then_disk_full)
    assert dest.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_interrupted_write_leaves_no_temp_and_no_destination(tmp_path):
    def interrupted(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write_with(tmp_path / "out.nii.gz", interrupted, suffix=".nii.gz")
    assert not list(tmp_path.iterdir())


def test_unwritable_folder_is_an_output_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OutputError, match=r"file/x\.json: cannot be written"):
        atomic_write_json(tmp_path / "file" / "x.json", {})
