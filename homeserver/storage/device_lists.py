"""The device-list stream: `device_list_changes` (a user's devices or cross-signing keys
changed) and `device_list_room_changes` (a user started or stopped being joined to a
room), both numbered on the stream "device_lists".
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from homeserver.storage.batch import fetch_for_ids
from homeserver.storage.database import Connection, Row


@attrs.frozen
class RoomChange:
    stream_id: int
    room_id: str
    user_id: str
    joined: bool


INSERT_CHANGE = """
INSERT INTO device_list_changes (stream_id, user_id) VALUES ($1, $2)
ON CONFLICT (stream_id, user_id) DO NOTHING
"""
SELECT_CHANGED = """
SELECT DISTINCT user_id FROM device_list_changes WHERE stream_id > $1 AND stream_id <= $2
"""
INSERT_ROOM_CHANGE = """
INSERT INTO device_list_room_changes (stream_id, room_id, user_id, joined) VALUES ($1, $2, $3, $4)
ON CONFLICT (stream_id, room_id, user_id) DO NOTHING
"""
_ROOM_CHANGE_COLUMNS = "stream_id, room_id, user_id, joined"
SELECT_USER_ROOM_CHANGES = f"""
SELECT {_ROOM_CHANGE_COLUMNS} FROM device_list_room_changes
WHERE user_id = $1 AND stream_id > $2 AND stream_id <= $3 ORDER BY stream_id
"""
_ROOMS_ROOM_CHANGES = f"""
SELECT {_ROOM_CHANGE_COLUMNS} FROM device_list_room_changes
WHERE room_id {{}} AND stream_id > $2 AND stream_id <= $3 ORDER BY stream_id
"""
ROOMS_ROOM_CHANGES_PG = _ROOMS_ROOM_CHANGES.format("= ANY($1::text[])")
ROOMS_ROOM_CHANGES_SQLITE = _ROOMS_ROOM_CHANGES.format("IN (SELECT value FROM json_each($1))")
# The membership the user had in the room before the event at stream ordering $3.
SELECT_PREVIOUS_MEMBERSHIP = """
SELECT membership FROM room_memberships
WHERE room_id = $1 AND user_id = $2 AND stream_ordering < $3
ORDER BY stream_ordering DESC LIMIT 1
"""
SELECT_JOINED_ROOMS = """
SELECT c.room_id FROM current_state c JOIN room_memberships m ON m.event_id = c.event_id
WHERE c.type = 'm.room.member' AND c.state_key = $1 AND m.membership = 'join'
"""
# Users joined to at least one room that $1 is joined to ($1 included).
SELECT_SHARING_USERS = """
SELECT DISTINCT c2.state_key AS user_id
FROM current_state c1
JOIN room_memberships m1 ON m1.event_id = c1.event_id
JOIN current_state c2 ON c2.room_id = c1.room_id AND c2.type = 'm.room.member'
JOIN room_memberships m2 ON m2.event_id = c2.event_id
WHERE c1.type = 'm.room.member' AND c1.state_key = $1
  AND m1.membership = 'join' AND m2.membership = 'join'
"""
_JOINED_MEMBERS = """
SELECT c.room_id, c.state_key AS user_id
FROM current_state c JOIN room_memberships m ON m.event_id = c.event_id
WHERE c.type = 'm.room.member' AND m.membership = 'join' AND c.room_id {}
"""
JOINED_MEMBERS_PG = _JOINED_MEMBERS.format("= ANY($1::text[])")
JOINED_MEMBERS_SQLITE = _JOINED_MEMBERS.format("IN (SELECT value FROM json_each($1))")


def _room_change(r: Row) -> RoomChange:
    return RoomChange(int(r["stream_id"]), r["room_id"], r["user_id"], bool(r["joined"]))


class DeviceListStore:
    async def add_changes(self, conn: Connection, stream_id: int, user_ids: Sequence[str]) -> None:
        if user_ids:
            await conn.executemany(INSERT_CHANGE, [(stream_id, u) for u in user_ids])

    async def changed_users(self, conn: Connection, low: int, high: int) -> set[str]:
        """Users with a device-list change in (low, high]."""
        return {r["user_id"] for r in await conn.fetch(SELECT_CHANGED, low, high)}

    async def add_room_change(self, conn: Connection, stream_id: int, room_id: str,
                              user_id: str, joined: bool) -> None:
        await conn.execute(INSERT_ROOM_CHANGE, stream_id, room_id, user_id, int(joined))

    async def room_changes_of_user(self, conn: Connection, user_id: str, low: int,
                                   high: int) -> list[RoomChange]:
        rows = await conn.fetch(SELECT_USER_ROOM_CHANGES, user_id, low, high)
        return [_room_change(r) for r in rows]

    async def room_changes_in_rooms(self, conn: Connection, room_ids: Sequence[str], low: int,
                                    high: int) -> list[RoomChange]:
        rows = await fetch_for_ids(conn, ROOMS_ROOM_CHANGES_PG, ROOMS_ROOM_CHANGES_SQLITE,
                                   list(room_ids), low, high)
        return [_room_change(r) for r in rows]

    async def previous_membership(self, conn: Connection, room_id: str, user_id: str,
                                  before_ordering: int) -> str | None:
        value = await conn.fetchval(SELECT_PREVIOUS_MEMBERSHIP, room_id, user_id, before_ordering)
        return None if value is None else str(value)

    async def joined_rooms(self, conn: Connection, user_id: str) -> set[str]:
        return {r["room_id"] for r in await conn.fetch(SELECT_JOINED_ROOMS, user_id)}

    async def users_sharing_a_room(self, conn: Connection, user_id: str) -> set[str]:
        return {r["user_id"] for r in await conn.fetch(SELECT_SHARING_USERS, user_id)}

    async def joined_members(self, conn: Connection,
                             room_ids: Sequence[str]) -> dict[str, set[str]]:
        """room -> users currently joined."""
        found: dict[str, set[str]] = {}
        rows = await fetch_for_ids(conn, JOINED_MEMBERS_PG, JOINED_MEMBERS_SQLITE, list(room_ids))
        for r in rows:
            found.setdefault(r["room_id"], set()).add(r["user_id"])
        return found
