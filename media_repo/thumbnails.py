"""Thumbnails: the configured sizes made at upload, others made on request and cached.

Spec: https://spec.matrix.org/v1.19/client-server-api/#thumbnails
A request is answered with the smallest stored or configured thumbnail at least as big
as asked for with the same method (the spec lets a server answer with a larger one);
only sizes beyond every configured one are rendered to order, capped at MAX_DIMENSION.
Rendering runs in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from homeserver.config import MediaConfig
from homeserver.errors import BadRequest, InvalidParam
from homeserver.storage.database import Database
from homeserver.storage.media import MediaInfo, MediaStore, ThumbnailInfo
from media_repo.filestore import FileStore
from media_repo.thumbnailer import THUMBNAILABLE_TYPES, Request, Thumbnailer, ThumbnailError

logger = logging.getLogger(__name__)

# Bigger thumbnails are no thumbnails; it also bounds what one request can make us render.
MAX_DIMENSION = 2048


class Thumbnails:
    def __init__(self, db: Database, store: MediaStore, files: FileStore,
                 thumbnailer: Thumbnailer, config: MediaConfig):
        self._db = db
        self._store = store
        self._files = files
        self._thumbnailer = thumbnailer
        self._sizes = [Request(s.width, s.height, s.method) for s in config.thumbnail_sizes]

    async def pregenerate(self, media: MediaInfo) -> None:
        """Make the configured sizes of a freshly uploaded image; failures only log (a
        corrupt image is still a valid upload, it just has no thumbnails)."""
        if not _thumbnailable(media) or not self._sizes:
            return
        try:
            await self._render_and_store(media, self._sizes, animated=False)
        except ThumbnailError as e:
            logger.info("no thumbnails for %s: %s", media.media_id, e)

    async def get(self, media: MediaInfo, width: int, height: int, method: str,
                  animated: bool) -> tuple[ThumbnailInfo, Path]:
        """The thumbnail to serve for a request, rendering and caching it if needed."""
        if width <= 0 or height <= 0:
            raise InvalidParam("width and height must be positive integers")
        if method not in ("scale", "crop"):
            raise InvalidParam("method must be scale or crop")
        if not _thumbnailable(media):
            raise BadRequest("This media cannot be thumbnailed")
        want = Request(min(width, MAX_DIMENSION), min(height, MAX_DIMENSION), method)
        existing = await self._store.thumbnails(self._db, media.origin, media.media_id)
        found = _best(existing, want, animated)
        if found is None:
            target = next((s for s in sorted(self._sizes, key=lambda s: s.width * s.height)
                           if _covers(s.width, s.height, s.method, want)), want)
            try:
                rendered = await self._render_and_store(media, [target], animated)
            except ThumbnailError as e:
                raise BadRequest(str(e)) from None
            found = rendered[0]
        return found, self._files.path_for(found.sha256)

    async def _render_and_store(self, media: MediaInfo, requests: list[Request],
                                animated: bool) -> list[ThumbnailInfo]:
        assert media.sha256 is not None
        source = self._files.path_for(media.sha256)
        rendered = await asyncio.to_thread(self._thumbnailer.render, source, requests, animated)
        stored: list[ThumbnailInfo] = []
        for req, r in zip(requests, rendered, strict=True):
            file = await self._files.write_bytes(r.data)
            # Keyed by what was asked for, so the same request finds it again (an
            # animated request on a still source is answered, and cached, with a still).
            stored.append(ThumbnailInfo(width=req.width, height=req.height, method=req.method,
                                        animated=animated, content_type=r.content_type,
                                        size=file.size, sha256=file.sha256))
        async with self._db.transaction() as conn:
            for thumb in stored:
                await self._store.add_thumbnail(conn, media.origin, media.media_id, thumb)
        return stored


def _thumbnailable(media: MediaInfo) -> bool:
    ctype = (media.content_type or "").split(";", 1)[0].strip().lower()
    return ctype in THUMBNAILABLE_TYPES and media.sha256 is not None


def _best(existing: list[ThumbnailInfo], want: Request, animated: bool) -> ThumbnailInfo | None:
    fits = [t for t in existing
            if t.animated == animated and _covers(t.width, t.height, t.method, want)]
    return min(fits, key=lambda t: t.width * t.height, default=None)


def _covers(width: int, height: int, method: str, want: Request) -> bool:
    """Whether a thumbnail made for width x height answers `want`: as large, same
    method, and for crop the same shape (a square crop is no answer to a banner)."""
    if method != want.method or width < want.width or height < want.height:
        return False
    return method == "scale" or abs(width * want.height - height * want.width) <= (
        0.05 * width * want.height)
