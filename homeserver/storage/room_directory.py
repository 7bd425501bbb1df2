"""Reads behind the published room directory (GET/POST /publicRooms).

The published flag itself is `rooms.is_public` (storage/rooms.py); a room's directory
entry is derived from its current state, read here for all published rooms at once so
that listing the directory costs two queries, whatever the number of rooms.
"""

from __future__ import annotations

from homeserver.storage.database import Connection

# The state events a directory entry is made of (all with an empty state key).
ENTRY_STATE_TYPES = (
    "m.room.create", "m.room.name", "m.room.topic", "m.room.canonical_alias",
    "m.room.avatar", "m.room.join_rules", "m.room.history_visibility", "m.room.guest_access",
)

SELECT_PUBLISHED_STATE = """
SELECT c.room_id, c.type, c.event_id FROM rooms r
JOIN current_state c ON c.room_id = r.room_id
WHERE r.is_public = 1 AND c.state_key = ''
  AND c.type IN ('m.room.create', 'm.room.name', 'm.room.topic', 'm.room.canonical_alias',
                 'm.room.avatar', 'm.room.join_rules', 'm.room.history_visibility',
                 'm.room.guest_access')
"""
COUNT_PUBLISHED_JOINED = """
SELECT c.room_id, COUNT(*) AS joined FROM rooms r
JOIN current_state c ON c.room_id = r.room_id
JOIN room_memberships m ON m.event_id = c.event_id
WHERE r.is_public = 1 AND c.type = 'm.room.member' AND m.membership = 'join'
GROUP BY c.room_id
"""
SELECT_PUBLISHED = "SELECT room_id FROM rooms WHERE is_public = 1"


class RoomDirectoryStore:
    async def published_rooms(self, conn: Connection) -> list[str]:
        return [r["room_id"] for r in await conn.fetch(SELECT_PUBLISHED)]

    async def published_state(self, conn: Connection) -> dict[str, dict[str, str]]:
        """room_id -> event type -> event ID of the entry's current state events."""
        found: dict[str, dict[str, str]] = {}
        for r in await conn.fetch(SELECT_PUBLISHED_STATE):
            found.setdefault(r["room_id"], {})[r["type"]] = r["event_id"]
        return found

    async def joined_counts(self, conn: Connection) -> dict[str, int]:
        """room_id -> number of joined members, for published rooms with any."""
        return {r["room_id"]: int(r["joined"]) for r in await conn.fetch(COUNT_PUBLISHED_JOINED)}
