"""The persistent queue of notifications for pushers (schema/0011_push_queue.sql)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import attrs

from homeserver.storage.batch import fetch_for_ids
from homeserver.storage.database import Connection, Database
from homeserver.storage.notifications import NewNotification


@attrs.frozen
class QueuedPush:
    """A queued notification joined with the pusher it goes to."""

    user_id: str
    app_id: str
    pushkey: str
    event_id: str
    room_id: str
    stream_ordering: int
    actions: list[Any]
    unread: int
    attempts: int
    kind: str
    data: dict[str, Any]
    pushkey_ts_ms: int


HAS_PUSHER = "SELECT 1 FROM pushers WHERE user_id = $1 LIMIT 1"
TOTAL_UNREAD = "SELECT COALESCE(SUM(notif_count), 0) FROM notification_counts WHERE user_id = $1"
SELECT_PUSHABLE_PG = "SELECT DISTINCT user_id FROM pushers WHERE user_id = ANY($1::text[])"
SELECT_PUSHABLE_SQLITE = """
SELECT DISTINCT user_id FROM pushers WHERE user_id IN (SELECT value FROM json_each($1))
"""
_TOTALS = """
SELECT user_id, COALESCE(SUM(notif_count), 0) AS unread FROM notification_counts
WHERE user_id {} GROUP BY user_id
"""
TOTAL_UNREAD_MANY_PG = _TOTALS.format("= ANY($1::text[])")
TOTAL_UNREAD_MANY_SQLITE = _TOTALS.format("IN (SELECT value FROM json_each($1))")
# One row per pusher of the user. The WHERE clause also keeps SQLite from reading
# ON CONFLICT as part of the SELECT.
ENQUEUE = """
INSERT INTO push_queue (user_id, app_id, pushkey, event_id, room_id, stream_ordering, actions,
                        unread, attempts, next_attempt_ts)
SELECT user_id, app_id, pushkey, $2, $3, $4, $5, $6, 0, $7 FROM pushers WHERE user_id = $1
ON CONFLICT (user_id, app_id, pushkey, event_id) DO NOTHING
"""
SELECT_DUE = """
SELECT q.user_id, q.app_id, q.pushkey, q.event_id, q.room_id, q.stream_ordering, q.actions,
       q.unread, q.attempts, p.kind, p.data, p.created_ts
FROM push_queue q
JOIN pushers p ON p.user_id = q.user_id AND p.app_id = q.app_id AND p.pushkey = q.pushkey
WHERE q.next_attempt_ts <= $1
ORDER BY q.stream_ordering, q.user_id, q.app_id, q.pushkey
LIMIT $2
"""
# Rows whose pusher was deleted (by its owner or a gateway's rejection) can never be sent.
DELETE_ORPHANS = """
DELETE FROM push_queue WHERE NOT EXISTS (
    SELECT 1 FROM pushers p WHERE p.user_id = push_queue.user_id
      AND p.app_id = push_queue.app_id AND p.pushkey = push_queue.pushkey)
"""
DELETE_ONE = """
DELETE FROM push_queue WHERE user_id = $1 AND app_id = $2 AND pushkey = $3 AND event_id = $4
"""
BACK_OFF = """
UPDATE push_queue SET attempts = $4, next_attempt_ts = $5
WHERE user_id = $1 AND app_id = $2 AND pushkey = $3
"""
RESET_ATTEMPTS = """
UPDATE push_queue SET attempts = 0 WHERE user_id = $1 AND app_id = $2 AND pushkey = $3
"""
NEXT_ATTEMPT = "SELECT MIN(next_attempt_ts) FROM push_queue"
COUNT_ALL = "SELECT COUNT(*) FROM push_queue"


def _row(r: Any) -> QueuedPush:
    return QueuedPush(r["user_id"], r["app_id"], r["pushkey"], r["event_id"], r["room_id"],
                      int(r["stream_ordering"]), json.loads(r["actions"]), int(r["unread"]),
                      int(r["attempts"]), r["kind"], json.loads(r["data"]), int(r["created_ts"]))


class PushQueueStore:
    async def enqueue(self, conn: Connection, user_id: str, event_id: str, room_id: str,
                      stream_ordering: int, actions: list[Any], now_ms: int) -> bool:
        """Queue for every pusher of the user; False when the user has none."""
        if await conn.fetchval(HAS_PUSHER, user_id) is None:
            return False
        unread = int(await conn.fetchval(TOTAL_UNREAD, user_id))
        await conn.execute(ENQUEUE, user_id, event_id, room_id, stream_ordering,
                           json.dumps(actions, separators=(",", ":")), unread, now_ms)
        return True

    async def users_with_pushers(self, conn: Connection, user_ids: Sequence[str]) -> set[str]:
        return {r["user_id"] for r in await fetch_for_ids(
            conn, SELECT_PUSHABLE_PG, SELECT_PUSHABLE_SQLITE, sorted(set(user_ids)))}

    async def enqueue_many(self, conn: Connection,
                           notifications: Sequence[NewNotification]) -> None:
        """`enqueue` for each notification (queued at its `ts`) in two round trips: the
        users' unread totals are read once, so no count may change between the items."""
        if not notifications:
            return
        totals = {r["user_id"]: int(r["unread"]) for r in await fetch_for_ids(
            conn, TOTAL_UNREAD_MANY_PG, TOTAL_UNREAD_MANY_SQLITE,
            sorted({n.user_id for n in notifications}))}
        await conn.executemany(ENQUEUE, [
            (n.user_id, n.event_id, n.room_id, n.stream_ordering,
             json.dumps(n.actions, separators=(",", ":")), totals.get(n.user_id, 0), n.ts)
            for n in notifications])

    async def due(self, db: Database | Connection, now_ms: int, limit: int) -> list[QueuedPush]:
        """Oldest first, only rows whose pusher still exists."""
        return [_row(r) for r in await db.fetch(SELECT_DUE, now_ms, limit)]

    async def delete_orphans(self, conn: Connection) -> None:
        await conn.execute(DELETE_ORPHANS)

    async def delete(self, conn: Connection, item: QueuedPush) -> None:
        await conn.execute(DELETE_ONE, item.user_id, item.app_id, item.pushkey, item.event_id)

    async def back_off(self, conn: Connection, item: QueuedPush, attempts: int,
                       next_attempt_ts: int) -> None:
        """Hold every row of the item's pusher until `next_attempt_ts`."""
        await conn.execute(BACK_OFF, item.user_id, item.app_id, item.pushkey, attempts,
                           next_attempt_ts)

    async def reset_attempts(self, conn: Connection, item: QueuedPush) -> None:
        await conn.execute(RESET_ATTEMPTS, item.user_id, item.app_id, item.pushkey)

    async def next_attempt(self, db: Database | Connection) -> int | None:
        value = await db.fetchval(NEXT_ATTEMPT)
        return None if value is None else int(value)

    async def size(self, db: Database | Connection) -> int:
        return int(await db.fetchval(COUNT_ALL))
