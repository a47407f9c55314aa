"""Files that replace their predecessors together: a checkpoint set (weights of every network,
metadata, training state) is either the previous set or the new one, never a mix.

A set is written in three steps, each safe to interrupt (SIGKILL, power cut, full disk):

1. *stage*: every member is written to a temp file beside its destination and synced; the
   destinations are untouched. An interruption leaves stale temp files (removed by
   :func:`remove_stale_temp_files`) and the previous set.
2. *journal*: ``.<label>.commit.json``, listing {destination name: temp name}, is written
   atomically. From the moment it exists the new set is complete on disk.
3. *commit*: each temp file is renamed onto its destination, then the journal is deleted.

:func:`recover` finishes step 3 for every journal it finds (renaming the temp files that are still
there), so after any interruption a folder holds one complete set per label. Call it before
reading a set.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from util.atomic import atomic_write_json, new_temp_file, sync_file
from util.errors import OutputError

logger = logging.getLogger(__name__)

JOURNAL_SUFFIX = ".commit.json"
#: Temp files made by :func:`util.atomic.new_temp_file`: ``.<dest name>.<8 chars>.tmp[.ext]``.
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9.]+)?$")
#: Folders made by :func:`data.dicom_write.write_series` beside a series folder: the series
#: being written (``.<dest name>.<8 chars>.tmp``) and the replaced one while it is removed
#: (``.<dest name>.<8 chars>.old``).
_TEMP_FOLDER = re.compile(r"^\..+\.[a-z0-9_]{8}\.(tmp|old)$")


def journal_path(folder: Path, label: str) -> Path:
    """``<folder>/.<label>.commit.json``: the list of staged files of set ``label``."""
    return folder / f".{label}{JOURNAL_SUFFIX}"


class FileSet:
    """Members of one set, staged in ``folder`` (see the module docstring); build it with
    :func:`file_set`."""

    def __init__(self, folder: Path, label: str) -> None:
        self.folder = folder
        self.label = label
        self.staged: dict[str, Path] = {}

    def stage_with(self, name: str, write: Callable[[Path], Any], suffix: str = "") -> Path:
        """Call ``write(tmp)`` for member ``name`` (a file name in the folder) and sync it;
        returns the destination path. ``suffix`` ends the temp name (e.g. ``.nii.gz``)."""
        dest = self.folder / name
        if name in self.staged:
            raise ValueError(f"{dest}: staged twice in set {self.label!r}")
        tmp = new_temp_file(dest, suffix)
        self.staged[name] = tmp
        try:
            write(tmp)
            sync_file(tmp)
        except OSError as exc:
            raise OutputError(f"{dest}: writing failed ({exc}); the previous "
                              f"'{self.label}' files, if any, are unchanged") from exc
        return dest

    def stage_bytes(self, name: str, data: bytes) -> Path:
        """Stage member ``name`` with the content ``data``; returns its destination path."""
        return self.stage_with(name, lambda tmp: tmp.write_bytes(data))

    def stage_json(self, name: str, obj: Any) -> Path:
        """Stage member ``name`` as indented JSON; returns its destination path."""
        text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
        return self.stage_bytes(name, text.encode("utf-8"))

    def commit(self) -> list[Path]:
        """Journal, then move every staged file onto its destination; returns the destinations."""
        journal = journal_path(self.folder, self.label)
        try:
            atomic_write_json(journal, {name: tmp.name for name, tmp in self.staged.items()})
        except OutputError as exc:
            self.discard()
            raise OutputError(f"{self.folder}: the '{self.label}' set could not be saved "
                              f"({exc.__cause__ or exc}); the previous '{self.label}' files, "
                              f"if any, are unchanged") from exc
        try:
            done = _replay(self.folder, journal)
        except OSError as exc:
            raise OutputError(f"{journal}: the '{self.label}' set could not be moved into place "
                              f"({exc}); it is completed at the next start") from exc
        return done

    def discard(self) -> None:
        """Delete the staged temp files (the destinations were never touched)."""
        for tmp in self.staged.values():
            tmp.unlink(missing_ok=True)
        self.staged.clear()


@contextmanager
def file_set(folder: str | os.PathLike[str], label: str) -> Iterator[FileSet]:
    """Stage a set's members inside the ``with`` block; on success commit them together, on
    any error delete what was staged and leave the previous set as it was."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot be created ({exc})") from exc
    staged = FileSet(folder, label)
    try:
        yield staged
    except BaseException:
        staged.discard()
        raise
    staged.commit()


def _replay(folder: Path, journal: Path) -> list[Path]:
    """Rename the temp files a journal lists that are still there, then delete the journal;
    returns the destinations. Replaying twice, or in two processes at once (ranks of a
    torchrun job loading a checkpoint), is harmless: what is already moved is skipped."""
    try:
        entries = json.loads(journal.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []  # finished by another process
    except ValueError as exc:  # it is written atomically, so this means a foreign file
        raise OSError(f"{journal}: not a valid journal ({exc})") from exc
    done = []
    for name, tmp_name in entries.items():
        with contextlib.suppress(FileNotFoundError):  # moved already
            os.replace(folder / tmp_name, folder / name)
        done.append(folder / name)
    _sync_folder(folder)
    journal.unlink(missing_ok=True)
    return done


def _sync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable (where the platform allows a folder's fsync)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def committed_path(folder: str | os.PathLike[str], label: str, name: str) -> Path:
    """Where member ``name`` of set ``label`` in ``folder`` is to be read without writing: its
    staged temp file while an interrupted commit's journal lists it, else ``folder/name``."""
    folder = Path(folder)
    try:
        staged = json.loads(journal_path(folder, label).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return folder / name
    tmp = folder / staged[name] if isinstance(staged, dict) and name in staged else None
    return tmp if tmp is not None and tmp.is_file() else folder / name


def recover(folder: str | os.PathLike[str]) -> list[str]:
    """Finish every set whose journal is in ``folder`` (an interrupted commit); returns their
    labels. Raises OutputError naming the journal when a rename fails."""
    folder = Path(folder)
    labels = []
    for journal in sorted(folder.glob(f".*{JOURNAL_SUFFIX}")):
        label = journal.name[1:].removesuffix(JOURNAL_SUFFIX)
        try:
            _replay(folder, journal)
        except OSError as exc:
            raise OutputError(f"{journal}: cannot complete the interrupted save of "
                              f"'{label}' ({exc})") from exc
        logger.warning("completed the interrupted save of the '%s' checkpoint set in %s", label,
                       folder)
        labels.append(label)
    return labels


def stale_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Temp files (:func:`util.atomic.new_temp_file`) and temp series folders
    (:data:`_TEMP_FOLDER`) of this tool's own naming in ``folder``, not listed by any journal:
    what an interrupted write left behind."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    listed: set[str] = set()
    for journal in folder.glob(f".*{JOURNAL_SUFFIX}"):
        try:
            listed.update(json.loads(journal.read_text(encoding="utf-8")).values())
        except (OSError, ValueError):
            continue
    return sorted(p for p in folder.iterdir() if p.name not in listed and not p.is_symlink()
                  and ((p.is_file() and _TEMP_NAME.match(p.name) is not None)
                       or (p.is_dir() and _TEMP_FOLDER.match(p.name) is not None)))


def interrupted_writes(dest: str | os.PathLike[str]) -> list[Path]:
    """What an interrupted write of ``dest`` (a file or a series folder) left beside it: the
    temp files (``.<dest name>.<8 chars>.tmp[.ext]``) and temp series folders (``.tmp``,
    ``.old``) of this tool's naming made for that very name, and nothing else of the folder."""
    dest = Path(dest)
    mine = re.compile(rf"^\.{re.escape(dest.name)}\.[a-z0-9_]{{8}}\.(tmp(\.[A-Za-z0-9.]+)?|old)$")
    return [p for p in stale_temp_files(dest.parent) if mine.match(p.name) is not None]


def _remove(paths: list[Path], where: str) -> list[Path]:
    """Delete ``paths`` (files, or folders with what they hold) and log them; returns them.
    OutputError naming the first that cannot be deleted."""
    for path in paths:
        try:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        except OSError as exc:
            raise OutputError(f"{path}: cannot remove this temporary file of an interrupted "
                              f"write ({exc.strerror or exc})") from exc
    if paths:
        logger.warning("removed %d temporary files or folders left by an interrupted write %s: "
                       "%s%s", len(paths), where, ", ".join(p.name for p in paths[:5]),
                       " ..." if len(paths) > 5 else "")
    return paths


def remove_stale_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete :func:`stale_temp_files` of ``folder`` and say so in the log; returns them."""
    return _remove(stale_temp_files(folder), f"in {folder}")


def remove_interrupted_writes(dests: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Delete :func:`interrupted_writes` of each of ``dests`` (the outputs a command is about
    to write, e.g. in a user's folder, where nothing else is touched) and say so in the log;
    returns them."""
    removed: list[Path] = []
    for dest in dests:
        removed += _remove(interrupted_writes(dest), f"of {dest}")
    return removed
