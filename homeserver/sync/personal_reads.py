"""What a sync reads that is the user's or the device's own besides its rooms' events:
the user's memberships, unread notification counts, and the device's one-time key
counts and unused fallback key types. One statement (all of them together) answers
every sync that asks in the same turn of the event loop (`PerUserBatch`): one message
wakes hundreds of long-polls, and each would otherwise read its own.

A sync asks (`request`) right after it has read its stream positions. The read starts
after every sync in the batch asked, that is after each read its `current` token: since
notification counts commit with their events, the counts include every event up to
that token (they may include later ones too, as an unbatched read made when the
response is assembled could), and a membership newer than the token raises the sync's
events position to it (sync_service.py).

Spec: https://spec.matrix.org/v1.19/client-server-api/#receiving-notifications and
#e2e-extensions-to-sync .
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import attrs

from homeserver.storage.database import Database
from homeserver.storage.memberships import Membership
from homeserver.storage.sync_batch_reads import DeviceKeyCounts, RoomThreadCounts, personal_rows
from homeserver.storage.sync_queries import SyncQueries
from homeserver.sync.receipts import MAIN_THREAD
from homeserver.sync.shared_reads import PerUserBatch
from homeserver.sync.sync_result import RoomCounts

# Key: (user, device or None, whether the counts are wanted besides the memberships).
Key = tuple[str, str | None, bool]


@attrs.frozen
class Personal:
    """The user's current memberships, oldest first. `counts` None: not read here (a
    port supplies them, or not asked for); `keys` None: no device, or key counts are not
    read here (or not asked for)."""

    memberships: list[Membership]
    counts: RoomThreadCounts | None
    keys: DeviceKeyCounts | None


class PersonalReads:
    """`counts`: read unread counts; `keys`: read the device's key counts."""

    def __init__(self, db: Database, queries: SyncQueries, *, counts: bool, keys: bool):
        self._db = db
        self._queries = queries
        self._counts = counts
        self._keys = keys
        self._batch: PerUserBatch[Key, Personal] = PerUserBatch(self._read)

    def request(self, user_id: str, device_id: str | None, *,
                counts: bool = True) -> asyncio.Future[Personal]:
        """The caller's own future of the answer (see PerUserBatch.request); without
        `counts`, of the memberships alone."""
        return self._batch.request((user_id, device_id, counts))

    async def _read(self, asked: list[Key]) -> dict[Key, Personal]:
        users = [u for u, _, _ in asked]
        counted = [u for u, _, c in asked if c] if self._counts else []
        devices = [(u, d) for u, d, c in asked if c and d is not None] if self._keys else []
        unread: dict[str, RoomThreadCounts] = {}
        keys: dict[tuple[str, str], DeviceKeyCounts] = {}
        async with self._db.connection() as conn:
            if counted or devices:
                rows = await personal_rows(conn, users, counted, devices)
                memberships, unread, keys = rows.memberships, rows.unread, rows.keys
            else:
                memberships = await self._queries.memberships_of_users(conn, users)
        return {(u, d, c): Personal(memberships[u], unread.get(u, {}) if c and self._counts else None,
                                    keys.get((u, d)) if c and d is not None else None)
                for u, d, c in asked}


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
