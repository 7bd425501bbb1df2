"""Batched reads for /sync: each answers a question for every room of a sync at once, so
a sync costs a fixed number of queries whatever the number of rooms (no N+1).

Lists travel as one parameter: a PostgreSQL array, or JSON text that SQLite unpacks with
`json_each` (see storage/batch.py). Per-room windows `[room_id, low, high]` travel as
JSON on both engines. PostgreSQL reads each window with a LATERAL subquery; SQLite, which
has no LATERAL, with a correlated `IN (... LIMIT)` subquery over the unique
stream_ordering index. Both read only the rows they return, never a room's whole history.

Two answers never change once committed and are kept in bounded LRUs: which snapshots an
event sits between (`event_states`), and a snapshot's full state (`snapshot_states`).
Sync reads them outside any transaction, so what it caches is committed; the returned
maps are shared and must not be mutated.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence

import attrs

from homeserver.storage.batch import fetch_for_ids, is_postgres
from homeserver.storage.database import Connection, Row
from homeserver.storage.memberships import Membership

StateKey = tuple[str, str]
StateMap = dict[StateKey, str]

# --- the newest events of each room in (low, high] ----------------------------------

RECENT_EVENTS_PG = """
SELECT e.event_id, e.room_id, e.stream_ordering
FROM jsonb_array_elements($1::jsonb) AS w
CROSS JOIN LATERAL (
    SELECT event_id, room_id, stream_ordering FROM events
    WHERE room_id = w->>0 AND stream_ordering > (w->>1)::bigint
      AND stream_ordering <= (w->>2)::bigint AND rejected_reason IS NULL
    ORDER BY stream_ordering DESC LIMIT $2
) AS e
"""
RECENT_EVENTS_SQLITE = """
SELECT e.event_id, e.room_id, e.stream_ordering
FROM json_each($1) AS w JOIN events e ON e.stream_ordering IN (
    SELECT e2.stream_ordering FROM events e2
    WHERE e2.room_id = json_extract(w.value, '$[0]')
      AND e2.stream_ordering > json_extract(w.value, '$[1]')
      AND e2.stream_ordering <= json_extract(w.value, '$[2]')
      AND e2.rejected_reason IS NULL
    ORDER BY e2.stream_ordering DESC LIMIT $2
)
"""

# --- the state snapshot after the latest event at or before a position ---------------

SNAPSHOT_AT_PG = """
SELECT w->>0 AS room_id, (w->>1)::bigint AS position, s.after_snapshot_id
FROM jsonb_array_elements($1::jsonb) AS w
CROSS JOIN LATERAL (
    SELECT es.after_snapshot_id FROM events e JOIN event_state es ON es.event_id = e.event_id
    WHERE e.room_id = w->>0 AND e.stream_ordering <= (w->>1)::bigint
      AND e.rejected_reason IS NULL
    ORDER BY e.stream_ordering DESC LIMIT 1
) AS s
"""
SNAPSHOT_AT_SQLITE = """
SELECT json_extract(w.value, '$[0]') AS room_id, json_extract(w.value, '$[1]') AS position,
       es.after_snapshot_id
FROM json_each($1) AS w JOIN event_state es ON es.event_id = (
    SELECT e.event_id FROM events e
    WHERE e.room_id = json_extract(w.value, '$[0]')
      AND e.stream_ordering <= json_extract(w.value, '$[1]') AND e.rejected_reason IS NULL
    ORDER BY e.stream_ordering DESC LIMIT 1
)
"""

# --- per-event state snapshots -------------------------------------------------------

_EVENT_STATES = "SELECT event_id, before_snapshot_id, after_snapshot_id FROM event_state WHERE event_id "
EVENT_STATES_PG = _EVENT_STATES + "= ANY($1::text[])"
EVENT_STATES_SQLITE = _EVENT_STATES + "IN (SELECT value FROM json_each($1))"

# --- whole snapshots (each a bounded delta chain; see storage/state.py) --------------

_SNAPSHOTS = """
WITH RECURSIVE chain (origin, snapshot_id, parent_id, depth) AS (
    SELECT snapshot_id, snapshot_id, parent_id, 0 FROM state_snapshots WHERE snapshot_id {}
    UNION ALL
    SELECT c.origin, s.snapshot_id, s.parent_id, c.depth + 1
    FROM state_snapshots s JOIN chain c ON s.snapshot_id = c.parent_id
)
SELECT c.origin, c.depth, e.type, e.state_key, e.event_id
FROM chain c JOIN state_snapshot_entries e ON e.snapshot_id = c.snapshot_id
"""
SNAPSHOTS_PG = _SNAPSHOTS.format("= ANY($1::bigint[])")
SNAPSHOTS_SQLITE = _SNAPSHOTS.format("IN (SELECT value FROM json_each($1))")

# --- room membership summaries -------------------------------------------------------

# Each room's joined and invited counts, carried on every row, and its first members
# as in _HEROES (nobody left out): a RoomSummary in one statement. Every room with a
# member has a row (its first member), so no room's counts go missing.
_SUMMARY_MEMBERS = """
SELECT room_id, user_id, grp, joined, invited FROM (
    SELECT c.room_id, m.user_id, m.stream_ordering,
           CASE WHEN m.membership IN ('join', 'invite') THEN 0 ELSE 1 END AS grp,
           ROW_NUMBER() OVER (
               PARTITION BY c.room_id, CASE WHEN m.membership IN ('join', 'invite') THEN 0 ELSE 1 END
               ORDER BY m.stream_ordering) AS rn,
           SUM(CASE WHEN m.membership = 'join' THEN 1 ELSE 0 END)
               OVER (PARTITION BY c.room_id) AS joined,
           SUM(CASE WHEN m.membership = 'invite' THEN 1 ELSE 0 END)
               OVER (PARTITION BY c.room_id) AS invited
    FROM current_state c JOIN room_memberships m ON m.event_id = c.event_id
    WHERE c.type = 'm.room.member' AND c.room_id {}
) ranked WHERE rn <= $2
ORDER BY room_id, grp, stream_ordering
"""
SUMMARY_MEMBERS_PG = _SUMMARY_MEMBERS.format("= ANY($1::text[])")
SUMMARY_MEMBERS_SQLITE = _SUMMARY_MEMBERS.format("IN (SELECT value FROM json_each($1))")

# Joined/invited members first (rank 0), then the others, each by stream ordering; only
# the first few of each group are read.
_HEROES = """
SELECT room_id, user_id, grp FROM (
    SELECT c.room_id, m.user_id, m.stream_ordering,
           CASE WHEN m.membership IN ('join', 'invite') THEN 0 ELSE 1 END AS grp,
           ROW_NUMBER() OVER (
               PARTITION BY c.room_id, CASE WHEN m.membership IN ('join', 'invite') THEN 0 ELSE 1 END
               ORDER BY m.stream_ordering) AS rn
    FROM current_state c JOIN room_memberships m ON m.event_id = c.event_id
    WHERE c.type = 'm.room.member' AND c.state_key <> $2 AND c.room_id {}
) ranked WHERE rn <= $3
ORDER BY room_id, grp, stream_ordering
"""
HEROES_PG = _HEROES.format("= ANY($1::text[])")
HEROES_SQLITE = _HEROES.format("IN (SELECT value FROM json_each($1))")

# --- what history visibility needs: the user's memberships and visibility changes ----

_MEMBERSHIP_HISTORY = """
SELECT room_id, membership, stream_ordering FROM room_memberships
WHERE user_id = $2 AND stream_ordering IS NOT NULL AND room_id {}
ORDER BY stream_ordering
"""
MEMBERSHIP_HISTORY_PG = _MEMBERSHIP_HISTORY.format("= ANY($1::text[])")
MEMBERSHIP_HISTORY_SQLITE = _MEMBERSHIP_HISTORY.format("IN (SELECT value FROM json_each($1))")

_VISIBILITY_CHANGES = """
SELECT room_id, stream_ordering, json FROM events
WHERE type = 'm.room.history_visibility' AND state_key = '' AND rejected_reason IS NULL
  AND stream_ordering IS NOT NULL AND room_id {}
ORDER BY stream_ordering
"""
VISIBILITY_CHANGES_PG = _VISIBILITY_CHANGES.format("= ANY($1::text[])")
VISIBILITY_CHANGES_SQLITE = _VISIBILITY_CHANGES.format("IN (SELECT value FROM json_each($1))")

# --- the current memberships of several users (the syncs woken together) -------------

_MEMBERSHIPS_OF_USERS = """
SELECT m.room_id, m.user_id, m.membership, m.event_id, m.sender, m.stream_ordering, m.forgotten
FROM current_state c JOIN room_memberships m ON m.event_id = c.event_id
WHERE c.type = 'm.room.member' AND c.state_key {}
ORDER BY m.stream_ordering
"""
MEMBERSHIPS_OF_USERS_PG = _MEMBERSHIPS_OF_USERS.format("= ANY($1::text[])")
MEMBERSHIPS_OF_USERS_SQLITE = _MEMBERSHIPS_OF_USERS.format("IN (SELECT value FROM json_each($1))")

# --- users whose presence a user may see ---------------------------------------------

SHARED_ROOM_USERS = """
SELECT DISTINCT c2.state_key AS user_id
FROM current_state c1
JOIN room_memberships m1 ON m1.event_id = c1.event_id
JOIN current_state c2 ON c2.room_id = c1.room_id AND c2.type = 'm.room.member'
JOIN room_memberships m2 ON m2.event_id = c2.event_id
WHERE c1.type = 'm.room.member' AND c1.state_key = $1
  AND m1.membership = 'join' AND m2.membership = 'join'
"""


@attrs.frozen
class Window:
    room_id: str
    low: int  # exclusive
    high: int  # inclusive


@attrs.frozen
class RecentEvent:
    event_id: str
    room_id: str
    stream_ordering: int


@attrs.frozen
class SummaryMembers:
    """A room's member counts (`join`, `invite`; absent when zero) and its first
    joined/invited members and first other members, by stream ordering."""

    counts: dict[str, int]
    present: list[str]
    others: list[str]


@attrs.frozen
class MembershipChange:
    room_id: str
    membership: str
    stream_ordering: int


async def _fetch_json_windows(conn: Connection, pg_sql: str, sqlite_sql: str,
                              windows: list[list[object]], *args: object) -> list[Row]:
    if not windows:
        return []
    sql = pg_sql if is_postgres(conn) else sqlite_sql
    return await conn.fetch(sql, json.dumps(windows), *args)


async def _fetch_for_ints(conn: Connection, pg_sql: str, sqlite_sql: str,
                          ids: Sequence[int]) -> list[Row]:
    if not ids:
        return []
    if is_postgres(conn):
        return await conn.fetch(pg_sql, list(ids))
    return await conn.fetch(sqlite_sql, json.dumps(list(ids)))


# Bounds of the caches: state entries summed over the cached snapshots (a 2,000-member
# room's snapshot is 2,000 of them), and events.
SNAPSHOT_CACHE_ENTRIES = 50_000
EVENT_STATE_CACHE_SIZE = 20_000


class SyncQueries:
    def __init__(self, *, snapshot_cache_entries: int = SNAPSHOT_CACHE_ENTRIES,
                 event_state_cache_size: int = EVENT_STATE_CACHE_SIZE):
        self._snapshots: OrderedDict[int, StateMap] = OrderedDict()
        self._snapshot_entries = 0
        self._max_snapshot_entries = snapshot_cache_entries
        self._event_states: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._max_event_states = event_state_cache_size

    async def recent_events(self, conn: Connection, windows: Sequence[Window],
                            limit: int) -> dict[str, list[RecentEvent]]:
        """room -> its newest `limit` timeline events in (low, high], newest first."""
        rows = await _fetch_json_windows(conn, RECENT_EVENTS_PG, RECENT_EVENTS_SQLITE,
                                         [[w.room_id, w.low, w.high] for w in windows], limit)
        found: dict[str, list[RecentEvent]] = {}
        for r in rows:
            found.setdefault(r["room_id"], []).append(
                RecentEvent(r["event_id"], r["room_id"], int(r["stream_ordering"])))
        for events in found.values():
            events.sort(key=lambda e: e.stream_ordering, reverse=True)
        return found

    async def snapshots_at(self, conn: Connection,
                           points: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """(room, position) -> the state snapshot after the room's latest event at or
        before that position (absent when the room has no event that early)."""
        rows = await _fetch_json_windows(conn, SNAPSHOT_AT_PG, SNAPSHOT_AT_SQLITE,
                                         [[room, pos] for room, pos in dict.fromkeys(points)])
        return {(r["room_id"], int(r["position"])): int(r["after_snapshot_id"]) for r in rows}

    def remember_event_state(self, event_id: str, before: int, after: int) -> None:
        """An event this process has just committed: its snapshots, as `event_states`
        would read them (they never change once committed)."""
        self._event_states[event_id] = (before, after)
        self._event_states.move_to_end(event_id)
        if len(self._event_states) > self._max_event_states:
            self._event_states.popitem(last=False)

    async def event_states(self, conn: Connection,
                           event_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """event -> (snapshot before, snapshot after)."""
        found: dict[str, tuple[int, int]] = {}
        missing = []
        for event_id in dict.fromkeys(event_ids):
            cached = self._event_states.get(event_id)
            if cached is None:
                missing.append(event_id)
            else:
                self._event_states.move_to_end(event_id)
                found[event_id] = cached
        rows = await fetch_for_ids(conn, EVENT_STATES_PG, EVENT_STATES_SQLITE, missing)
        for r in rows:
            pair = (int(r["before_snapshot_id"]), int(r["after_snapshot_id"]))
            found[r["event_id"]] = self._event_states[r["event_id"]] = pair
            if len(self._event_states) > self._max_event_states:
                self._event_states.popitem(last=False)
        return found

    async def snapshot_states(self, conn: Connection,
                              snapshot_ids: Sequence[int]) -> dict[int, StateMap]:
        """snapshot -> its full state, for several snapshots in one query."""
        states: dict[int, StateMap] = {}
        missing = []
        for snapshot_id in dict.fromkeys(snapshot_ids):
            cached = self._snapshots.get(snapshot_id)
            if cached is None:
                missing.append(snapshot_id)
            else:
                self._snapshots.move_to_end(snapshot_id)
                states[snapshot_id] = cached
        if missing:
            loaded = await self._load_snapshots(conn, missing)
            for snapshot_id, state in loaded.items():
                self._cache_snapshot(snapshot_id, state)
            states.update(loaded)
        return states

    def _cache_snapshot(self, snapshot_id: int, state: StateMap) -> None:
        if len(state) > self._max_snapshot_entries // 4:
            return  # one huge room would push everything else out
        self._snapshots[snapshot_id] = state
        self._snapshot_entries += len(state)
        while self._snapshot_entries > self._max_snapshot_entries:
            _, dropped = self._snapshots.popitem(last=False)
            self._snapshot_entries -= len(dropped)

    async def _load_snapshots(self, conn: Connection, snapshot_ids: list[int]) -> dict[int, StateMap]:
        rows = await _fetch_for_ints(conn, SNAPSHOTS_PG, SNAPSHOTS_SQLITE, snapshot_ids)
        # The nearest link of a chain wins; a NULL event ID there deletes the key.
        nearest: dict[int, dict[StateKey, tuple[int, str | None]]] = {}
        for r in rows:
            entries = nearest.setdefault(int(r["origin"]), {})
            key = (r["type"], r["state_key"])
            depth = int(r["depth"])
            if key not in entries or depth < entries[key][0]:
                entries[key] = (depth, r["event_id"])
        states: dict[int, StateMap] = {s: {} for s in snapshot_ids}
        for origin, entries in nearest.items():
            states[origin] = {k: v for k, (_, v) in entries.items() if v is not None}
        return states

    async def summary_members(self, conn: Connection, room_ids: Sequence[str],
                              per_group: int) -> dict[str, SummaryMembers]:
        """room -> its member counts and first `per_group` members of each group (current
        state); rooms without members are absent."""
        rows = await fetch_for_ids(conn, SUMMARY_MEMBERS_PG, SUMMARY_MEMBERS_SQLITE,
                                   list(room_ids), per_group)
        found: dict[str, SummaryMembers] = {}
        for r in rows:
            room = found.get(r["room_id"])
            if room is None:
                counts = {k: n for k, n in (("join", int(r["joined"])),
                                            ("invite", int(r["invited"]))) if n}
                room = found[r["room_id"]] = SummaryMembers(counts, [], [])
            (room.others if r["grp"] else room.present).append(r["user_id"])
        return found

    async def hero_candidates(self, conn: Connection, room_ids: Sequence[str], user_id: str,
                              per_group: int) -> dict[str, tuple[list[str], list[str]]]:
        """room -> (first joined/invited members, first other members), each at most
        `per_group`, by stream ordering, `user_id` left out."""
        rows = await fetch_for_ids(conn, HEROES_PG, HEROES_SQLITE, list(room_ids), user_id,
                                   per_group)
        found: dict[str, tuple[list[str], list[str]]] = {}
        for r in rows:
            groups = found.setdefault(r["room_id"], ([], []))
            groups[int(r["grp"])].append(r["user_id"])
        return found

    async def membership_history(self, conn: Connection, user_id: str,
                                 room_ids: Sequence[str]) -> list[MembershipChange]:
        """Every membership change of the user in these rooms, in stream order."""
        rows = await fetch_for_ids(conn, MEMBERSHIP_HISTORY_PG, MEMBERSHIP_HISTORY_SQLITE,
                                   list(room_ids), user_id)
        return [MembershipChange(r["room_id"], r["membership"], int(r["stream_ordering"]))
                for r in rows]

    async def visibility_changes(self, conn: Connection,
                                 room_ids: Sequence[str]) -> dict[str, list[tuple[int, str]]]:
        """room -> [(stream ordering, history_visibility)] in stream order."""
        rows = await fetch_for_ids(conn, VISIBILITY_CHANGES_PG, VISIBILITY_CHANGES_SQLITE,
                                   list(room_ids))
        found: dict[str, list[tuple[int, str]]] = {}
        for r in rows:
            content = json.loads(r["json"]).get("content")
            value = content.get("history_visibility") if isinstance(content, dict) else None
            found.setdefault(r["room_id"], []).append(
                (int(r["stream_ordering"]), value if isinstance(value, str) else "shared"))
        return found

    async def memberships_of_users(self, conn: Connection,
                                   user_ids: Sequence[str]) -> dict[str, list[Membership]]:
        """user -> their current membership in every room we know of, oldest first (as
        MembershipStore.rooms_for_user, for several users in one query)."""
        rows = await fetch_for_ids(conn, MEMBERSHIPS_OF_USERS_PG, MEMBERSHIPS_OF_USERS_SQLITE,
                                   list(dict.fromkeys(user_ids)))
        found: dict[str, list[Membership]] = {u: [] for u in user_ids}
        for r in rows:
            found[r["user_id"]].append(Membership(
                r["room_id"], r["user_id"], r["membership"], r["event_id"], r["sender"],
                r["stream_ordering"], bool(r["forgotten"])))
        return found

    async def shared_room_users(self, conn: Connection, user_id: str) -> set[str]:
        """Users joined to at least one room the user is joined to (the user included)."""
        return {r["user_id"] for r in await conn.fetch(SHARED_ROOM_USERS, user_id)}
