"""Files committed as a set: the previous set or the new one after an interruption anywhere."""

import errno
import json
import os
from pathlib import Path

import pytest

from util.errors import OutputError
from util.file_set import (
    committed_path,
    file_set,
    interrupted_writes,
    journal_path,
    recover,
    remove_interrupted_writes,
    remove_stale_temp_files,
    stale_temp_files,
)


def write_set(folder: Path, version: str) -> None:
    with file_set(folder, "latest") as stage:
        stage.stage_bytes("latest_a.bin", f"a{version}".encode())
        stage.stage_json("latest_meta.json", {"version": version})


def contents(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def test_a_set_replaces_its_predecessor_whole_and_leaves_nothing_else(tmp_path):
    write_set(tmp_path, "1")
    write_set(tmp_path, "2")
    assert contents(tmp_path) == {"latest_a.bin": "a2",
                                  "latest_meta.json": '{\n  "version": "2"\n}\n'}


def test_an_error_while_staging_keeps_the_previous_set(tmp_path):
    write_set(tmp_path, "1")
    before = contents(tmp_path)

    def disk_full(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    def save() -> None:
        with file_set(tmp_path, "latest") as stage:
            stage.stage_bytes("latest_a.bin", b"a2")
            stage.stage_with("latest_meta.json", disk_full)

    with pytest.raises(OutputError, match=r"latest_meta\.json: writing failed .*previous "
                                          r"'latest' files, if any, are unchanged"):
        save()
    assert contents(tmp_path) == before


def test_recover_finishes_a_commit_interrupted_between_two_renames(tmp_path):
    write_set(tmp_path, "1")
    real_replace = os.replace
    calls = []

    def crash_on_second_member(src, dst):
        calls.append(Path(dst).name)
        if len(calls) == 3:  # the journal, the first member, then the crash
            raise KeyboardInterrupt
        real_replace(src, dst)

    os.replace = crash_on_second_member
    try:
        with pytest.raises(KeyboardInterrupt):
            write_set(tmp_path, "2")
    finally:
        os.replace = real_replace
    assert journal_path(tmp_path, "latest").is_file()
    assert (tmp_path / "latest_a.bin").read_text() == "a2"  # a mix, until recovered
    assert json.loads((tmp_path / "latest_meta.json").read_text())["version"] == "1"
    assert stale_temp_files(tmp_path) == []  # listed by the journal: not stale
    assert recover(tmp_path) == ["latest"]
    assert contents(tmp_path) == {"latest_a.bin": "a2",
                                  "latest_meta.json": '{\n  "version": "2"\n}\n'}
    assert recover(tmp_path) == []  # nothing left to do


def test_stale_temp_files_are_only_those_of_this_tools_naming(tmp_path):
    write_set(tmp_path, "1")
    stale = [tmp_path / ".latest_a.bin.k2j_9xq1.tmp", tmp_path / ".vol.nii.gz.abcdefgh.tmp.nii.gz"]
    kept = [tmp_path / ".hidden", tmp_path / "notes.tmp", tmp_path / ".x.short.tmp"]
    for path in stale + kept:
        path.write_bytes(b"x")
    assert stale_temp_files(tmp_path) == sorted(stale)
    assert remove_stale_temp_files(tmp_path) == sorted(stale)
    assert all(p.exists() for p in kept)
    assert not any(p.exists() for p in stale)


def test_committed_path_reads_a_journalled_member_without_writing(tmp_path):
    write_set(tmp_path, "1")
    assert committed_path(tmp_path, "latest", "latest_a.bin") == tmp_path / "latest_a.bin"
    staged = tmp_path / ".latest_a.bin.abcd1234.tmp"
    staged.write_text("a2")
    journal_path(tmp_path, "latest").write_text(json.dumps({"latest_a.bin": staged.name}))
    before = contents(tmp_path)
    assert committed_path(tmp_path, "latest", "latest_a.bin") == staged
    assert committed_path(tmp_path, "latest", "latest_meta.json") == tmp_path / "latest_meta.json"
    assert committed_path(tmp_path, "best", "latest_a.bin") == tmp_path / "latest_a.bin"
    assert contents(tmp_path) == before


def test_temp_series_folders_are_stale_too(tmp_path):
    series = tmp_path / ".PT1.k2j_9xq1.tmp"
    series.mkdir()
    (series / "CT_0001.dcm").write_bytes(b"slice")
    replaced = tmp_path / ".PT1.abcdefgh.old"
    (replaced / "PT1").mkdir(parents=True)
    kept = [tmp_path / ".PT1.notes", tmp_path / "PT1.k2j_9xq1.tmp"]
    for path in kept:
        path.mkdir()
    assert remove_stale_temp_files(tmp_path) == sorted([series, replaced])
    assert sorted(tmp_path.iterdir()) == sorted(kept)


def test_interrupted_writes_are_those_of_the_named_output_alone(tmp_path, caplog):
    dest = tmp_path / "p0.nii.gz"
    own = [tmp_path / ".p0.nii.gz.abcdefgh.tmp.nii.gz", tmp_path / ".p0.nii.gz.k2j_9xq1.tmp"]
    others = [tmp_path / ".p0_std.nii.gz.abcdefgh.tmp.nii.gz", tmp_path / ".p0.nii.gz.x.tmp",
              tmp_path / ".other.abcdefgh.tmp"]
    for path in own + others:
        path.write_bytes(b"x")
    assert interrupted_writes(dest) == sorted(own)
    assert remove_interrupted_writes([dest, tmp_path / "absent" / "p1.nii.gz"]) == sorted(own)
    assert sorted(tmp_path.iterdir()) == sorted(others)
    assert f"removed 2 temporary files or folders left by an interrupted write of {dest}" \
        in caplog.text
