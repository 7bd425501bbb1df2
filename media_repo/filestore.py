"""Content-addressed file storage: a body is stored once, at a path made of its sha256.

Layout under `media_store_path`: `content/ab/cd/<sha256>` for bodies and `tmp/` for
uploads in flight (same filesystem, so finishing an upload is an atomic rename).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import attrs


class BodyTooLarge(Exception):
    """The stream went past the byte limit it was given; nothing was kept."""


@attrs.frozen
class StoredFile:
    sha256: str
    size: int


class FileStore:
    def __init__(self, root: str):
        self._root = Path(root)
        self._tmp = self._root / "tmp"
        self._content = self._root / "content"

    def ensure_dirs(self) -> None:
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._content.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self._content / sha256[:2] / sha256[2:4] / sha256

    async def write_stream(self, chunks: AsyncIterator[bytes], max_size: int) -> StoredFile:
        """Write chunks to a temporary file, hashing on the way, then move it into place.

        Raises BodyTooLarge past `max_size` bytes; on that or any other error (a client
        that drops the connection mid-body) the temporary file is removed."""
        tmp = self._tmp / f"upload-{secrets.token_hex(8)}"
        digest = hashlib.sha256()
        size = 0
        # Disk writes go to a thread: a slow disk must not stall the event loop.
        f = await asyncio.to_thread(open, tmp, "wb")
        try:
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_size:
                        raise BodyTooLarge(f"over {max_size} bytes")
                    digest.update(chunk)
                    await asyncio.to_thread(f.write, chunk)
            finally:
                await asyncio.to_thread(f.close)
            sha256 = digest.hexdigest()
            await asyncio.to_thread(self._move_into_place, tmp, sha256)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return StoredFile(sha256=sha256, size=size)

    async def write_bytes(self, data: bytes) -> StoredFile:
        """Store a small body already in memory (thumbnails)."""
        sha256 = hashlib.sha256(data).hexdigest()
        tmp = self._tmp / f"thumb-{secrets.token_hex(8)}"

        def write() -> None:
            try:
                tmp.write_bytes(data)
                self._move_into_place(tmp, sha256)
            finally:
                tmp.unlink(missing_ok=True)

        await asyncio.to_thread(write)
        return StoredFile(sha256=sha256, size=len(data))

    def _move_into_place(self, tmp: Path, sha256: str) -> None:
        final = self.path_for(sha256)
        if final.exists():
            # Identical content is already stored: keep the one copy.
            tmp.unlink()
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)

    async def delete(self, sha256: str) -> None:
        await asyncio.to_thread(self.path_for(sha256).unlink, True)

    def count_files(self) -> int:
        """How many bodies are stored (tests and admin output)."""
        return sum(len(files) for _, _, files in os.walk(self._content))

    def count_tmp(self) -> int:
        return sum(1 for _ in self._tmp.iterdir()) if self._tmp.exists() else 0
