"""Unread notification counts for /sync, their reset by read receipts, and
GET /notifications.

Spec: https://spec.matrix.org/v1.19/client-server-api/#receiving-notifications ,
#marking-notifications-as-read and #get_matrixclientv3notifications .
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homeserver.errors import InvalidParam
from homeserver.rooms.event_loader import ClientEventLoader
from homeserver.rooms.stores import RoomStores
from homeserver.storage.database import Database
from homeserver.storage.notifications import NotificationStore
from homeserver.sync.receipts import MAIN_THREAD
from homeserver.sync.sync_result import RoomCounts

JsonDict = dict[str, Any]
READ_RECEIPT_TYPES = frozenset({"m.read", "m.read.private"})
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
_NO_LIMIT = 2**63 - 1


def _counts(notifications: int, highlights: int) -> JsonDict:
    return {"notification_count": notifications, "highlight_count": highlights}


class NotificationCounts:
    def __init__(self, db: Database, store: NotificationStore, stores: RoomStores,
                 loader: ClientEventLoader):
        self._db = db
        self._store = store
        self._stores = stores
        self._loader = loader

    async def unread_counts(self, user_id: str, room_ids: Sequence[str], *,
                            by_thread: bool = False) -> dict[str, RoomCounts]:
        """Sync's UnreadCounts port, from one query for all the user's rooms. Without
        `by_thread` a room's count is the sum over its threads; with it, the main
        timeline's alone, and each thread root with unread notifications apart."""
        counts = await self._store.counts(self._db, user_id)
        out = {}
        for room_id in room_ids:
            threads = counts.get(room_id, {})
            if by_thread:
                main = threads.get(MAIN_THREAD, (0, 0))
                out[room_id] = RoomCounts(_counts(*main), {
                    root: _counts(*c) for root, c in threads.items() if root != MAIN_THREAD})
            else:
                out[room_id] = RoomCounts(_counts(sum(n for n, _ in threads.values()),
                                                  sum(h for _, h in threads.values())))
        return out

    async def on_receipt(self, user_id: str, room_id: str, receipt_type: str,
                         thread_id: str | None, position: int) -> None:
        """The receipts service's callback: an m.read or m.read.private receipt marks
        everything up to it read (in its thread when threaded). Either type may be the
        one ahead; read positions only move forward, so the furthest wins."""
        if receipt_type not in READ_RECEIPT_TYPES:
            return
        async with self._db.transaction() as conn:
            await self._store.mark_read(conn, user_id, room_id, thread_id, position)

    async def get_notifications(self, user_id: str, from_token: str | None, limit: str | None,
                                only: str | None) -> JsonDict:
        """GET /notifications"""
        before = _NO_LIMIT
        if from_token is not None:
            if not from_token.isdecimal() or len(from_token) > 19:
                raise InvalidParam("Invalid 'from' token")
            before = int(from_token)
        count = DEFAULT_LIMIT
        if limit is not None:
            if not limit.isdecimal():
                raise InvalidParam("'limit' must be a non-negative integer")
            count = min(int(limit), MAX_LIMIT)
        async with self._db.connection() as conn:
            rows = await self._store.list(conn, user_id, before, count,
                                          only_highlight=only == "highlight")
            stored = await self._stores.events.get_many(conn, [r.event_id for r in rows])
            found = [r for r in rows if r.event_id in stored]
            events = await self._loader.format(conn, [stored[r.event_id] for r in found],
                                               user_id=user_id, device_id=None,
                                               bundle_aggregations=False)
        notifications = [{"actions": r.actions, "event": event, "read": r.read,
                          "room_id": r.room_id, "ts": r.ts}
                         for r, event in zip(found, events, strict=True)]
        out: JsonDict = {"notifications": notifications}
        if rows and len(rows) == count:
            out["next_token"] = str(rows[-1].stream_ordering)
        return out
