"""Read receipts: the latest one per (room, receipt type, user, thread).

Spec: https://spec.matrix.org/v1.19/client-server-api/#receipts
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from homeserver.storage import streams
from homeserver.storage.batch import fetch_for_ids
from homeserver.storage.database import Connection, Database

STREAM = "receipts"
# Stored for an unthreaded receipt; the API's "no thread_id" (a NULL cannot be in a key).
UNTHREADED = ""


@attrs.frozen
class Receipt:
    room_id: str
    receipt_type: str
    user_id: str
    thread_id: str | None
    event_id: str
    data: dict[str, Any]
    stream_id: int


UPSERT = """
INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, data, stream_id)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (room_id, receipt_type, user_id, thread_id)
DO UPDATE SET event_id = excluded.event_id, data = excluded.data, stream_id = excluded.stream_id
"""
SELECT_ONE = """
SELECT event_id FROM receipts
WHERE room_id = $1 AND receipt_type = $2 AND user_id = $3 AND thread_id = $4
"""
_COLUMNS = "room_id, receipt_type, user_id, thread_id, event_id, data, stream_id"
SELECT_ROOM = f"SELECT {_COLUMNS} FROM receipts WHERE room_id = $1 ORDER BY stream_id"
_ROOMS = f"SELECT {_COLUMNS} FROM receipts WHERE stream_id <= $2 AND room_id "
SELECT_ROOMS_PG = _ROOMS + "= ANY($1::text[]) ORDER BY stream_id"
SELECT_ROOMS_SQLITE = _ROOMS + "IN (SELECT value FROM json_each($1)) ORDER BY stream_id"
SELECT_RANGE = f"""
SELECT {_COLUMNS} FROM receipts WHERE stream_id > $1 AND stream_id <= $2 ORDER BY stream_id
"""


def _receipt(row: Any) -> Receipt:
    thread = row["thread_id"]
    return Receipt(row["room_id"], row["receipt_type"], row["user_id"],
                   None if thread == UNTHREADED else thread, row["event_id"],
                   json.loads(row["data"]), int(row["stream_id"]))


class ReceiptStore:
    async def upsert(self, conn: Connection, room_id: str, receipt_type: str, user_id: str,
                     thread_id: str | None, event_id: str, data: dict[str, Any]) -> int:
        """Replace the user's receipt; returns its new position on the receipts stream."""
        stream_id = await streams.next_position(conn, STREAM)
        await conn.execute(UPSERT, room_id, receipt_type, user_id,
                           UNTHREADED if thread_id is None else thread_id, event_id,
                           json.dumps(data, separators=(",", ":"), sort_keys=True), stream_id)
        return stream_id

    async def get_event_id(self, db: Database | Connection, room_id: str, receipt_type: str,
                           user_id: str, thread_id: str | None) -> str | None:
        value = await db.fetchval(SELECT_ONE, room_id, receipt_type, user_id,
                                  UNTHREADED if thread_id is None else thread_id)
        return None if value is None else str(value)

    async def for_room(self, db: Database | Connection, room_id: str) -> list[Receipt]:
        """Every current receipt in the room (initial sync)."""
        return [_receipt(r) for r in await db.fetch(SELECT_ROOM, room_id)]

    async def for_rooms(self, conn: Connection, room_ids: list[str], up_to: int) -> list[Receipt]:
        """Every current receipt of these rooms written at or before `up_to`, in one
        query (an initial sync asks for all of a user's rooms)."""
        rows = await fetch_for_ids(conn, SELECT_ROOMS_PG, SELECT_ROOMS_SQLITE, room_ids, up_to)
        return [_receipt(r) for r in rows]

    async def in_range(self, db: Database | Connection, after: int, up_to: int) -> list[Receipt]:
        """Receipts written in (after, up_to], all rooms; callers keep the rooms they want.
        Incremental syncs ask for short ranges, so one indexed range scan beats a
        per-room query (and needs no array parameter, which SQLite lacks)."""
        return [_receipt(r) for r in await db.fetch(SELECT_RANGE, after, up_to)]
