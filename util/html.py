"""A small static web page of pictures: ``<page_dir>/index.html`` with ``<page_dir>/images/``."""

from __future__ import annotations

import logging
import os
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import dominate
from dominate import tags

from util.atomic import atomic_write_text, make_dirs

logger = logging.getLogger(__name__)


class HTMLPage:
    """A page built up row by row and written with :meth:`save`.

    ``page_dir`` holds ``index.html`` and an ``images/`` folder (created here; OutputError naming
    it when that fails). ``refresh_s > 0`` makes browsers reload the page every that many
    seconds (for pages of a running training).
    """

    def __init__(self, page_dir: str | os.PathLike[str], title: str, *, refresh_s: int = 0) -> None:
        self.page_dir = Path(page_dir)
        self.image_dir = self.page_dir / "images"
        make_dirs(self.image_dir)
        self.title = title
        self._doc = dominate.document(title=title)
        if refresh_s > 0:
            with self._doc.head:
                tags.meta(http_equiv="refresh", content=str(int(refresh_s)))

    @property
    def index_path(self) -> Path:
        """Where :meth:`save` writes the page."""
        return self.page_dir / "index.html"

    def add_header(self, text: str) -> None:
        """Add a heading (escaped)."""
        with self._doc:
            tags.h3(text)

    def add_images(self, paths: list[str], captions: list[str], width: int) -> None:
        """Add one table row of pictures, each linked to itself, with its caption underneath.

        ``paths``: relative to the page's folder, e.g. ``"images/x.png"``; ``width`` in pixels.
        """
        if len(paths) != len(captions):
            raise ValueError(f"{len(paths)} image paths but {len(captions)} captions")
        for path in paths:
            parts = PurePosixPath(path).parts
            if PurePosixPath(path).is_absolute() or ".." in parts or "\\" in path:
                raise ValueError(f"image path {path!r} must be relative to {self.page_dir} "
                                 f"and stay inside it")
        with self._doc, tags.table(border=1, style="table-layout: fixed;"), tags.tr():
            for path, caption in zip(paths, captions, strict=True):
                href = quote(path)
                with tags.td(style="word-wrap: break-word;", halign="center", valign="top"):
                    with tags.p(), tags.a(href=href):
                        tags.img(style=f"width:{int(width)}px", src=href)
                    tags.p(caption)

    def add_text_block(self, text: str) -> None:
        """Add pre-formatted text (escaped, line breaks kept), e.g. the tail of a log."""
        with self._doc:
            tags.pre(text)

    def save(self) -> Path:
        """Write ``index.html`` atomically; return its path."""
        path = atomic_write_text(self.index_path, self._doc.render())
        logger.debug("wrote %s", path)
        return path
