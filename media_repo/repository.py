"""The media repository service: uploads with limits and quotas, look-ups, deletion.

Spec: https://spec.matrix.org/v1.19/client-server-api/#content-repository
No HTTP here: the adapter (media_repo/upload_api.py, download_api.py) hands in the body
as an async iterator of chunks, so a body is never held whole in memory.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from homeserver.clock import Clock
from homeserver.config import MediaConfig
from homeserver.errors import Forbidden, LimitExceeded, NotFound, TooLarge
from homeserver.storage.database import Database
from homeserver.storage.media import MediaInfo, MediaStore
from media_repo.errors import CannotOverwriteMedia, NotYetUploaded
from media_repo.filestore import BodyTooLarge, FileStore

logger = logging.getLogger(__name__)

MEDIA_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def is_valid_media_id(media_id: str) -> bool:
    """Spec: media IDs are opaque but [A-Za-z0-9_-]+ (mxc URI grammar)."""
    return 0 < len(media_id) <= 255 and all(c in MEDIA_ID_CHARS for c in media_id)


def content_type_matches(content_type: str, patterns: tuple[str, ...]) -> bool:
    base = content_type.split(";", 1)[0].strip().lower()
    return any(base == p or (p.endswith("/*") and base.startswith(p[:-1])) for p in patterns)


class MediaRepository:
    def __init__(self, db: Database, store: MediaStore, files: FileStore, clock: Clock, *,
                 server_name: str, config: MediaConfig):
        self._db = db
        self._store = store
        self._files = files
        self._clock = clock
        self.server_name = server_name
        self.config = config
        # Downloads waiting for a pending (async) upload, by media ID; set when its body
        # arrives. Entries exist only while someone waits, so the map stays small.
        self._arrivals: dict[str, asyncio.Event] = {}
        self._waiting: dict[str, int] = {}

    def path_for(self, sha256: str) -> Path:
        return self._files.path_for(sha256)

    async def create_pending(self, user_id: str) -> tuple[str, int]:
        """POST /_matrix/media/v1/create: reserve a media ID; returns it and its expiry."""
        now = self._clock.time_ms()
        async with self._db.transaction() as conn:
            pending = await self._store.count_pending(conn, user_id, now)
            if pending >= self.config.max_pending_uploads:
                raise LimitExceeded(retry_after_ms=self.config.unused_expiration_ms,
                                    error="Too many pending uploads")
            media_id = secrets.token_urlsafe(18)
            expires = now + self.config.unused_expiration_ms
            await self._store.add_local(conn, MediaInfo(
                origin=self.server_name, media_id=media_id, content_type=None, size=None,
                filename=None, created_ts=now, sha256=None, uploader=user_id,
                unused_expires_ts=expires))
        return media_id, expires

    async def upload(self, user_id: str, body: AsyncIterator[bytes], *, content_type: str | None,
                     filename: str | None, content_length: int | None,
                     media_id: str | None = None) -> str:
        """Store a body for the user (a new media ID, or a pending one); returns the ID."""
        self._check_content_type(content_type)
        if media_id is not None:
            await self._check_pending(user_id, media_id)
        max_upload = self.config.max_upload_size
        if content_length is not None and content_length > max_upload:
            raise TooLarge(f"Upload over the limit of {max_upload} bytes")
        room = await self._quota_room(user_id)
        if content_length is not None and room is not None and content_length > room:
            raise self._quota_error()
        limit = max_upload if room is None else min(max_upload, room)
        try:
            stored = await self._files.write_stream(body, limit)
        except BodyTooLarge:
            if room is not None and room < max_upload:
                raise self._quota_error() from None
            raise TooLarge(f"Upload over the limit of {max_upload} bytes") from None
        try:
            recorded = await self._record(user_id, media_id, content_type, filename,
                                          stored.sha256, stored.size)
        except BaseException:
            await self._delete_if_unused(stored.sha256)
            raise
        arrival = self._arrivals.get(recorded)
        if arrival is not None:
            arrival.set()
        return recorded

    async def _record(self, user_id: str, media_id: str | None, content_type: str | None,
                      filename: str | None, sha256: str, size: int) -> str:
        async with self._db.transaction() as conn:
            # Checked again now that the size is known: concurrent uploads may have used
            # the room seen before streaming.
            quota = self.config.max_storage_per_user
            if quota is not None and await self._store.user_usage(conn, user_id) + size > quota:
                raise self._quota_error()
            if media_id is None:
                media_id = secrets.token_urlsafe(18)
                await self._store.add_local(conn, MediaInfo(
                    origin=self.server_name, media_id=media_id, content_type=content_type,
                    size=size, filename=filename, created_ts=self._clock.time_ms(),
                    sha256=sha256, uploader=user_id))
            elif not await self._store.complete_pending(conn, media_id, content_type, size,
                                                        filename, sha256):
                raise CannotOverwriteMedia("Media already uploaded")
        return media_id

    def _check_content_type(self, content_type: str | None) -> None:
        ctype = content_type or "application/octet-stream"
        config = self.config
        if content_type_matches(ctype, config.denied_content_types) or (
                config.allowed_content_types
                and not content_type_matches(ctype, config.allowed_content_types)):
            # Spec: 403 M_FORBIDDEN when "the server does not permit the file type".
            raise Forbidden(f"Content type {ctype} is not allowed on this server")

    async def _check_pending(self, user_id: str, media_id: str) -> None:
        media = await self._store.get_local(self._db, self.server_name, media_id)
        now = self._clock.time_ms()
        if media is None or (media.sha256 is None and (media.unused_expires_ts or 0) <= now):
            raise NotFound("Unknown media ID")
        if media.uploader != user_id:
            raise Forbidden("This media ID was created by another user")
        if media.sha256 is not None:
            raise CannotOverwriteMedia("Media already uploaded")

    async def _quota_room(self, user_id: str) -> int | None:
        quota = self.config.max_storage_per_user
        if quota is None:
            return None
        return max(0, quota - await self._store.user_usage(self._db, user_id))

    def _quota_error(self) -> Forbidden:
        # Spec (POST /upload, PUT /upload/...): a user over "a quota for uploaded content"
        # gets 403 M_FORBIDDEN. M_RESOURCE_LIMIT_EXCEEDED is for server-wide limits (it
        # requires admin_contact and clients show it as the server being over a limit).
        quota = self.config.max_storage_per_user
        return Forbidden(f"Media storage quota exceeded: each user may store {quota} bytes",
                         quota_bytes=quota)

    async def get(self, server_name: str, media_id: str, *, wait_ms: int = 0) -> MediaInfo:
        """Metadata of uploaded media, local or cached remote; 404 otherwise.

        A created but not yet uploaded local media ID is waited for up to `wait_ms`
        (spec: the download endpoints' `timeout_ms`), then 504 M_NOT_YET_UPLOADED."""
        if server_name != self.server_name or wait_ms <= 0:
            return await self._get(server_name, media_id)
        try:
            return await self._get(server_name, media_id)
        except NotYetUploaded:
            pass
        arrival = self._arrivals.setdefault(media_id, asyncio.Event())
        self._waiting[media_id] = self._waiting.get(media_id, 0) + 1
        try:
            # Re-check after registering, so an upload landing in between is not missed.
            try:
                return await self._get(server_name, media_id)
            except NotYetUploaded:
                pass
            try:
                async with asyncio.timeout(wait_ms / 1000):
                    await arrival.wait()
            except TimeoutError:
                pass
            return await self._get(server_name, media_id)
        finally:
            self._waiting[media_id] -= 1
            if not self._waiting[media_id]:
                del self._waiting[media_id]
                self._arrivals.pop(media_id, None)

    async def _get(self, server_name: str, media_id: str) -> MediaInfo:
        if server_name == self.server_name:
            media = await self._store.get_local(self._db, server_name, media_id)
            if media is None or (media.sha256 is None and
                                 (media.unused_expires_ts or 0) <= self._clock.time_ms()):
                raise NotFound("Media not found")
            if media.sha256 is None:
                raise NotYetUploaded("Media has not been uploaded yet")
            return media
        media = await self._store.get_remote(self._db, server_name, media_id)
        if media is None:
            # Fetching from other servers arrives with federation.
            raise NotFound("Media not found (remote media is not fetched yet)")
        async with self._db.transaction() as conn:
            await self._store.touch_remote(conn, server_name, media_id, self._clock.time_ms())
        return media

    async def delete_local(self, media_id: str) -> bool:
        """Delete local media and its thumbnails; bodies no other row names go too."""
        async with self._db.transaction() as conn:
            existed, hashes = await self._store.delete_local(conn, media_id)
            hashes += await self._store.delete_thumbnails(conn, self.server_name, media_id)
        for sha256 in set(hashes):
            await self._delete_if_unused(sha256)
        return existed

    async def purge_remote(self, older_than_ms: int) -> int:
        """Delete cached remote media last accessed more than `older_than_ms` ago."""
        before = self._clock.time_ms() - older_than_ms
        async with self._db.transaction() as conn:
            removed = await self._store.delete_remote_before(conn, before)
            hashes = {sha for _, _, sha in removed}
            for origin, media_id, _ in removed:
                hashes.update(await self._store.delete_thumbnails(conn, origin, media_id))
        for sha256 in hashes:
            await self._delete_if_unused(sha256)
        return len(removed)

    async def _delete_if_unused(self, sha256: str) -> None:
        async with self._db.transaction() as conn:
            in_use = await self._store.sha256_in_use(conn, sha256)
        if not in_use:
            await self._files.delete(sha256)
