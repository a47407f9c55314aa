"""Atomic file writes: a temp file in the destination folder, synced, then ``os.replace``.

A reader (or a crash, or a full disk) never sees a half-written file: the destination either
keeps its previous content or holds the complete new one. A failed write raises
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


def sync_file(path: Path) -> None:
    """Flush ``path``'s bytes to the disk, so a power cut after the rename finds them there."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def new_temp_file(dest: Path, suffix: str = "") -> Path:
    """Create an empty temp file beside ``dest``, named ``.<dest name>.<8 chars>.tmp<suffix>``
    (the folder is created if needed); OutputError naming ``dest`` when that fails."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{suffix}",
                                        dir=dest.parent)
    except OSError as exc:
        raise OutputError(f"{dest}: cannot be written ({exc})") from exc
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
