"""`current_state`: each room's state after its forward extremities, for fast reads.

It mirrors the snapshot named by `rooms.current_snapshot_id` and is updated with a
delta in the transaction that persists the event changing it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from homeserver.storage.batch import is_postgres
from homeserver.storage.database import Connection

StateKey = tuple[str, str]
StateMap = dict[StateKey, str]

SELECT_ALL = "SELECT type, state_key, event_id FROM current_state WHERE room_id = $1"
SELECT_TYPE = "SELECT state_key, event_id FROM current_state WHERE room_id = $1 AND type = $2"
SELECT_ONE = """
SELECT event_id FROM current_state WHERE room_id = $1 AND type = $2 AND state_key = $3
"""
UPSERT = """
INSERT INTO current_state (room_id, type, state_key, event_id) VALUES ($1, $2, $3, $4)
ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id
"""
DELETE = "DELETE FROM current_state WHERE room_id = $1 AND type = $2 AND state_key = $3"
# Several keys in one statement: every (type, state_key) pair from the two lists, a
# superset of the wanted keys (the caller keeps its own); rooms have few state types.
SELECT_MANY_PG = """
SELECT type, state_key, event_id FROM current_state
WHERE room_id = $1 AND type = ANY($2::text[]) AND state_key = ANY($3::text[])
"""
SELECT_MANY_SQLITE = """
SELECT type, state_key, event_id FROM current_state
WHERE room_id = $1 AND type IN (SELECT value FROM json_each($2))
  AND state_key IN (SELECT value FROM json_each($3))
"""


class CurrentStateStore:
    async def get_state(self, conn: Connection, room_id: str) -> StateMap:
        return {(r["type"], r["state_key"]): r["event_id"] for r in await conn.fetch(SELECT_ALL, room_id)}

    async def get_state_of_type(self, conn: Connection, room_id: str, event_type: str) -> dict[str, str]:
        return {r["state_key"]: r["event_id"] for r in await conn.fetch(SELECT_TYPE, room_id, event_type)}

    async def get_entry(self, conn: Connection, room_id: str, event_type: str,
                        state_key: str) -> str | None:
        return await conn.fetchval(SELECT_ONE, room_id, event_type, state_key)  # type: ignore[no-any-return]

    async def get_entries(self, conn: Connection, room_id: str, keys: list[StateKey]) -> StateMap:
        wanted = set(keys)
        if len(wanted) == 1:
            (key,) = wanted
            event_id = await self.get_entry(conn, room_id, *key)
            return {} if event_id is None else {key: event_id}
        types = sorted({t for t, _ in wanted})
        state_keys = sorted({k for _, k in wanted})
        if is_postgres(conn):
            rows = await conn.fetch(SELECT_MANY_PG, room_id, types, state_keys)
        else:
            rows = await conn.fetch(SELECT_MANY_SQLITE, room_id, json.dumps(types),
                                    json.dumps(state_keys))
        found: StateMap = {}
        for r in rows:
            key = (r["type"], r["state_key"])
            if key in wanted:
                found[key] = r["event_id"]
        return found

    async def apply_delta(self, conn: Connection, room_id: str,
                          changes: Mapping[StateKey, str | None]) -> None:
        for (event_type, state_key), event_id in changes.items():
            if event_id is None:
                await conn.execute(DELETE, room_id, event_type, state_key)
            else:
                await conn.execute(UPSERT, room_id, event_type, state_key, event_id)
