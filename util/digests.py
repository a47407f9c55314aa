"""SHA-256 of files, read in chunks: the project's one file digest (dataset manifests, the
training data record, checkpoint sets' weights)."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

_CHUNK_BYTES = 1 << 20


def file_sha256(path: Path, gunzip: bool = False) -> str:
    """Hex SHA-256 of a file's bytes, or of its decompressed bytes when ``gunzip``; raises
    OSError (and gzip's errors) as reading does."""
    digest = hashlib.sha256()
    with (gzip.open(path, "rb") if gunzip else path.open("rb")) as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
