"""`room_memberships`: every m.room.member event, indexed by user and room.

The current membership is the row whose event is in `current_state`, so membership
queries never parse event JSON.
"""

from __future__ import annotations

import attrs

from homeserver.storage.database import Connection, Row


@attrs.frozen
class Membership:
    room_id: str
    user_id: str
    membership: str
    event_id: str
    sender: str
    stream_ordering: int | None
    forgotten: bool


_COLUMNS = "m.room_id, m.user_id, m.membership, m.event_id, m.sender, m.stream_ordering, m.forgotten"

INSERT = """
INSERT INTO room_memberships (event_id, room_id, user_id, sender, membership, stream_ordering)
VALUES ($1, $2, $3, $4, $5, $6)
"""
SELECT_FOR_USER = f"""
SELECT {_COLUMNS} FROM current_state c JOIN room_memberships m ON m.event_id = c.event_id
WHERE c.type = 'm.room.member' AND c.state_key = $1
ORDER BY m.stream_ordering
"""
SELECT_ONE = f"""
SELECT {_COLUMNS} FROM current_state c JOIN room_memberships m ON m.event_id = c.event_id
WHERE c.room_id = $1 AND c.type = 'm.room.member' AND c.state_key = $2
"""
SELECT_FOR_ROOM = f"""
SELECT {_COLUMNS} FROM current_state c JOIN room_memberships m ON m.event_id = c.event_id
WHERE c.room_id = $1 AND c.type = 'm.room.member'
ORDER BY m.user_id
"""
SELECT_JOINED = """
SELECT m.user_id, m.event_id FROM current_state c JOIN room_memberships m ON m.event_id = c.event_id
WHERE c.room_id = $1 AND c.type = 'm.room.member' AND m.membership = 'join'
"""
SELECT_BY_EVENT = f"SELECT {_COLUMNS} FROM room_memberships m WHERE m.event_id = $1"
FORGET = "UPDATE room_memberships SET forgotten = 1 WHERE room_id = $1 AND user_id = $2"
# A new membership event un-forgets the room (e.g. re-joining), so only the latest counts.
SELECT_LATEST_FOR_USER_ROOM = f"""
SELECT {_COLUMNS} FROM room_memberships m
WHERE m.room_id = $1 AND m.user_id = $2 ORDER BY m.stream_ordering DESC LIMIT 1
"""


def _row(r: Row) -> Membership:
    return Membership(r["room_id"], r["user_id"], r["membership"], r["event_id"], r["sender"],
                      r["stream_ordering"], bool(r["forgotten"]))


class MembershipStore:
    async def insert(self, conn: Connection, *, event_id: str, room_id: str, user_id: str,
                     sender: str, membership: str, stream_ordering: int | None) -> None:
        await conn.execute(INSERT, event_id, room_id, user_id, sender, membership, stream_ordering)

    async def rooms_for_user(self, conn: Connection, user_id: str,
                             memberships: tuple[str, ...] | None = None) -> list[Membership]:
        """The user's current membership in every room we know of, oldest first."""
        rows = [_row(r) for r in await conn.fetch(SELECT_FOR_USER, user_id)]
        return rows if memberships is None else [m for m in rows if m.membership in memberships]

    async def get(self, conn: Connection, room_id: str, user_id: str) -> Membership | None:
        """The user's current membership in the room."""
        row = await conn.fetchrow(SELECT_ONE, room_id, user_id)
        return None if row is None else _row(row)

    async def members(self, conn: Connection, room_id: str,
                      memberships: tuple[str, ...] | None = None) -> list[Membership]:
        rows = [_row(r) for r in await conn.fetch(SELECT_FOR_ROOM, room_id)]
        return rows if memberships is None else [m for m in rows if m.membership in memberships]

    async def joined(self, conn: Connection, room_id: str) -> dict[str, str]:
        """user ID -> m.room.member event ID of the room's joined members (a lighter
        read than `members` for big rooms: two columns, no row objects)."""
        return {r[0]: r[1] for r in await conn.fetch(SELECT_JOINED, room_id)}

    async def by_event(self, conn: Connection, event_id: str) -> Membership | None:
        row = await conn.fetchrow(SELECT_BY_EVENT, event_id)
        return None if row is None else _row(row)

    async def forget(self, conn: Connection, room_id: str, user_id: str) -> None:
        await conn.execute(FORGET, room_id, user_id)

    async def is_forgotten(self, conn: Connection, room_id: str, user_id: str) -> bool:
        row = await conn.fetchrow(SELECT_LATEST_FOR_USER_ROOM, room_id, user_id)
        return row is not None and bool(row["forgotten"])
