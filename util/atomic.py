"""Atomic file writes: a temp file in the destination folder, then ``os.replace``.

A reader (or a crash) never sees a half-written file: the destination either keeps its previous
content or holds the complete new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(dest: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside ``dest``; on success move it onto ``dest``, on error delete it.

    ``suffix`` is appended to the temp name, for writers that pick the format from the extension
    (e.g. ``.nii.gz``).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{suffix}",
                                    dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_with(dest: str | os.PathLike[str], write: Callable[[Path], Any],
                      suffix: str = "") -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``dest`` atomically; return ``dest``."""
    with atomic_path(dest, suffix=suffix) as tmp:
        write(tmp)
    return Path(dest)


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``dest`` atomically; return ``dest``."""
    return atomic_write_with(dest, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(dest: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``dest`` atomically; return ``dest``."""
    return atomic_write_text(dest, json.dumps(obj, indent=2, sort_keys=True) + "\n")
