"""One training at a time in a run folder: an advisory lock held for the whole training.

The lock is ``fcntl.flock`` on ``<run_dir>/.train.lock``. The operating system releases it when
the holding process ends in any way (SIGKILL included), so a killed run never leaves a lock that
blocks the next one. The file's content (pid, host, start time) is informational: it names the
running training in the refusal of a second one.

The lock file is removed when the training ends or is refused (while the lock is still held), and
a folder the lock itself created is removed again when it is empty: a refused command leaves the
run folder as it was. Only a SIGKILLed training leaves ``.train.lock`` behind, unlocked; the next
training takes it. Readers (``test.py``, ``scripts/predict.py``) never take the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from util.errors import ConfigError, OutputError

logger = logging.getLogger(__name__)

LOCK_NAME = ".train.lock"


def lock_path(run_dir: Path) -> Path:
    """``<run_dir>/.train.lock``."""
    return run_dir / LOCK_NAME


def _holder(fd: int) -> str:
    """What the holder of the lock wrote in the open lock file ``fd`` (one line)."""
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return " ".join(text.split()) or "(it has not written its pid, host and start time yet)"


def _open_locked(path: Path) -> int:
    """Open and lock ``path`` (created if missing); ConfigError naming the holder when another
    process holds it. Returns the locked descriptor, which is the file now at ``path``."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"{path}: cannot create the run's lock file ({exc})") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise ConfigError(f"{path.parent}: another training is running in this run folder "
                              f"({holder}; lock {path}). Nothing was written: wait for it to "
                              f"end, or choose another --name") from None
        try:  # the file may have been removed by its last holder after we opened it
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextmanager
def hold_run_lock(run_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the lock of ``run_dir`` inside the ``with`` block (ConfigError naming the running
    training when another process holds it); yields the lock file's path.

    The folder is created when missing and removed again at the end if it is then empty.
    """
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{run_dir}: cannot be created ({exc})") from exc
    path = lock_path(run_dir)
    try:
        fd = _open_locked(path)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                run_dir.rmdir()
        raise
    try:
        started = datetime.now().astimezone().isoformat(timespec="seconds")
        info = f"pid {os.getpid()} on host {socket.gethostname()}, started {started}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode("utf-8"), 0)
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # still locked: no other process can hold this file now
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # only when empty
