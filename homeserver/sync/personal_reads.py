"""What a sync shows that is the user's or the device's own besides its rooms' events:
unread notification counts, and the device's one-time key counts and unused fallback
key types. One statement per kind answers every sync that asks in the same turn of the
event loop (`PerUserBatch`): one message wakes hundreds of long-polls, and each would
otherwise read its own.

A sync asks (`request`) right after it has read its stream positions, together with
its memberships, and takes the answer when it assembles the response, so the batch costs
no loop turn of its own. The read starts after every sync in the batch asked, that is
after each read its `current` token: since notification counts commit with their events,
the counts include every event up to that token (they may include later ones too, as an
unbatched read made when the response is assembled could).

Spec: https://spec.matrix.org/v1.19/client-server-api/#receiving-notifications and
#e2e-extensions-to-sync .
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import attrs

from homeserver.storage.database import Database
from homeserver.storage.sync_batch_reads import (
    DeviceKeyCounts,
    RoomThreadCounts,
    key_counts_of_devices,
    unread_counts_of_users,
)
from homeserver.sync.receipts import MAIN_THREAD
from homeserver.sync.shared_reads import PerUserBatch
from homeserver.sync.sync_result import RoomCounts

# Key: (user, device or None).
Device = tuple[str, str | None]


@attrs.frozen
class Personal:
    """`counts` None: not read here (a port supplies them); `keys` None: no device, or
    key counts are not read here."""

    counts: RoomThreadCounts | None
    keys: DeviceKeyCounts | None


class PersonalReads:
    """`counts`: read unread counts; `keys`: read the device's key counts."""

    def __init__(self, db: Database, *, counts: bool, keys: bool):
        self._db = db
        self._counts = counts
        self._keys = keys
        self._batch: PerUserBatch[Device, Personal] = PerUserBatch(self._read)

    def request(self, user_id: str, device_id: str | None) -> asyncio.Future[Personal]:
        """The caller's own future of the answer (see PerUserBatch.request)."""
        return self._batch.request((user_id, device_id))

    async def _read(self, asked: list[Device]) -> dict[Device, Personal]:
        counts: dict[str, RoomThreadCounts] = {}
        keys: dict[tuple[str, str], DeviceKeyCounts] = {}
        devices = [(u, d) for u, d in asked if d is not None] if self._keys else []
        if self._counts or devices:
            async with self._db.connection() as conn:
                if self._counts:
                    counts = await unread_counts_of_users(conn, [u for u, _ in asked])
                if devices:
                    keys = await key_counts_of_devices(conn, devices)
        return {(u, d): Personal(counts.get(u, {}) if self._counts else None,
                                 keys.get((u, d)) if d is not None else None)
                for u, d in asked}


def _counts(notifications: int, highlights: int) -> dict[str, int]:
    return {"notification_count": notifications, "highlight_count": highlights}


def room_counts(counts: RoomThreadCounts, room_ids: Sequence[str], *,
                by_thread: bool) -> dict[str, RoomCounts]:
    """room -> its counts. Without `by_thread` a room's count is the sum over its
    threads; with it, the main timeline's alone, and each thread root with unread
    notifications apart (spec: unread_thread_notifications)."""
    out = {}
    for room_id in room_ids:
        threads = counts.get(room_id)
        if not threads:
            out[room_id] = RoomCounts(_counts(0, 0), {} if by_thread else None)
        elif by_thread:
            main = threads.get(MAIN_THREAD, (0, 0))
            out[room_id] = RoomCounts(_counts(*main), {
                root: _counts(*c) for root, c in threads.items() if root != MAIN_THREAD})
        else:
            notifications = highlights = 0
            for n, h in threads.values():
                notifications += n
                highlights += h
            out[room_id] = RoomCounts(_counts(notifications, highlights))
    return out
