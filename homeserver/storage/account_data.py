"""Global and per-room account data, numbered on the "account_data" stream for sync.

Spec: https://spec.matrix.org/v1.19/client-server-api/#client-config
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from homeserver.storage import streams
from homeserver.storage.database import Connection, Database

STREAM = "account_data"


@attrs.frozen
class AccountDataChange:
    room_id: str | None  # None for global account data
    type: str
    content: dict[str, Any]
    stream_id: int


UPSERT_GLOBAL = """
INSERT INTO account_data (user_id, type, content, stream_id) VALUES ($1, $2, $3, $4)
ON CONFLICT (user_id, type) DO UPDATE SET content = excluded.content, stream_id = excluded.stream_id
"""
UPSERT_ROOM = """
INSERT INTO room_account_data (user_id, room_id, type, content, stream_id) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (user_id, room_id, type)
DO UPDATE SET content = excluded.content, stream_id = excluded.stream_id
"""
SELECT_GLOBAL = "SELECT content FROM account_data WHERE user_id = $1 AND type = $2"
SELECT_ROOM = """
SELECT content FROM room_account_data WHERE user_id = $1 AND room_id = $2 AND type = $3
"""
SELECT_GLOBAL_SINCE = """
SELECT type, content, stream_id FROM account_data
WHERE user_id = $1 AND stream_id > $2 ORDER BY stream_id
"""
SELECT_ROOM_SINCE = """
SELECT room_id, type, content, stream_id FROM room_account_data
WHERE user_id = $1 AND stream_id > $2 ORDER BY stream_id
"""
DELETE_GLOBAL_FOR_USER = "DELETE FROM account_data WHERE user_id = $1"
DELETE_ROOM_FOR_USER = "DELETE FROM room_account_data WHERE user_id = $1"


def _dump(content: dict[str, Any]) -> str:
    return json.dumps(content, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


class AccountDataStore:
    async def put_global(self, conn: Connection, user_id: str, type_: str,
                         content: dict[str, Any]) -> int:
        """Store and return the new stream position (taken in this same transaction)."""
        stream_id = await streams.next_position(conn, STREAM)
        await conn.execute(UPSERT_GLOBAL, user_id, type_, _dump(content), stream_id)
        return stream_id

    async def put_room(self, conn: Connection, user_id: str, room_id: str, type_: str,
                       content: dict[str, Any]) -> int:
        stream_id = await streams.next_position(conn, STREAM)
        await conn.execute(UPSERT_ROOM, user_id, room_id, type_, _dump(content), stream_id)
        return stream_id

    async def get_global(self, db: Database | Connection, user_id: str,
                         type_: str) -> dict[str, Any] | None:
        raw = await db.fetchval(SELECT_GLOBAL, user_id, type_)
        return json.loads(raw) if raw is not None else None

    async def get_room(self, db: Database | Connection, user_id: str, room_id: str,
                       type_: str) -> dict[str, Any] | None:
        raw = await db.fetchval(SELECT_ROOM, user_id, room_id, type_)
        return json.loads(raw) if raw is not None else None

    async def changes_since(self, db: Database | Connection, user_id: str,
                            since: int) -> list[AccountDataChange]:
        """Everything written after stream position `since` (0: everything), in order."""
        changes = [AccountDataChange(None, r["type"], json.loads(r["content"]), int(r["stream_id"]))
                   for r in await db.fetch(SELECT_GLOBAL_SINCE, user_id, since)]
        changes += [AccountDataChange(r["room_id"], r["type"], json.loads(r["content"]),
                                      int(r["stream_id"]))
                    for r in await db.fetch(SELECT_ROOM_SINCE, user_id, since)]
        return sorted(changes, key=lambda c: c.stream_id)

    async def delete_all(self, conn: Connection, user_id: str) -> None:
        await conn.execute(DELETE_GLOBAL_FOR_USER, user_id)
        await conn.execute(DELETE_ROOM_FOR_USER, user_id)
