"""Atomic file writes: a temp file in the destination folder, synced, then ``os.replace``.

A reader (or a crash, or a full disk) never sees a half-written file: the destination either
keeps its previous content or holds the complete new one. New files get the mode any file the
user creates gets (0666 less the umask), not the temp file's 0600. A failed write raises
:class:`util.errors.OutputError` naming the destination and leaves no temp file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from util.errors import OutputError

#: Mode of a new file before the umask, as ``open()`` and ``touch`` create one.
NEW_FILE_MODE = 0o666


def current_umask() -> int:
    """The process's umask, read from ``/proc/self/status`` where Linux shows it (without
    changing it), else by setting it and putting it back at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _blocking_file(folder: Path) -> Path | None:
    """The nearest existing ancestor of ``folder`` (or ``folder`` itself) when it is not a
    folder, i.e. the file that stops ``folder`` from being created; else None."""
    for path in (folder, *folder.parents):
        if path.exists():
            return None if path.is_dir() else path
    return None


def make_dirs(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` and its parents if missing (mode 0777 less the umask); return it.

    Raises :class:`OutputError` naming ``folder`` and the problem: the file in the way, or the
    system's reason (read-only file system, permission denied).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = _blocking_file(folder)
        where = f"{exc.filename}: " if exc.filename and Path(exc.filename) != folder else ""
        reason = (f": {blocker} is a file, not a folder" if blocker is not None
                  else f" ({where}{exc.strerror or exc})")
        raise OutputError(f"{folder}: cannot create the folder{reason}") from exc
    return folder


def ensure_writable_dir(folder: str | os.PathLike[str]) -> Path:
    """:func:`make_dirs`, then check that a file can be created in ``folder`` (a probe file,
    removed at once), so that a command fails before its work rather than at its first write.
    Raises :class:`OutputError` naming ``folder``; returns it."""
    folder = make_dirs(folder)
    try:
        fd, probe = tempfile.mkstemp(prefix=".write_probe.", dir=folder)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write in this folder ({exc.strerror or exc})"
                          ) from exc
    os.close(fd)
    Path(probe).unlink(missing_ok=True)
    return folder


def sync_file(path: Path) -> None:
    """Flush ``path``'s bytes to the disk, so a power cut after the rename finds them there."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def new_temp_file(dest: Path, suffix: str = "") -> Path:
    """Create an empty temp file beside ``dest``, named ``.<dest name>.<8 chars>.tmp<suffix>``,
    with the mode a new file of the user gets (0666 less the umask); the folder is created if
    needed. OutputError naming ``dest`` when that fails."""
    try:
        make_dirs(dest.parent)
    except OutputError as exc:
        raise OutputError(f"{dest}: cannot be written ({exc})") from exc
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{suffix}",
                                        dir=dest.parent)
    except OSError as exc:
        raise OutputError(f"{dest}: cannot be written ({exc})") from exc
    try:
        os.fchmod(fd, NEW_FILE_MODE & ~current_umask())  # mkstemp makes 0600 whatever the umask
    finally:
        os.close(fd)
    return Path(tmp_name)


@contextmanager
def atomic_path(dest: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside ``dest``; on success sync it and move it onto ``dest``, on error
    delete it (an OSError, e.g. a full disk, becomes an OutputError naming ``dest``).

    ``suffix`` is appended to the temp name, for writers that pick the format from the extension
    (e.g. ``.nii.gz``).
    """
    dest = Path(dest)
    tmp = new_temp_file(dest, suffix)
    try:
        yield tmp
        sync_file(tmp)
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OutputError):
            raise
        raise OutputError(f"{dest}: writing failed ({exc}); the previous {dest.name}, if any, "
                          f"is unchanged") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_with(dest: str | os.PathLike[str], write: Callable[[Path], Any],
                      suffix: str = "") -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``dest`` atomically; return ``dest``."""
    with atomic_path(dest, suffix=suffix) as tmp:
        write(tmp)
    return Path(dest)


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``dest`` atomically; return ``dest``."""
    return atomic_write_with(dest, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``dest`` atomically; return ``dest``."""
    return atomic_write_bytes(dest, text.encode("utf-8"))


def atomic_write_json(dest: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``dest`` atomically; return ``dest``."""
    return atomic_write_text(dest, json.dumps(obj, indent=2, sort_keys=True) + "\n")
