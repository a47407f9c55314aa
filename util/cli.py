"""What every command-line entry point does at its edge: logging set-up and error handling."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from util.distributed import env_world_size
from util.errors import CTPix2PixError

logger = logging.getLogger(__name__)


def setup_logging(level: int = logging.INFO) -> None:
    """Log ``time level name: message`` to stderr (idempotent); in a torchrun job with several
    processes each line names its rank: ``time level [rank R] name: message``."""
    rank = f"[rank {os.environ.get('RANK', '0')}] " if env_world_size() > 1 else ""
    logging.basicConfig(level=level,
                        format=f"%(asctime)s %(levelname)s {rank}%(name)s: %(message)s",
                        stream=sys.stderr)


def printable(text: str) -> str:
    """``text`` with undecodable file-name bytes (surrogate escapes) shown as ``\\x..``."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def run_cli(main: Callable[[], int]) -> int:
    """Run ``main`` and turn the project's errors into a one-line message and exit status 1."""
    setup_logging()
    try:
        return main()
    except CTPix2PixError as exc:
        logger.error("%s", printable(str(exc)))
        return 1
