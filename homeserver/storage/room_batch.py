"""A batch of sends to one room (rooms/persistence.py): what it reads first, under the
room's lock, and the rows of its plain timeline events, written together.

On PostgreSQL each is one statement: every statement is a round trip, and a send's
round trips were most of its time. The head is one SELECT (the room row, its forward
extremities and the batch's used transaction IDs); the timeline rows are one statement
of data-modifying CTEs over arrays (stream positions, events, edges, event_state,
forward extremities, transaction IDs), which also writes the batch's full-text index
entries and push's records of it when they are given (`SearchRows`, `PushRows`: each
written only if its position is right behind the batch, as the batch writers' own
statements would, and only if it can be written whole there). The lock itself stays a
statement of its own:
a READ COMMITTED statement reads from a snapshot taken when it starts, so reads in the
statement that waits for the lock could miss the commit of the writer it waited for.

A batch may skip the head read (`TimelineRows.expect`): the room's previous batch in
this process left a head it remembers. Its timeline write then checks, in the same
statement and under the lock, that this is still the room's head and that none of its
transaction IDs is used, and writes nothing otherwise (`StaleHead`); the caller builds
the batch again on the head as read.

SQLite runs in process, where a statement costs microseconds: it keeps the plain
per-table statements, which write the same rows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import attrs

from homeserver.events.pdu import Pdu
from homeserver.storage import events as event_sql
from homeserver.storage import notifications, streams
from homeserver.storage import rooms as room_sql
from homeserver.storage import state as state_sql
from homeserver.storage import txn_ids as txn_sql
from homeserver.storage.batch import is_postgres, json_id_list
from homeserver.storage.database import Connection, Row
from homeserver.storage.rooms import RoomRow

# $1 room; $2-$4 the transaction IDs asked about (user, device, txn): `txn_events` holds
# the event of each (NULL when unused), in the order asked. The lookups into `events`
# and `event_txn_ids` are LATERAL/scalar subqueries with LIMIT 1, not joins, so that
# even a generic plan made while those tables were nearly empty reads them by primary
# key; as joins, such a plan scanned both tables whole (see SELECT_REDACTIONS_PG in
# storage/events.py, and tests/storage/test_generic_plans.py).
SELECT_HEAD_PG = """
SELECT r.room_id, r.room_version, r.creator, r.created_ts, r.is_public, r.current_snapshot_id,
  ARRAY(SELECT f.event_id FROM forward_extremities f
        CROSS JOIN LATERAL (SELECT e.depth, e.stream_ordering FROM events e
                            WHERE e.event_id = f.event_id LIMIT 1) e
        WHERE f.room_id = $1 ORDER BY e.depth DESC, e.stream_ordering DESC) AS extremities,
  ARRAY(SELECT (SELECT x.event_id FROM event_txn_ids x
                WHERE x.user_id = k.user_id AND x.device_id = k.device_id
                  AND x.txn_id = k.txn_id LIMIT 1)
        FROM unnest((SELECT $2::text[]), (SELECT $3::text[]), (SELECT $4::text[]))
             WITH ORDINALITY
             AS k(user_id, device_id, txn_id, n)
        ORDER BY k.n) AS txn_events
FROM (SELECT $1::text AS room_id) q LEFT JOIN rooms r ON r.room_id = q.room_id
"""
SELECT_TXNS_SQLITE = """
SELECT txn_id, event_id FROM event_txn_ids
WHERE user_id = $2 AND device_id = $3 AND txn_id IN (SELECT value FROM json_each($1))
"""

def _shift_parameters(sql: str, by: int) -> str:
    """`sql` with its parameters renumbered ($1 -> $(1 + by)), to join another statement."""
    return re.sub(r"\$(\d+)", lambda m: f"${int(m.group(1)) + by}", sql)


# $1 stream, $2 room, $3-$10 the events in stream order, $11-$12 prev edges, $13-$14
# auth edges, $15 each event's state snapshot (before = after: not state), $16/$17
# extremities removed/added, $18 now, $19-$22 transaction IDs. The CTEs all see the
# snapshot the statement started with, so none may read what another writes; none does
# (the events take their positions from `pos`'s RETURNING). The last SELECT also returns
# every stream's position in that snapshot (see `TimelineWritten.positions`).
# With $23 true, the rows are written only if the head the batch was built on is still
# the room's ($24 its current snapshot, $25 its newest event's stream ordering) and none
# of the transaction IDs is used yet: `guard` has its one row only then, and every write
# below reads it (the positions through `pos`). Without it, the statement returns no row.
# The newest event stands for the forward extremities: they change only with a new event
# of the room (which takes a higher position: writers of a room hold its lock), and it is
# one index lookup, where reading the extremities walks the dead index entries every
# batch leaves behind (until a vacuum).
# With $26 true, the batch's full-text index entries ride along (`SearchRows`: $27 the
# 1-based index of each entry's event, $28 its key, $29 its text): the compare-and-set
# of storage/search.py's ADVANCE_AND_INSERT_PG, from just before the batch's first
# position (known only here, from `pos`) to its last, and the entries, joined to it so
# that nothing is written unless it moved. It moves only if no stored redaction targets
# one of the batch's events: whether one applies is the indexer's rule, and the entries
# it would still write would be written in its savepoint, which a rollback could undo
# after this move (the indexer's own statement takes such a batch instead). One round
# trip less per batch than the indexer's own statement.
_TIMELINE_CTES_PG = """
WITH guard AS (
    SELECT 1 AS ok WHERE NOT $23::boolean OR (
        (SELECT r.current_snapshot_id FROM rooms r WHERE r.room_id = $2) = $24::bigint
        AND (SELECT e.stream_ordering FROM events e
             WHERE e.room_id = $2 AND e.stream_ordering IS NOT NULL
             ORDER BY e.stream_ordering DESC LIMIT 1) = $25::bigint
        AND NOT EXISTS (
            SELECT 1 FROM unnest($19::text[], $20::text[], $21::text[]) AS t(user_id, device_id, txn_id)
            CROSS JOIN LATERAL (SELECT 1 FROM event_txn_ids x
                                WHERE x.user_id = t.user_id AND x.device_id = t.device_id
                                  AND x.txn_id = t.txn_id LIMIT 1) x))
), pos AS (
    INSERT INTO stream_positions (stream, position)
    SELECT $1, cardinality($3::text[]) FROM guard
    ON CONFLICT (stream) DO UPDATE SET position = stream_positions.position + excluded.position
    RETURNING position
), new_events AS (
    INSERT INTO events (event_id, room_id, stream_ordering, depth, type, state_key, sender,
                        origin_server_ts, json, rejected_reason, outlier, replaces_state)
    SELECT e.event_id, $2, pos.position - cardinality($3::text[]) + e.n, e.depth, e.type,
           e.state_key, e.sender, e.ts, e.json, e.rejected_reason, 0, NULL
    FROM pos, unnest($3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[],
                     $8::bigint[], $9::text[], $10::text[]) WITH ORDINALITY
              AS e(event_id, depth, type, state_key, sender, ts, json, rejected_reason, n)
), edges AS (
    INSERT INTO event_edges (event_id, prev_event_id)
    SELECT u.event_id, u.prev_event_id
    FROM guard, unnest($11::text[], $12::text[]) AS u(event_id, prev_event_id)
    ON CONFLICT DO NOTHING
), auth AS (
    INSERT INTO event_auth (event_id, auth_event_id)
    SELECT u.event_id, u.auth_event_id
    FROM guard, unnest($13::text[], $14::text[]) AS u(event_id, auth_event_id)
    ON CONFLICT DO NOTHING
), event_states AS (
    INSERT INTO event_state (event_id, room_id, before_snapshot_id, after_snapshot_id)
    SELECT s.event_id, $2, s.snapshot_id, s.snapshot_id
    FROM guard, unnest($3::text[], $15::bigint[]) AS s(event_id, snapshot_id)
), removed AS (
    -- Each row found by its whole key, then deleted by its address. The plain form
    -- (room_id = $2 AND event_id = ANY($16)) gets a generic plan that finds all of the
    -- room's index entries and filters them by event ID; as a bitmap scan (the plan of a
    -- fresh database), it walked every dead entry the room's earlier batches had left,
    -- one more per batch until the next vacuum (tests/storage/test_generic_plans.py).
    DELETE FROM forward_extremities f
    WHERE EXISTS (SELECT 1 FROM guard) AND f.ctid = ANY(ARRAY(
        SELECT x.ctid FROM unnest($16::text[]) AS r(event_id)
        CROSS JOIN LATERAL (SELECT y.ctid FROM forward_extremities y
                            WHERE y.room_id = $2 AND y.event_id = r.event_id LIMIT 1) x))
), added AS (
    INSERT INTO forward_extremities (room_id, event_id)
    SELECT $2, a.event_id FROM guard, unnest($17::text[]) AS a(event_id)
    ON CONFLICT DO NOTHING
), txns AS (
    INSERT INTO event_txn_ids (user_id, device_id, txn_id, event_id, room_id, created_ts)
    SELECT t.user_id, t.device_id, t.txn_id, t.event_id, $2, $18
    FROM guard, unnest($19::text[], $20::text[], $21::text[], $22::text[])
         AS t(user_id, device_id, txn_id, event_id)
), search_advanced AS (
    UPDATE search_position SET indexed_upto = pos.position
    FROM pos
    WHERE $26::boolean AND search_position.id = 1
      AND search_position.indexed_upto = pos.position - cardinality($3::text[])
      AND NOT EXISTS (SELECT 1 FROM unnest($3::text[]) AS t(event_id)
                      CROSS JOIN LATERAL (SELECT 1 FROM redactions d
                                          WHERE d.redacts = t.event_id LIMIT 1) d)
    RETURNING search_position.indexed_upto
), searched AS (
    INSERT INTO event_search (event_id, room_id, key, sender, stream_ordering,
                              origin_server_ts, value, vector)
    SELECT ($3::text[])[x.n], $2, x.key, ($7::text[])[x.n],
           a.indexed_upto - cardinality($3::text[]) + x.n, ($8::bigint[])[x.n], x.value,
           to_tsvector('english', x.value)
    FROM search_advanced a, unnest($27::int[], $28::text[], $29::text[]) AS x(n, key, value)
    ON CONFLICT (event_id) DO NOTHING
)"""
_TIMELINE_RESULT_PG = """
       pos.position, s.streams, s.positions, EXISTS (SELECT 1 FROM search_advanced) AS searched"""
_TIMELINE_FROM_PG = """
FROM pos, (SELECT array_agg(stream) AS streams, array_agg(position) AS positions
           FROM stream_positions) s
"""
WRITE_TIMELINE_PG = f"{_TIMELINE_CTES_PG}\nSELECT{_TIMELINE_RESULT_PG}{_TIMELINE_FROM_PG}"
# With `PushRows` as well ($30-$49: notifications.ADVANCE_AND_RECORD_PG's $1-$20): push's
# records of the batch, made on the guess that its events take the positions right after
# $30. The push position moves from $30 to $31 only if it is at $30, the guess held
# (`pos`), and this statement can write every record (ADVANCE_AND_RECORD_PG's `ready`:
# no notified user has a pusher, the counts could be netted); the records all depend on
# that move. Otherwise only the events are written, and push's batch writer records them
# in its savepoint as usual: a move here with records left to the writer would outlive
# a rollback of the writer's savepoint, and the records would be lost. One round trip
# less per batch than push's own statement.
_PUSH_OFFSET = 29
WRITE_TIMELINE_PUSH_PG = f"""{_TIMELINE_CTES_PG}, {_shift_parameters(
    notifications.RECORD_READS_PG.strip(), _PUSH_OFFSET)}, advanced AS (
    UPDATE push_position SET evaluated_upto = $31 FROM pos
    WHERE push_position.id = 1 AND push_position.evaluated_upto = $30 AND pos.position = $31
      AND {_shift_parameters(notifications.RECORD_READY_PG.strip(), _PUSH_OFFSET)}
    RETURNING push_position.evaluated_upto
), ready AS (
    SELECT 1 FROM advanced
), {_shift_parameters(notifications.RECORD_WRITES_PG.strip(), _PUSH_OFFSET)}
SELECT{_TIMELINE_RESULT_PG},
       {_shift_parameters(notifications.RECORD_RESULT_PG.strip(), _PUSH_OFFSET)}{_TIMELINE_FROM_PG}"""


@attrs.frozen
class RoomHead:
    """What a batch reads first: the room (None if unknown), its forward extremities
    (newest first; empty for an unknown room), and for each transaction ID asked about
    the event an earlier request created with it (None if unused)."""

    room: RoomRow | None
    extremities: list[str]
    txn_events: list[str | None]


class StaleHead(Exception):
    """`write_timeline` wrote nothing: the head the rows were built on (`Head`) is no
    longer the room's, or one of their transaction IDs was used already."""


@attrs.frozen
class Head:
    """The head a batch's events were built on without reading it (remembered from the
    room's last batch): checked by `write_timeline` in the statement that writes them."""

    current_snapshot_id: int
    extremities: Sequence[str]
    # The stream ordering of the room's newest event then.
    last_ordering: int


@attrs.frozen
class SearchRows:
    """The full-text index entries of a batch's events (search/indexer.py decides what
    they are): per entry, the index of its event in `TimelineRows.events`, its key and
    its text. See WRITE_TIMELINE_PG for when they are written."""

    entries: Sequence[tuple[int, str, str]]


@attrs.frozen
class PushRows:
    """Push's records of a batch's events (push/bulk_evaluator.py), made on the guess
    that the events take the events stream's positions right after `after`: the steps
    of notifications.NotificationStore.advance_and_record from `after`. See
    WRITE_TIMELINE_PUSH_PG for when they are written."""

    after: int
    steps: Sequence[notifications.Step]
    pushes: bool


@attrs.frozen
class TimelineRows:
    """Timeline events (not state, not outliers) built on the room's current state, in
    stream order, with what they change: the rows `write_timeline` writes."""

    room_id: str
    # (event, the state snapshot it was built on)
    events: Sequence[tuple[Pdu, int]]
    remove_extremities: Sequence[str]
    add_extremities: Sequence[str]
    # (user_id, device_id, txn_id, event_id)
    txns: Sequence[tuple[str, str | None, str, str]]
    now_ms: int
    # Not None: write only if this is still the room's head and no transaction ID of
    # `txns` is used yet, else raise StaleHead.
    expect: Head | None = None
    # Not None: the events' full-text index entries, and push's records of them, written
    # by the same statement on PostgreSQL (`search_rides_timeline`); ignored elsewhere.
    search: SearchRows | None = None
    push: PushRows | None = None


@attrs.frozen
class TimelineWritten:
    """What `write_timeline` did: the events' stream positions, and (PostgreSQL) every
    stream's position as the statement saw it, with `stream` moved to the last event's.

    `positions` is for waking /sync without reading the positions again: once the
    caller's transaction commits, nothing at or below any of them is uncommitted (each
    stream's counter row is locked from a writer's bump to its commit, so positions
    commit in order; SQLite has one writer). On SQLite they are read in the writer's
    transaction after the write: not to save the read, but so that a woken /sync has its
    token at once instead of scheduling a read of its own, and computes its answer
    before the loop goes on to other work (the idle send's response, under load the next
    batch). None when another writer of `stream` committed between the PostgreSQL
    statement's snapshot and its own bump (the statement waited for that writer's lock),
    since that writer's other streams' positions may then be missing from the snapshot.
    Positions the caller's transaction takes after this statement are not in it either:
    the caller must know it takes none."""

    orderings: range
    positions: dict[str, int] | None
    # Whether the statement wrote `TimelineRows.search` (and moved the search position);
    # None when it was not given.
    search: bool | None = None
    # Whether it wrote every record of `TimelineRows.push` (and moved the push position);
    # None when it was not given.
    push: bool | None = None


async def read_head(conn: Connection, room_id: str,
                    txns: Sequence[tuple[str, str | None, str]]) -> RoomHead:
    """The room row, its forward extremities and which of `txns` (user_id, device_id,
    txn_id) are used. Call under the room's lock (events.lock_room)."""
    if is_postgres(conn):
        row = await conn.fetchrow(SELECT_HEAD_PG, room_id, [t[0] for t in txns],
                                  [t[1] or "" for t in txns], [t[2] for t in txns])
        assert row is not None
        return RoomHead(_room(row), list(row["extremities"]), list(row["txn_events"]))
    return await _read_head_sqlite(conn, room_id, txns)


async def _read_head_sqlite(conn: Connection, room_id: str,
                            txns: Sequence[tuple[str, str | None, str]]) -> RoomHead:
    room_row = await conn.fetchrow(room_sql.SELECT_ROOM, room_id)
    room = None if room_row is None else _room(room_row)
    extremities = ([] if room is None else
                   [r["event_id"] for r in await conn.fetch(event_sql.SELECT_EXTREMITIES, room_id)])
    by_device: dict[tuple[str, str], list[str]] = {}
    for user_id, device_id, txn_id in txns:
        by_device.setdefault((user_id, device_id or ""), []).append(txn_id)
    used: dict[tuple[str, str, str], str] = {}
    for (user_id, device_id), txn_ids in by_device.items():
        rows = await conn.fetch(SELECT_TXNS_SQLITE, json_id_list(txn_ids), user_id, device_id)
        used.update(((user_id, device_id, r["txn_id"]), r["event_id"]) for r in rows)
    return RoomHead(room, extremities, [used.get((u, d or "", t)) for u, d, t in txns])


def _room(r: Row) -> RoomRow | None:
    """The room's columns (NULL when the room is unknown: PostgreSQL's outer join)."""
    if r["room_id"] is None:
        return None
    return RoomRow(r["room_id"], r["room_version"], r["creator"], r["created_ts"],
                   bool(r["is_public"]), r["current_snapshot_id"])


def search_rides_timeline(conn: Connection) -> bool:
    """Whether `write_timeline` writes `TimelineRows.search` (a round trip saved: on
    PostgreSQL); elsewhere the indexer's own statements write the entries."""
    return is_postgres(conn)


async def write_timeline(conn: Connection, stream: str, rows: TimelineRows) -> TimelineWritten:
    """Write `rows` in the caller's transaction; the events' stream positions are
    consecutive, taken from `stream` as streams.next_positions does."""
    if not rows.events:
        raise ValueError("no events to write")
    pdus = [pdu for pdu, _ in rows.events]
    expect = rows.expect
    if not is_postgres(conn):
        if expect is not None and not await _head_holds_sqlite(conn, rows.room_id, expect, rows.txns):
            raise StaleHead(rows.room_id)
        orderings = await _write_timeline_sqlite(conn, stream, rows, pdus)
        # One writer: what is read here was taken by this transaction or committed
        # before it, so once it commits nothing at or below these positions is
        # uncommitted. Later group-commit members' positions are missing: those they
        # notify come in through the notifier's own positions, and one that is notified
        # before this batch makes the notifier drop this token (Notifier.deliver).
        return TimelineWritten(orderings, await streams.all_positions(conn))
    search = rows.search
    entries = search.entries if search is not None else ()
    push = rows.push
    push_args = [] if push is None else notifications.record_args_pg(
        push.after, push.after + len(pdus), push.steps, pushes=push.pushes)
    row = await conn.fetchrow(
        WRITE_TIMELINE_PG if push is None else WRITE_TIMELINE_PUSH_PG, stream, rows.room_id,
        [p.event_id for p in pdus], [p.depth for p in pdus], [p.type for p in pdus],
        [p.state_key for p in pdus], [p.sender for p in pdus],
        [p.origin_server_ts for p in pdus], [p.canonical_json().decode() for p in pdus],
        [p.rejected_reason for p in pdus],
        [p.event_id for p in pdus for _ in p.prev_event_ids],
        [e for p in pdus for e in p.prev_event_ids],
        [p.event_id for p in pdus for _ in p.auth_event_ids],
        [a for p in pdus for a in p.auth_event_ids],
        [snapshot for _, snapshot in rows.events],
        list(rows.remove_extremities), list(rows.add_extremities), rows.now_ms,
        [t[0] for t in rows.txns], [t[1] or "" for t in rows.txns], [t[2] for t in rows.txns],
        [t[3] for t in rows.txns], expect is not None,
        expect.current_snapshot_id if expect is not None else 0,
        expect.last_ordering if expect is not None else 0,
        search is not None, [i + 1 for i, _, _ in entries], [k for _, k, _ in entries],
        [v for _, _, v in entries], *push_args)
    if row is None:
        assert expect is not None, "an unguarded write always returns its positions"
        raise StaleHead(rows.room_id)
    last = int(row["position"])
    orderings = range(last - len(pdus) + 1, last + 1)
    searched = None if search is None else bool(row["searched"])
    pushed = None if push is None else bool(row["advanced"])
    seen = dict(zip(row["streams"] or (), (int(p) for p in row["positions"] or ()), strict=True))
    if seen.get(stream, 0) != orderings.start - 1:
        # Another writer got in between.
        return TimelineWritten(orderings, None, searched, pushed)
    return TimelineWritten(orderings, {**seen, stream: last}, searched, pushed)


async def _head_holds_sqlite(conn: Connection, room_id: str, expect: Head,
                             txns: Sequence[tuple[str, str | None, str, str]]) -> bool:
    # In process, a read costs what the checks in the PostgreSQL statement do.
    head = await _read_head_sqlite(conn, room_id, [(u, d, t) for u, d, t, _ in txns])
    return (head.room is not None and head.room.current_snapshot_id == expect.current_snapshot_id
            and sorted(head.extremities) == sorted(expect.extremities)
            and not any(head.txn_events))


async def _write_timeline_sqlite(conn: Connection, stream: str, rows: TimelineRows,
                                 pdus: list[Pdu]) -> range:
    orderings = await streams.next_positions(conn, stream, len(pdus))
    await conn.executemany(event_sql.INSERT_EVENT, [
        (p.event_id, p.room_id, ordering, p.depth, p.type, p.state_key, p.sender,
         p.origin_server_ts, p.canonical_json().decode(), p.rejected_reason, 0, None)
        for p, ordering in zip(pdus, orderings, strict=True)])
    edges = [(p.event_id, e) for p in pdus for e in p.prev_event_ids]
    if edges:
        await conn.executemany(event_sql.INSERT_EDGE, edges)
    auth = [(p.event_id, a) for p in pdus for a in p.auth_event_ids]
    if auth:
        await conn.executemany(event_sql.INSERT_AUTH, auth)
    await conn.executemany(state_sql.INSERT_EVENT_STATE, [
        (p.event_id, rows.room_id, snapshot, snapshot) for p, snapshot in rows.events])
    await event_sql.update_extremities(conn, rows.room_id, remove=rows.remove_extremities,
                                       add=rows.add_extremities)
    if rows.txns:
        await conn.executemany(txn_sql.INSERT, [
            (u, d or "", t, e, rows.room_id, rows.now_ms) for u, d, t, e in rows.txns])
    return orderings
