"""The event graph: PDUs, prev/auth edges, forward extremities and redactions.

Events are stored in federation format as canonical JSON; the room version comes from
the `rooms` row, so every read joins it (a PDU cannot be interpreted without it).

Parsed events are kept in a bounded LRU by event ID: a row never changes once committed
(redactions are rows of their own, applied when an event is served, see
rooms/event_loader.py), so a cached event needs no invalidation. Only rows known to be
committed enter it: timeline events at or below the highest events-stream position a
reader has seen outside any transaction (`note_committed`). A row read inside a
transaction may still be rolled back, and an outlier has no position to vouch for it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence

import attrs

from homeserver.events.canonical_json import decode_canonical_json
from homeserver.events.pdu import Pdu
from homeserver.events.room_versions import get_room_version
from homeserver.storage.batch import fetch_for_ids, is_postgres
from homeserver.storage.database import Connection, Row


@attrs.frozen
class StoredEvent:
    pdu: Pdu
    # None for outliers, which are not part of any timeline.
    stream_ordering: int | None
    outlier: bool
    # The state event this one replaced (same type and state key), if any.
    replaces_state: str | None

    @property
    def event_id(self) -> str:
        return self.pdu.event_id


@attrs.frozen
class Redaction:
    redaction_id: str
    redacts: str
    # The redaction's sender had the redact level; else it applies to same-server events only.
    validated: bool


_COLUMNS = (
    "e.event_id, e.json, e.stream_ordering, e.outlier, e.rejected_reason, e.replaces_state,"
    " r.room_version"
)

INSERT_EVENT = """
INSERT INTO events (event_id, room_id, stream_ordering, depth, type, state_key, sender,
                    origin_server_ts, json, rejected_reason, outlier, replaces_state)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
"""
INSERT_EDGE = "INSERT INTO event_edges (event_id, prev_event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
INSERT_AUTH = "INSERT INTO event_auth (event_id, auth_event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
SELECT_ONE = f"SELECT {_COLUMNS} FROM events e JOIN rooms r ON r.room_id = e.room_id WHERE e.event_id = $1"
# Each event and its room looked up by key, from an array the planner cannot see into:
# PostgreSQL keeps one generic plan (like SELECT_REDACTIONS_PG below) instead of planning
# every event cache miss anew, and that plan, even when made on an empty database, reads
# no table whole (a plain join's did: tests/storage/test_generic_plans.py).
SELECT_MANY_PG = f"""
SELECT {_COLUMNS}
FROM unnest((SELECT $1::text[])::text[]) AS k(event_id)
CROSS JOIN LATERAL (SELECT * FROM events e WHERE e.event_id = k.event_id LIMIT 1) e
CROSS JOIN LATERAL (SELECT r.room_version FROM rooms r WHERE r.room_id = e.room_id LIMIT 1) r
"""
SELECT_MANY_SQLITE = (
    f"SELECT {_COLUMNS} FROM events e JOIN rooms r ON r.room_id = e.room_id"
    " WHERE e.event_id IN (SELECT value FROM json_each($1))"
)
# Room timeline by stream ordering: (from, to] ascending, or [to, from) descending.
SELECT_STREAM_FORWARD = f"""
SELECT {_COLUMNS} FROM events e JOIN rooms r ON r.room_id = e.room_id
WHERE e.room_id = $1 AND e.stream_ordering > $2 AND e.stream_ordering <= $3
  AND e.rejected_reason IS NULL
ORDER BY e.stream_ordering ASC LIMIT $4
"""
SELECT_STREAM_BACKWARD = f"""
SELECT {_COLUMNS} FROM events e JOIN rooms r ON r.room_id = e.room_id
WHERE e.room_id = $1 AND e.stream_ordering <= $2 AND e.stream_ordering > $3
  AND e.rejected_reason IS NULL
ORDER BY e.stream_ordering DESC LIMIT $4
"""
# Every room's timeline events in (from, to], oldest first: what a wake-up brings.
SELECT_STREAM_RANGE = f"""
SELECT {_COLUMNS} FROM events e JOIN rooms r ON r.room_id = e.room_id
WHERE e.stream_ordering > $1 AND e.stream_ordering <= $2 AND e.rejected_reason IS NULL
ORDER BY e.stream_ordering ASC LIMIT $3
"""
SELECT_LAST_AT = """
SELECT event_id FROM events
WHERE room_id = $1 AND stream_ordering <= $2 AND rejected_reason IS NULL
ORDER BY stream_ordering DESC LIMIT 1
"""
SELECT_EXTREMITIES = """
SELECT f.event_id FROM forward_extremities f JOIN events e ON e.event_id = f.event_id
WHERE f.room_id = $1 ORDER BY e.depth DESC, e.stream_ordering DESC
"""
INSERT_EXTREMITY = "INSERT INTO forward_extremities (room_id, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
DELETE_EXTREMITY = "DELETE FROM forward_extremities WHERE room_id = $1 AND event_id = $2"
REPLACE_EXTREMITY = """
UPDATE forward_extremities SET event_id = $3 WHERE room_id = $1 AND event_id = $2
"""
INSERT_REDACTION = """
INSERT INTO redactions (event_id, redacts, room_id, validated) VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING
"""
# Why a LATERAL ... LIMIT 1 rather than a join on PostgreSQL: asyncpg prepares each
# statement once per connection, and PostgreSQL may keep a generic plan made while
# `events` was nearly empty. For a plain join that plan was a sequential scan of
# `events` (the cheapest way through a few rows), which then read every event of a
# growing room on each /sync: 1-2 ms after 2,000 messages. The LATERAL subquery cannot
# be flattened into a join, so every plan, generic or not, looks the redaction's event
# up by primary key (tests/storage/test_generic_plans.py).
# Why the array goes through a scalar subquery (an InitPlan): no plan then sees its
# values, so a custom plan costs what the generic one does and PostgreSQL keeps the
# generic plan after five executions. With the bare parameter each custom plan looked
# cheaper (it knew the array's length) and the statement was planned anew every time
# (0.12 -> 0.09 ms per read here; more for storage/relations.py's union).
SELECT_REDACTIONS_PG = """
SELECT d.event_id, d.redacts, d.validated FROM redactions d
CROSS JOIN LATERAL (SELECT e.stream_ordering FROM events e
                    WHERE e.event_id = d.event_id AND e.rejected_reason IS NULL LIMIT 1) e
WHERE d.redacts = ANY((SELECT $1::text[])::text[])
ORDER BY e.stream_ordering
"""
SELECT_REDACTIONS_SQLITE = """
SELECT d.event_id, d.redacts, d.validated FROM redactions d
JOIN events e ON e.event_id = d.event_id
WHERE e.rejected_reason IS NULL AND d.redacts IN (SELECT value FROM json_each($1))
ORDER BY e.stream_ordering
"""


def _row_to_event(row: Row) -> StoredEvent:
    room_version = get_room_version(row["room_version"])
    assert room_version is not None, "rooms row holds an unknown version"
    pdu = Pdu(decode_canonical_json(row["json"]), room_version, row["event_id"])
    pdu.rejected_reason = row["rejected_reason"]
    return StoredEvent(pdu=pdu, stream_ordering=row["stream_ordering"],
                       outlier=bool(row["outlier"]), replaces_state=row["replaces_state"])


def room_lock_key(room_id: str) -> int:
    """A signed 64-bit advisory-lock key for a room (any stable hash will do)."""
    return int.from_bytes(hashlib.sha256(room_id.encode()).digest()[:8], "big", signed=True)


async def update_extremities(conn: Connection, room_id: str, *, remove: Sequence[str],
                             add: Sequence[str]) -> None:
    """Forward extremities `remove` are gone and `add` are new (also for room_batch.py)."""
    if len(remove) == 1 and len(add) == 1:
        # The usual step of a linear room: one statement instead of two.
        if await conn.execute(REPLACE_EXTREMITY, room_id, remove[0], add[0]):
            return
        remove = []
    if remove:
        await conn.executemany(DELETE_EXTREMITY, [(room_id, e) for e in remove])
    if add:
        await conn.executemany(INSERT_EXTREMITY, [(room_id, e) for e in add])


# About 2 KB each (parsed JSON): the default keeps a few thousand hot events, enough for
# the timelines and state of a busy user's initial sync, in a few tens of MB at most.
DEFAULT_CACHE_SIZE = 10_000


class EventStore:
    def __init__(self, cache_size: int = DEFAULT_CACHE_SIZE):
        self._cache: OrderedDict[str, StoredEvent] = OrderedDict()
        self._cache_size = cache_size
        self._committed = 0

    def note_committed(self, position: int) -> None:
        """Events-stream `position` was read outside any transaction: every timeline
        event at or below it is committed for good, so it may be cached."""
        if position > self._committed:
            self._committed = position

    def remember_committed(self, events: Sequence[tuple[Pdu, int]]) -> None:
        """Timeline events (not state) this process has just committed, at their stream
        positions: cached as if read back. Every position up to theirs is committed too
        (positions become visible in order, storage/streams.py)."""
        if not events:
            return
        self.note_committed(max(ordering for _, ordering in events))
        for pdu, ordering in events:
            self._remember(StoredEvent(pdu=pdu, stream_ordering=ordering, outlier=False,
                                       replaces_state=None))

    def cached(self, event_id: str) -> StoredEvent | None:
        """The event if it is in the cache (no query)."""
        event = self._cache.get(event_id)
        if event is not None:
            self._cache.move_to_end(event_id)
        return event

    def _remember(self, event: StoredEvent) -> None:
        position = event.stream_ordering
        if position is None or position > self._committed or event.outlier:
            return
        self._cache[event.event_id] = event
        self._cache.move_to_end(event.event_id)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def rows_to_events(self, rows: Sequence[Row]) -> list[StoredEvent]:
        """Rows selected with this module's event columns, parsed (or taken from the
        cache) and remembered."""
        out = []
        for row in rows:
            event = self.cached(row["event_id"])
            if event is None:
                event = _row_to_event(row)
                self._remember(event)
            out.append(event)
        return out

    def lock_is_a_round_trip(self, conn: Connection) -> bool:
        """Whether `lock_room` sends a statement (else it returns at once)."""
        return is_postgres(conn)

    async def lock_room(self, conn: Connection, room_id: str) -> None:
        """Serialise writers of one room across processes until the transaction ends.
        SQLite needs nothing: its single write transaction already serialises them."""
        if is_postgres(conn):
            await conn.advisory_lock(room_lock_key(room_id))  # type: ignore[attr-defined]

    async def insert(self, conn: Connection, pdu: Pdu, *, stream_ordering: int | None,
                     outlier: bool = False, replaces_state: str | None = None) -> None:
        """The event row plus its prev and auth edges."""
        await conn.execute(
            INSERT_EVENT, pdu.event_id, pdu.room_id, stream_ordering, pdu.depth, pdu.type,
            pdu.state_key, pdu.sender, pdu.origin_server_ts,
            pdu.canonical_json().decode(), pdu.rejected_reason,
            1 if outlier else 0, replaces_state,
        )
        if pdu.prev_event_ids:
            await conn.executemany(INSERT_EDGE, [(pdu.event_id, p) for p in pdu.prev_event_ids])
        if pdu.auth_event_ids:
            await conn.executemany(INSERT_AUTH, [(pdu.event_id, a) for a in pdu.auth_event_ids])

    async def get(self, conn: Connection, event_id: str) -> StoredEvent | None:
        event = self.cached(event_id)
        if event is not None:
            return event
        row = await conn.fetchrow(SELECT_ONE, event_id)
        return None if row is None else self.rows_to_events([row])[0]

    async def get_many(self, conn: Connection, event_ids: Sequence[str]) -> dict[str, StoredEvent]:
        """The events we have among `event_ids` (missing ones are absent from the result)."""
        found: dict[str, StoredEvent] = {}
        missing = []
        for event_id in dict.fromkeys(event_ids):
            event = self.cached(event_id)
            if event is None:
                missing.append(event_id)
            else:
                found[event_id] = event
        if missing:
            rows = await fetch_for_ids(conn, SELECT_MANY_PG, SELECT_MANY_SQLITE, missing)
            found.update((e.event_id, e) for e in self.rows_to_events(rows))
        return found

    async def get_pdus(self, conn: Connection, event_ids: Sequence[str]) -> dict[str, Pdu]:
        return {eid: ev.pdu for eid, ev in (await self.get_many(conn, event_ids)).items()}

    async def room_events_forward(self, conn: Connection, room_id: str, from_exclusive: int,
                                  to_inclusive: int, limit: int) -> list[StoredEvent]:
        """Timeline events with `from < stream_ordering <= to`, oldest first."""
        rows = await conn.fetch(SELECT_STREAM_FORWARD, room_id, from_exclusive, to_inclusive, limit)
        return self.rows_to_events(rows)

    async def room_events_backward(self, conn: Connection, room_id: str, from_inclusive: int,
                                   to_exclusive: int, limit: int) -> list[StoredEvent]:
        """Timeline events with `to < stream_ordering <= from`, newest first."""
        rows = await conn.fetch(SELECT_STREAM_BACKWARD, room_id, from_inclusive, to_exclusive, limit)
        return self.rows_to_events(rows)

    async def stream_range(self, conn: Connection, from_exclusive: int, to_inclusive: int,
                           limit: int) -> list[StoredEvent] | None:
        """Timeline events of every room with `from < stream_ordering <= to`, oldest
        first; None (nothing parsed) when there are more than `limit`."""
        rows = await conn.fetch(SELECT_STREAM_RANGE, from_exclusive, to_inclusive, limit + 1)
        return None if len(rows) > limit else self.rows_to_events(rows)

    async def last_event_at(self, conn: Connection, room_id: str, stream_ordering: int) -> str | None:
        """The room's latest timeline event at or before a stream position."""
        return await conn.fetchval(SELECT_LAST_AT, room_id, stream_ordering)  # type: ignore[no-any-return]

    async def forward_extremities(self, conn: Connection, room_id: str) -> list[str]:
        """Newest (deepest) first, so callers bounding prev_events keep the recent ones."""
        return [r["event_id"] for r in await conn.fetch(SELECT_EXTREMITIES, room_id)]

    async def update_extremities(self, conn: Connection, room_id: str, *,
                                 remove: Sequence[str], add: Sequence[str]) -> None:
        await update_extremities(conn, room_id, remove=remove, add=add)

    async def insert_redaction(self, conn: Connection, redaction: Pdu, redacts: str,
                               validated: bool) -> None:
        await conn.execute(INSERT_REDACTION, redaction.event_id, redacts, redaction.room_id,
                           1 if validated else 0)

    async def redactions_of(self, conn: Connection, event_ids: Sequence[str]) -> dict[str, list[Redaction]]:
        """Accepted redactions targeting each of `event_ids`, oldest first."""
        rows = await fetch_for_ids(conn, SELECT_REDACTIONS_PG, SELECT_REDACTIONS_SQLITE, list(event_ids))
        found: dict[str, list[Redaction]] = {}
        for r in rows:
            found.setdefault(r["redacts"], []).append(
                Redaction(r["event_id"], r["redacts"], bool(r["validated"])))
        return found
