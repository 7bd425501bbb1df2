"""Presence of local users, numbered on the "presence" stream.

Spec: https://spec.matrix.org/v1.19/client-server-api/#presence
"""

from __future__ import annotations

from typing import Any

import attrs

from homeserver.storage import streams
from homeserver.storage.database import Connection, Database

STREAM = "presence"


@attrs.frozen
class PresenceRow:
    user_id: str
    state: str  # online | unavailable | offline
    status_msg: str | None
    last_active_ts: int
    currently_active: bool
    stream_id: int


UPSERT = """
INSERT INTO presence (user_id, state, status_msg, last_active_ts, currently_active, stream_id)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, status_msg = excluded.status_msg,
    last_active_ts = excluded.last_active_ts, currently_active = excluded.currently_active,
    stream_id = excluded.stream_id
"""
_COLUMNS = "user_id, state, status_msg, last_active_ts, currently_active, stream_id"
SELECT_ONE = f"SELECT {_COLUMNS} FROM presence WHERE user_id = $1"
SELECT_RANGE = f"""
SELECT {_COLUMNS} FROM presence WHERE stream_id > $1 AND stream_id <= $2 ORDER BY stream_id
"""


def _row(r: Any) -> PresenceRow:
    return PresenceRow(r["user_id"], r["state"], r["status_msg"], int(r["last_active_ts"]),
                       bool(r["currently_active"]), int(r["stream_id"]))


class PresenceStore:
    async def upsert(self, conn: Connection, user_id: str, state: str, status_msg: str | None,
                     last_active_ts: int, currently_active: bool) -> int:
        """Replace the user's presence; returns its position on the presence stream."""
        stream_id = await streams.next_position(conn, STREAM)
        await conn.execute(UPSERT, user_id, state, status_msg, last_active_ts,
                           1 if currently_active else 0, stream_id)
        return stream_id

    async def get(self, db: Database | Connection, user_id: str) -> PresenceRow | None:
        row = await db.fetchrow(SELECT_ONE, user_id)
        return None if row is None else _row(row)

    async def in_range(self, db: Database | Connection, after: int, up_to: int) -> list[PresenceRow]:
        """Users whose presence changed in (after, up_to]; callers keep those they may see."""
        return [_row(r) for r in await db.fetch(SELECT_RANGE, after, up_to)]
