"""The `rooms` table and local room aliases."""

from __future__ import annotations

import attrs

from homeserver.storage.database import Connection


@attrs.frozen
class RoomRow:
    room_id: str
    room_version: str
    creator: str
    created_ts: int
    is_public: bool
    current_snapshot_id: int | None


INSERT_ROOM = """
INSERT INTO rooms (room_id, room_version, creator, created_ts, is_public) VALUES ($1, $2, $3, $4, $5)
"""
SELECT_ROOM = """
SELECT room_id, room_version, creator, created_ts, is_public, current_snapshot_id
FROM rooms WHERE room_id = $1
"""
SET_PUBLIC = "UPDATE rooms SET is_public = $2 WHERE room_id = $1"
SET_CURRENT_SNAPSHOT = "UPDATE rooms SET current_snapshot_id = $2 WHERE room_id = $1"
SELECT_PUBLIC = "SELECT room_id FROM rooms WHERE is_public = 1 ORDER BY created_ts"

INSERT_ALIAS = """
INSERT INTO room_aliases (room_alias, room_id, creator, created_ts) VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING
"""
SELECT_ALIAS = "SELECT room_id, creator FROM room_aliases WHERE room_alias = $1"
SELECT_ROOM_ALIASES = "SELECT room_alias FROM room_aliases WHERE room_id = $1 ORDER BY room_alias"
DELETE_ALIAS = "DELETE FROM room_aliases WHERE room_alias = $1"
MOVE_ALIASES = "UPDATE room_aliases SET room_id = $2 WHERE room_id = $1"


class RoomStore:
    async def insert(self, conn: Connection, room_id: str, room_version: str, creator: str,
                     created_ts: int, is_public: bool = False) -> None:
        await conn.execute(INSERT_ROOM, room_id, room_version, creator, created_ts, 1 if is_public else 0)

    async def get(self, conn: Connection, room_id: str) -> RoomRow | None:
        row = await conn.fetchrow(SELECT_ROOM, room_id)
        if row is None:
            return None
        return RoomRow(row["room_id"], row["room_version"], row["creator"], row["created_ts"],
                       bool(row["is_public"]), row["current_snapshot_id"])

    async def set_public(self, conn: Connection, room_id: str, is_public: bool) -> None:
        await conn.execute(SET_PUBLIC, room_id, 1 if is_public else 0)

    async def set_current_snapshot(self, conn: Connection, room_id: str, snapshot_id: int) -> None:
        await conn.execute(SET_CURRENT_SNAPSHOT, room_id, snapshot_id)

    async def public_rooms(self, conn: Connection) -> list[str]:
        return [r["room_id"] for r in await conn.fetch(SELECT_PUBLIC)]


@attrs.frozen
class AliasRow:
    room_id: str
    creator: str


class AliasStore:
    async def create(self, conn: Connection, alias: str, room_id: str, creator: str,
                     created_ts: int) -> bool:
        """False when the alias is taken."""
        return await conn.execute(INSERT_ALIAS, alias, room_id, creator, created_ts) == 1

    async def get(self, conn: Connection, alias: str) -> AliasRow | None:
        row = await conn.fetchrow(SELECT_ALIAS, alias)
        return None if row is None else AliasRow(row["room_id"], row["creator"])

    async def for_room(self, conn: Connection, room_id: str) -> list[str]:
        return [r["room_alias"] for r in await conn.fetch(SELECT_ROOM_ALIASES, room_id)]

    async def delete(self, conn: Connection, alias: str) -> bool:
        return await conn.execute(DELETE_ALIAS, alias) == 1

    async def move(self, conn: Connection, old_room_id: str, new_room_id: str) -> None:
        """Point every alias of a room at its replacement (room upgrades)."""
        await conn.execute(MOVE_ALIASES, old_room_id, new_room_id)
