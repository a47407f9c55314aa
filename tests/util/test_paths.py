"""util.paths: what a path is when a folder was expected."""

from __future__ import annotations

import os
from pathlib import Path

from util.paths import folder_problem, is_hidden_file


def test_folder_problem_names_each_kind_of_entry(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "to_dir").symlink_to(tmp_path / "dir")
    (tmp_path / "to_file").symlink_to(tmp_path / "file")
    (tmp_path / "broken").symlink_to(tmp_path / "nowhere")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    os.mkfifo(tmp_path / "fifo")
    assert folder_problem(tmp_path / "dir") is None
    assert folder_problem(tmp_path / "to_dir") is None
    assert folder_problem(tmp_path / "missing") == "does not exist"
    assert folder_problem(tmp_path / "file" / "below") == "does not exist"
    assert folder_problem(tmp_path / "file") == "is a file, not a folder"
    assert folder_problem(tmp_path / "to_file") == "is a file, not a folder"
    assert folder_problem(tmp_path / "broken") == \
        f"is a broken symbolic link (to {tmp_path / 'nowhere'})"
    assert folder_problem(tmp_path / "loop") == "is a symbolic link loop"
    assert folder_problem(tmp_path / "fifo") == "is a named pipe, not a folder"


def test_hidden_file_is_a_plain_dot_file_only(tmp_path: Path) -> None:
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    (tmp_path / ".hidden_dir").mkdir()
    (tmp_path / ".link").symlink_to(tmp_path / ".DS_Store")
    (tmp_path / "visible").write_text("x")
    assert is_hidden_file(tmp_path / ".DS_Store")
    assert not is_hidden_file(tmp_path / ".hidden_dir")
    assert not is_hidden_file(tmp_path / ".link")
    assert not is_hidden_file(tmp_path / "visible")
    assert not is_hidden_file(tmp_path / ".missing")
