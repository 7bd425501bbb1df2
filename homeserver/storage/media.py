"""Media repository metadata: local uploads, cached remote media and thumbnails.

Spec: https://spec.matrix.org/v1.19/client-server-api/#content-repository
File bodies are on disk, named by sha256; `sha256_in_use` tells the repository whether
a body may be deleted once a row naming it is gone.
"""

from __future__ import annotations

import attrs

from homeserver.storage.database import Connection, Database, Row


@attrs.frozen
class MediaInfo:
    """One media item's metadata; `sha256` and `size` are None while an async upload
    is pending."""

    origin: str
    media_id: str
    content_type: str | None
    size: int | None
    filename: str | None
    created_ts: int
    sha256: str | None
    uploader: str | None = None
    unused_expires_ts: int | None = None


@attrs.frozen
class ThumbnailInfo:
    width: int
    height: int
    method: str
    animated: bool
    content_type: str
    size: int
    sha256: str


INSERT_LOCAL = """
INSERT INTO local_media (media_id, uploader, content_type, size, filename, created_ts, sha256,
                         unused_expires_ts)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""
# Only a pending row is filled: a second PUT cannot overwrite an uploaded body.
COMPLETE_PENDING = """
UPDATE local_media SET content_type = $2, size = $3, filename = $4, sha256 = $5,
                       unused_expires_ts = NULL
WHERE media_id = $1 AND sha256 IS NULL
"""
SELECT_LOCAL = """
SELECT media_id, uploader, content_type, size, filename, created_ts, sha256, unused_expires_ts
FROM local_media WHERE media_id = $1
"""
DELETE_LOCAL = "DELETE FROM local_media WHERE media_id = $1 RETURNING sha256"
USER_USAGE = "SELECT COALESCE(SUM(size), 0) FROM local_media WHERE uploader = $1"
COUNT_PENDING = """
SELECT COUNT(*) FROM local_media
WHERE uploader = $1 AND sha256 IS NULL AND unused_expires_ts > $2
"""

SELECT_REMOTE = """
SELECT origin, media_id, content_type, size, filename, created_ts, sha256
FROM remote_media WHERE origin = $1 AND media_id = $2
"""
INSERT_REMOTE = """
INSERT INTO remote_media (origin, media_id, content_type, size, filename, created_ts,
                          last_access_ts, sha256)
VALUES ($1, $2, $3, $4, $5, $6, $6, $7)
ON CONFLICT (origin, media_id) DO NOTHING
"""
TOUCH_REMOTE = "UPDATE remote_media SET last_access_ts = $3 WHERE origin = $1 AND media_id = $2"
DELETE_REMOTE_BEFORE = """
DELETE FROM remote_media WHERE last_access_ts < $1 RETURNING origin, media_id, sha256
"""

SELECT_THUMBNAILS = """
SELECT width, height, method, animated, content_type, size, sha256
FROM media_thumbnails WHERE origin = $1 AND media_id = $2
"""
INSERT_THUMBNAIL = """
INSERT INTO media_thumbnails (origin, media_id, width, height, method, animated, content_type,
                              size, sha256)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (origin, media_id, width, height, method, animated) DO NOTHING
"""
DELETE_THUMBNAILS = """
DELETE FROM media_thumbnails WHERE origin = $1 AND media_id = $2 RETURNING sha256
"""

SHA256_IN_USE = """
SELECT 1 WHERE EXISTS (SELECT 1 FROM local_media WHERE sha256 = $1)
            OR EXISTS (SELECT 1 FROM remote_media WHERE sha256 = $1)
            OR EXISTS (SELECT 1 FROM media_thumbnails WHERE sha256 = $1)
"""


def _local(row: Row, origin: str) -> MediaInfo:
    return MediaInfo(origin=origin, media_id=row["media_id"], content_type=row["content_type"],
                     size=row["size"], filename=row["filename"], created_ts=row["created_ts"],
                     sha256=row["sha256"], uploader=row["uploader"],
                     unused_expires_ts=row["unused_expires_ts"])


class MediaStore:
    async def add_local(self, conn: Connection, media: MediaInfo) -> None:
        await conn.execute(INSERT_LOCAL, media.media_id, media.uploader, media.content_type,
                           media.size, media.filename, media.created_ts, media.sha256,
                           media.unused_expires_ts)

    async def complete_pending(self, conn: Connection, media_id: str, content_type: str | None,
                               size: int, filename: str | None, sha256: str) -> bool:
        """Fill a pending async upload; False when it was not pending any more."""
        return await conn.execute(COMPLETE_PENDING, media_id, content_type, size, filename,
                                  sha256) == 1

    async def get_local(self, db: Database | Connection, origin: str,
                        media_id: str) -> MediaInfo | None:
        row = await db.fetchrow(SELECT_LOCAL, media_id)
        return None if row is None else _local(row, origin)

    async def delete_local(self, conn: Connection, media_id: str) -> tuple[bool, list[str]]:
        """Delete a local media row: whether it existed, and the sha256 it named."""
        rows = await conn.fetch(DELETE_LOCAL, media_id)
        return bool(rows), [r["sha256"] for r in rows if r["sha256"]]

    async def user_usage(self, db: Database | Connection, user_id: str) -> int:
        return int(await db.fetchval(USER_USAGE, user_id))

    async def count_pending(self, db: Database | Connection, user_id: str, now_ms: int) -> int:
        return int(await db.fetchval(COUNT_PENDING, user_id, now_ms))

    async def get_remote(self, db: Database | Connection, origin: str,
                         media_id: str) -> MediaInfo | None:
        row = await db.fetchrow(SELECT_REMOTE, origin, media_id)
        if row is None:
            return None
        return MediaInfo(origin=row["origin"], media_id=row["media_id"],
                         content_type=row["content_type"], size=row["size"],
                         filename=row["filename"], created_ts=row["created_ts"],
                         sha256=row["sha256"])

    async def add_remote(self, conn: Connection, media: MediaInfo) -> None:
        await conn.execute(INSERT_REMOTE, media.origin, media.media_id, media.content_type,
                           media.size, media.filename, media.created_ts, media.sha256)

    async def touch_remote(self, conn: Connection, origin: str, media_id: str, now_ms: int) -> None:
        await conn.execute(TOUCH_REMOTE, origin, media_id, now_ms)

    async def delete_remote_before(self, conn: Connection,
                                   before_ms: int) -> list[tuple[str, str, str]]:
        """Delete remote media last accessed before `before_ms`: (origin, media_id, sha256)."""
        rows = await conn.fetch(DELETE_REMOTE_BEFORE, before_ms)
        return [(r["origin"], r["media_id"], r["sha256"]) for r in rows]

    async def thumbnails(self, db: Database | Connection, origin: str,
                         media_id: str) -> list[ThumbnailInfo]:
        rows = await db.fetch(SELECT_THUMBNAILS, origin, media_id)
        return [ThumbnailInfo(width=r["width"], height=r["height"], method=r["method"],
                              animated=bool(r["animated"]), content_type=r["content_type"],
                              size=r["size"], sha256=r["sha256"]) for r in rows]

    async def add_thumbnail(self, conn: Connection, origin: str, media_id: str,
                            thumb: ThumbnailInfo) -> None:
        await conn.execute(INSERT_THUMBNAIL, origin, media_id, thumb.width, thumb.height,
                           thumb.method, int(thumb.animated), thumb.content_type, thumb.size,
                           thumb.sha256)

    async def delete_thumbnails(self, conn: Connection, origin: str, media_id: str) -> list[str]:
        return [r["sha256"] for r in await conn.fetch(DELETE_THUMBNAILS, origin, media_id)]

    async def sha256_in_use(self, conn: Connection, sha256: str) -> bool:
        return await conn.fetchval(SHA256_IN_USE, sha256) is not None
