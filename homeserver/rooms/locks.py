"""One asyncio lock per room, serialising event creation and persistence in a process.

Entries exist only while someone holds or waits for the lock, so the map is bounded by
the number of rooms being written at once, not by the number of rooms.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class RoomLocks:
    def __init__(self) -> None:
        # room_id -> (lock, number of holders and waiters)
        self._entries: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, room_id: str) -> AsyncIterator[None]:
        lock, users = self._entries.get(room_id, (asyncio.Lock(), 0))
        self._entries[room_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._entries[room_id]
            if users <= 1:
                del self._entries[room_id]
            else:
                self._entries[room_id] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._entries)
