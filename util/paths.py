"""What a path is when it should be a folder: the phrase an error message needs."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_KINDS = ((stat.S_ISREG, "file"), (stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket"),
          (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))


def _link_target(path: Path) -> str:
    """Where the symbolic link ``path`` points, as written in the link."""
    try:
        return os.readlink(path)
    except OSError:
        return "an unreadable target"


def folder_problem(path: str | os.PathLike[str]) -> str | None:
    """None when ``path`` is a folder (symbolic links followed); otherwise why it is not, as a
    phrase to put after the path: ``"does not exist"``, ``"is a broken symbolic link (to X)"``,
    ``"is a symbolic link loop"``, ``"is a file, not a folder"``, ``"cannot be inspected
    (Permission denied)"``."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        if path.is_symlink():
            return f"is a broken symbolic link (to {_link_target(path)})"
        return "does not exist"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop"
        return f"cannot be inspected ({exc.strerror})"
    if stat.S_ISDIR(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "special file")
    return f"is a {kind}, not a folder"


def is_hidden_file(path: Path) -> bool:
    """True for a plain file (not a link) whose name starts with ``.``, such as ``.DS_Store``."""
    try:
        return path.name.startswith(".") and stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False
