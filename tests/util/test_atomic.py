"""Atomic writes: complete new content or the old one, never a partial file or a temp left."""

import errno
import os
import stat
import tempfile
from pathlib import Path

import pytest

from util.atomic import atomic_write_json, atomic_write_with, ensure_writable_dir, make_dirs
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


@pytest.mark.parametrize(("umask", "mode"), [(0o002, 0o664), (0o022, 0o644), (0o077, 0o600)])
def test_written_files_follow_the_umask_like_any_new_file(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = atomic_write_json(tmp_path / "metrics.json", {"mae_hu": 1.0})
        (tmp_path / "touched").touch()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "touched").stat().st_mode) == mode


def test_a_folder_under_a_file_is_named_with_the_file_in_the_way(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OutputError, match=r"file/sub: cannot create the folder: .*file is a "
                                          r"file, not a folder"):
        make_dirs(tmp_path / "file" / "sub")
    with pytest.raises(OutputError, match=r"file: cannot create the folder"):
        make_dirs(tmp_path / "file")


def test_a_read_only_folder_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    def read_only(*_args, **_kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(OutputError, match=r"out: cannot write in this folder \(.*Read-only"):
        ensure_writable_dir(tmp_path / "out")
    monkeypatch.setattr(os, "mkdir", read_only)
    with pytest.raises(OutputError, match=r"new/deeper: cannot create the folder \(.*Read-only"):
        ensure_writable_dir(tmp_path / "new" / "deeper")
