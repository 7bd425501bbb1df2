"""Reads behind the user directory (POST /user_directory/search).

Who a user may find is derived from current room state at query time: the joined
members of rooms the searcher is joined to, and of rooms anyone may see into (public
join rule or world-readable history). Join rule and history visibility live in event
JSON, so reading them is the one dialect branch here.

A substring prefilter (`LIKE`) on user ID and display name keeps the rows returned
small; the service does the real word-prefix matching and ranking.
"""

from __future__ import annotations

import attrs

from homeserver.storage.batch import is_postgres
from homeserver.storage.database import Connection

_JSON_PG = "((e.json::jsonb) -> 'content' ->> '{}')"
_JSON_SQLITE = "json_extract(e.json, '$.content.{}')"

_QUERY = """
WITH visible_rooms AS (
    SELECT c.room_id FROM current_state c JOIN room_memberships m ON m.event_id = c.event_id
    WHERE c.type = 'm.room.member' AND c.state_key = $1 AND m.membership = 'join'
    UNION
    SELECT c.room_id FROM current_state c JOIN events e ON e.event_id = c.event_id
    WHERE c.state_key = '' AND (
        (c.type = 'm.room.join_rules' AND {join_rule} = 'public')
        OR (c.type = 'm.room.history_visibility' AND {history_visibility} = 'world_readable'))
)
SELECT m.user_id, c.room_id, m.stream_ordering,
       {displayname} AS displayname, {avatar_url} AS avatar_url
FROM current_state c
JOIN room_memberships m ON m.event_id = c.event_id
JOIN events e ON e.event_id = c.event_id
WHERE c.type = 'm.room.member' AND m.membership = 'join'
  AND c.room_id IN (SELECT room_id FROM visible_rooms)
  AND (LOWER(m.user_id) LIKE $2 ESCAPE '\\' OR LOWER({displayname}) LIKE $2 ESCAPE '\\')
"""


def _query(json_path: str) -> str:
    keys = ("join_rule", "history_visibility", "displayname", "avatar_url")
    return _QUERY.format(**{k: json_path.format(k) for k in keys})


SELECT_VISIBLE_MEMBERS_PG = _query(_JSON_PG)
SELECT_VISIBLE_MEMBERS_SQLITE = _query(_JSON_SQLITE)


@attrs.frozen
class VisibleMember:
    user_id: str
    room_id: str
    stream_ordering: int
    displayname: str | None
    avatar_url: str | None


def like_pattern(word: str) -> str:
    """`%word%` with LIKE's wildcards in `word` escaped."""
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class UserDirectoryStore:
    async def visible_members(self, conn: Connection, searcher: str,
                              pattern: str) -> list[VisibleMember]:
        """Joined memberships visible to `searcher` whose user ID or display name is
        LIKE `pattern` (lower case), one row per (user, room)."""
        sql = SELECT_VISIBLE_MEMBERS_PG if is_postgres(conn) else SELECT_VISIBLE_MEMBERS_SQLITE
        rows = await conn.fetch(sql, searcher, pattern)
        return [VisibleMember(r["user_id"], r["room_id"], int(r["stream_ordering"] or 0),
                              r["displayname"] if isinstance(r["displayname"], str) else None,
                              r["avatar_url"] if isinstance(r["avatar_url"], str) else None)
                for r in rows]
