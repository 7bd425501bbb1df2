"""Events that notified a user, and unread notification counts per (user, room, thread).

Spec: https://spec.matrix.org/v1.19/client-server-api/#receiving-notifications and
#get_matrixclientv3notifications . The evaluator adds notifications and increments the
counts; a read receipt moves `read_upto` and recounts from the notification rows, so a
count is never more than a recount away from the truth. `NotificationBatch` makes the
evaluator's calls for many events in one transaction with few round trips, and
`NotificationStore.advance_and_record` makes them, with the move of the push position,
in one statement in the common case on PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

import attrs

from homeserver.storage import push_position
from homeserver.storage.batch import fetch_for_ids, is_postgres
from homeserver.storage.database import Connection, Database, Row
from homeserver.storage.pushers import users_with_pushers


@attrs.frozen
class NewNotification:
    user_id: str
    room_id: str
    event_id: str
    thread_id: str
    stream_ordering: int
    actions: list[Any]
    highlight: bool
    ts: int


@attrs.frozen
class NotificationRow:
    room_id: str
    event_id: str
    stream_ordering: int
    actions: list[Any]
    ts: int
    read: bool


@attrs.frozen
class ThreadRead:
    """`mark_read` for one thread: the sender of an event has read up to it."""

    user_id: str
    room_id: str
    thread_id: str
    position: int


@attrs.frozen
class Step:
    """One event's calls, in this order: `add(notifications)`, then `read` if any."""

    notifications: Sequence[NewNotification]
    read: ThreadRead | None


@attrs.frozen
class Started:
    """What `advance_and_record` leaves to the caller: `batch` None if it wrote the steps
    itself; else the caller makes the steps' calls on `batch` (queueing the pushes of the
    users in `pushable` in between) and finishes it."""

    pushable: frozenset[str]
    batch: NotificationBatch | None


INSERT_NOTIFICATION = """
INSERT INTO notifications (user_id, room_id, event_id, thread_id, stream_ordering, actions,
                           highlight, ts)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (user_id, stream_ordering) DO NOTHING
RETURNING event_id
"""
INSERT_NOTIFICATIONS = """
INSERT INTO notifications (user_id, room_id, event_id, thread_id, stream_ordering, actions,
                           highlight, ts)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (user_id, stream_ordering) DO NOTHING
"""
# Rows a batch would insert that exist already: any (user, event) pair of the batch has
# the event's stream ordering, so the range finds them all through the primary key.
SELECT_EXISTING_PG = """
SELECT user_id, event_id FROM notifications
WHERE user_id = ANY($1::text[]) AND stream_ordering > $2 AND stream_ordering <= $3
"""
SELECT_EXISTING_SQLITE = """
SELECT user_id, event_id FROM notifications
WHERE user_id IN (SELECT value FROM json_each($1)) AND stream_ordering > $2
  AND stream_ordering <= $3
"""
# A superset (every user with every room); the caller picks its pairs.
SELECT_ROOM_READS_PG = """
SELECT user_id, room_id, read_upto FROM notification_room_read
WHERE user_id = ANY($1::text[]) AND room_id = ANY($2::text[])
"""
SELECT_ROOM_READS_SQLITE = """
SELECT user_id, room_id, read_upto FROM notification_room_read
WHERE user_id IN (SELECT value FROM json_each($1)) AND room_id IN (SELECT value FROM json_each($2))
"""
SELECT_ROOM_READ = """
SELECT read_upto FROM notification_room_read WHERE user_id = $1 AND room_id = $2
"""
# A first notification in a thread starts counting after the room's unthreaded receipt;
# an existing row counts only what lies after its own read position.
INCREMENT = """
INSERT INTO notification_counts (user_id, room_id, thread_id, notif_count, highlight_count,
                                 read_upto)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (user_id, room_id, thread_id) DO UPDATE
SET notif_count = notification_counts.notif_count + excluded.notif_count,
    highlight_count = notification_counts.highlight_count + excluded.highlight_count
WHERE notification_counts.read_upto < $7
"""
UPSERT_ROOM_READ = """
INSERT INTO notification_room_read (user_id, room_id, read_upto) VALUES ($1, $2, $3)
ON CONFLICT (user_id, room_id) DO UPDATE SET read_upto = excluded.read_upto
WHERE notification_room_read.read_upto < excluded.read_upto
"""
_RECOUNT = """
UPDATE notification_counts
SET read_upto = CASE WHEN read_upto < $3 THEN $3 ELSE read_upto END,
    notif_count = (SELECT COUNT(*) FROM notifications n
                   WHERE n.user_id = notification_counts.user_id
                     AND n.room_id = notification_counts.room_id
                     AND n.thread_id = notification_counts.thread_id
                     AND n.stream_ordering > CASE WHEN notification_counts.read_upto < $3
                                                  THEN $3 ELSE notification_counts.read_upto END),
    highlight_count = (SELECT COUNT(*) FROM notifications n
                       WHERE n.user_id = notification_counts.user_id
                         AND n.room_id = notification_counts.room_id
                         AND n.thread_id = notification_counts.thread_id
                         AND n.highlight = 1
                         AND n.stream_ordering > CASE WHEN notification_counts.read_upto < $3
                                                      THEN $3 ELSE notification_counts.read_upto END)
WHERE user_id = $1 AND room_id = $2 AND read_upto < $3
"""
RECOUNT_ROOM = _RECOUNT
# A thread read up to `position`: a new row starts read there; an existing one behind it
# moves there and is recounted (one statement: it runs for every event a user sends).
MARK_THREAD_READ = """
INSERT INTO notification_counts (user_id, room_id, thread_id, notif_count, highlight_count,
                                 read_upto)
VALUES ($1, $2, $4, 0, 0, $3)
ON CONFLICT (user_id, room_id, thread_id) DO UPDATE
SET read_upto = excluded.read_upto,
    notif_count = (SELECT COUNT(*) FROM notifications n
                   WHERE n.user_id = excluded.user_id AND n.room_id = excluded.room_id
                     AND n.thread_id = excluded.thread_id
                     AND n.stream_ordering > excluded.read_upto),
    highlight_count = (SELECT COUNT(*) FROM notifications n
                       WHERE n.user_id = excluded.user_id AND n.room_id = excluded.room_id
                         AND n.thread_id = excluded.thread_id AND n.highlight = 1
                         AND n.stream_ordering > excluded.read_upto)
WHERE notification_counts.read_upto < excluded.read_upto
"""
# INCREMENT ($7 = 0; $8: the event's position) or MARK_THREAD_READ ($7 = 1; $8: the
# position read up to) as one statement, so that a batch's count changes, in their
# order, are one executemany: their order matters per row, as a receipt ahead of the
# events decides which increments still count.
COUNT_CHANGE = """
INSERT INTO notification_counts (user_id, room_id, thread_id, notif_count, highlight_count,
                                 read_upto)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (user_id, room_id, thread_id) DO UPDATE
SET notif_count = CASE WHEN $7 = 0
        THEN notification_counts.notif_count + excluded.notif_count
        ELSE (SELECT COUNT(*) FROM notifications n
              WHERE n.user_id = excluded.user_id AND n.room_id = excluded.room_id
                AND n.thread_id = excluded.thread_id AND n.stream_ordering > $8) END,
    highlight_count = CASE WHEN $7 = 0
        THEN notification_counts.highlight_count + excluded.highlight_count
        ELSE (SELECT COUNT(*) FROM notifications n
              WHERE n.user_id = excluded.user_id AND n.room_id = excluded.room_id
                AND n.thread_id = excluded.thread_id AND n.highlight = 1
                AND n.stream_ordering > $8) END,
    read_upto = CASE WHEN $7 = 0 THEN notification_counts.read_upto ELSE $8 END
WHERE notification_counts.read_upto < $8
"""
# `advance_and_record` on PostgreSQL: push_position.ADVANCE ($1 -> $2), the reads the
# batch needs (room reads of the notified users $3 in the rooms $4; which of the users
# $5 have pushers) and, when `ready`, the batch's rows: one count row per key ($7-$12,
# its changes netted by `_net_changes`; $6: whether they could be) and the notifications
# ($13-$20). Netting assumes nothing past $1 is read yet: no read position of a key (its
# count row's or its room's) and no notification of its user lies after $1. A receipt
# names a committed event, so this holds for events the caller's transaction has just
# written; `ready` checks it, and if it fails, or a notified user has a pusher (a push
# carries the counts before it), only the position moves and the caller makes the calls
# on a batch. Given it, a key read in the batch (netted `read_upto` > $1) takes the netted
# row whole, since COUNT_CHANGE's recount there finds no notification after the read
# (this batch's are inserted last, as NotificationBatch explains); any other key only
# had increments, which add to its row and keep its `read_upto`. Every CTE reads the
# snapshot the statement started with, before any of them wrote: the state `ready` must
# check. A receipt committing meanwhile stays at or before $1, so the netted changes
# apply to the row the upsert finds just as to the one `ready` saw. `ready` looks each
# key up through the primary keys: as a join, a plan that expects a third of the rows
# past $1 (a prepared statement's generic guess) scans for the first, reading whole
# tables when, as expected, there is none.
# The statement in parts, so that a batch's timeline statement can take it in too
# (storage/room_batch.py, WRITE_TIMELINE_PUSH_PG): the reads; the condition for writing
# the rows here (`ready`, given the move); the writes; the answer's columns.
RECORD_READS_PG = """
room_reads AS (
    SELECT user_id, room_id, read_upto FROM notification_room_read
    WHERE user_id = ANY($3::text[]) AND room_id = ANY($4::text[])
), pushable AS (
    SELECT DISTINCT user_id FROM pushers WHERE user_id = ANY($5::text[])
), changes AS (
    SELECT * FROM unnest($7::text[], $8::text[], $9::text[], $10::bigint[], $11::bigint[],
                         $12::bigint[])
        AS c(user_id, room_id, thread_id, notif_count, highlight_count, read_upto)
)"""
RECORD_READY_PG = """
$6::boolean
      AND NOT EXISTS (SELECT 1 FROM pushable)
      AND NOT EXISTS (SELECT 1 FROM room_reads WHERE read_upto > $1)
      AND NOT EXISTS (SELECT 1 FROM changes c
                      WHERE (SELECT n.read_upto FROM notification_counts n
                             WHERE n.user_id = c.user_id AND n.room_id = c.room_id
                               AND n.thread_id = c.thread_id) > $1
                         OR (SELECT max(n.stream_ordering) FROM notifications n
                             WHERE n.user_id = c.user_id) > $1)"""
RECORD_WRITES_PG = """
counted AS (
    INSERT INTO notification_counts (user_id, room_id, thread_id, notif_count,
                                     highlight_count, read_upto)
    SELECT c.user_id, c.room_id, c.thread_id, c.notif_count, c.highlight_count,
           COALESCE(c.read_upto, r.read_upto, 0)
    FROM changes c LEFT JOIN room_reads r ON r.user_id = c.user_id AND r.room_id = c.room_id
    WHERE EXISTS (SELECT 1 FROM ready)
    ON CONFLICT (user_id, room_id, thread_id) DO UPDATE
    SET notif_count = CASE WHEN excluded.read_upto > $1 THEN excluded.notif_count
            ELSE notification_counts.notif_count + excluded.notif_count END,
        highlight_count = CASE WHEN excluded.read_upto > $1 THEN excluded.highlight_count
            ELSE notification_counts.highlight_count + excluded.highlight_count END,
        read_upto = CASE WHEN excluded.read_upto > $1 THEN excluded.read_upto
            ELSE notification_counts.read_upto END
), notified AS (
    INSERT INTO notifications (user_id, room_id, event_id, thread_id, stream_ordering, actions,
                               highlight, ts)
    SELECT * FROM unnest($13::text[], $14::text[], $15::text[], $16::text[], $17::bigint[],
                         $18::text[], $19::smallint[], $20::bigint[])
    WHERE EXISTS (SELECT 1 FROM ready)
    ON CONFLICT (user_id, stream_ordering) DO NOTHING
)"""
RECORD_RESULT_PG = """
       EXISTS (SELECT 1 FROM advanced) AS advanced, EXISTS (SELECT 1 FROM ready) AS written,
       ARRAY(SELECT user_id FROM pushable) AS pushable,
       ARRAY(SELECT user_id FROM room_reads ORDER BY user_id, room_id) AS read_users,
       ARRAY(SELECT room_id FROM room_reads ORDER BY user_id, room_id) AS read_rooms,
       ARRAY(SELECT read_upto FROM room_reads ORDER BY user_id, room_id) AS read_uptos"""
ADVANCE_AND_RECORD_PG = f"""
WITH advanced AS ({push_position.ADVANCE}
), {RECORD_READS_PG.strip()}, ready AS (
    SELECT 1 FROM advanced WHERE {RECORD_READY_PG.strip()}
), {RECORD_WRITES_PG.strip()}
SELECT {RECORD_RESULT_PG.strip()}
"""
SELECT_COUNTS = """
SELECT room_id, thread_id, notif_count, highlight_count FROM notification_counts
WHERE user_id = $1 AND (notif_count > 0 OR highlight_count > 0)
"""
_LIST = """
SELECT n.room_id, n.event_id, n.stream_ordering, n.actions, n.ts, c.read_upto
FROM notifications n
LEFT JOIN notification_counts c
  ON c.user_id = n.user_id AND c.room_id = n.room_id AND c.thread_id = n.thread_id
WHERE n.user_id = $1 AND n.stream_ordering < $2
"""
SELECT_NOTIFICATIONS = _LIST + " ORDER BY n.stream_ordering DESC LIMIT $3"
SELECT_HIGHLIGHTS = _LIST + " AND n.highlight = 1 ORDER BY n.stream_ordering DESC LIMIT $3"


def _dump_actions(actions: list[Any]) -> str:
    return json.dumps(actions, separators=(",", ":"))


def _encoded_rows(rows: Sequence[NewNotification]) -> list[tuple[Any, ...]]:
    # Notifications from one rule share its actions list: encode it once.
    encoded: dict[int, str] = {}
    return [(n.user_id, n.room_id, n.event_id, n.thread_id, n.stream_ordering,
             encoded.get(id(n.actions)) or encoded.setdefault(id(n.actions),
                                                              _dump_actions(n.actions)),
             int(n.highlight), n.ts) for n in rows]


# Per count key: notifications, highlights, and the position read up to when the batch
# reads the key (None: it only increments it).
_Net = dict[tuple[str, str, str], list[Any]]


def _net_changes(steps: Sequence[Step],
                 after: int) -> tuple[_Net, list[NewNotification]] | None:
    """The steps' count changes netted to one per key, and their new notification rows,
    for fresh events after `after`, assuming every read position of the keys is at or
    before `after` and no notification of theirs lies after it (ADVANCE_AND_RECORD_PG
    checks that). None if a step lies at or before `after`.

    It replays COUNT_CHANGE row by row: with the read position at or before `after`,
    every increment counts (each lies after it) and a thread read recounts to zero (no
    notification after it exists before the batch's rows are inserted, last); from a
    read on, the position is known and compared as COUNT_CHANGE does."""
    net: _Net = {}
    seen: set[tuple[str, str]] = set()
    rows: list[NewNotification] = []
    for step in steps:
        for n in step.notifications:
            if (n.user_id, n.event_id) in seen:
                continue
            if n.stream_ordering <= after:
                return None
            seen.add((n.user_id, n.event_id))
            rows.append(n)
            key = net.setdefault((n.user_id, n.room_id, n.thread_id), [0, 0, None])
            if key[2] is None or key[2] < n.stream_ordering:
                key[0] += 1
                key[1] += int(n.highlight)
        read = step.read
        if read is not None:
            if read.position <= after:
                return None
            key = net.setdefault((read.user_id, read.room_id, read.thread_id), [0, 0, None])
            if key[2] is None or key[2] < read.position:
                key[:] = [0, 0, read.position]
    return net, rows


class NotificationBatch:
    """`NotificationStore.add` and the threaded `mark_read` for a run of consecutive
    events, in one transaction, with the same effect as making those calls one by one in
    the same order, in a few round trips instead of several per notification.

    Why it is the same: the count changes run in the calls' order, as one `executemany`
    of COUNT_CHANGE, which is INCREMENT or MARK_THREAD_READ row by row. Whether a row is new is read once up front
    (`NotificationStore.batch`); `notification_room_read` is read once, since only an
    unthreaded receipt writes it, never these calls. The notification rows are inserted
    last: the only statement that reads them is the recount of `mark_read(position)`,
    which counts rows after `position`, and a row of this batch after `position` does not
    exist yet at that point when the calls are made one by one either.
    """

    def __init__(self, conn: Connection, existing: set[tuple[str, str]],
                 room_reads: dict[tuple[str, str], int]):
        self._conn = conn
        self._seen = existing
        self._room_reads = room_reads
        self._rows: list[NewNotification] = []
        self._changes: list[tuple[Any, ...]] = []

    def add(self, notifications: Sequence[NewNotification]) -> list[NewNotification]:
        """Queue `add(notifications)`; returns the ones not recorded before."""
        added = []
        for n in notifications:
            if (n.user_id, n.event_id) in self._seen:
                continue
            self._seen.add((n.user_id, n.event_id))
            added.append(n)
            room_read = self._room_reads.get((n.user_id, n.room_id), 0)
            unread = n.stream_ordering > room_read
            self._changes.append((n.user_id, n.room_id, n.thread_id, int(unread),
                                  int(unread and n.highlight), room_read, 0, n.stream_ordering))
        self._rows.extend(added)
        return added

    def mark_read(self, user_id: str, room_id: str, thread_id: str, position: int) -> None:
        """Queue `mark_read` for one thread (the unthreaded form is not batched)."""
        self._changes.append((user_id, room_id, thread_id, 0, 0, position, 1, position))

    async def flush(self) -> None:
        """Run the queued count changes, in order (before anything reads the counts)."""
        changes, self._changes = self._changes, []
        if changes:
            await self._conn.executemany(COUNT_CHANGE, changes)

    async def finish(self) -> None:
        await self.flush()
        rows, self._rows = self._rows, []
        if rows:
            await self._conn.executemany(INSERT_NOTIFICATIONS, _encoded_rows(rows))


def _room_reads(row: Row) -> dict[tuple[str, str], int]:
    return {(u, r): int(p) for u, r, p in zip(row["read_users"], row["read_rooms"],
                                              row["read_uptos"], strict=True)}


def record_args_pg(after: int, upto: int, steps: Sequence[Step], *,
                   pushes: bool) -> list[Any]:
    """ADVANCE_AND_RECORD_PG's parameters ($1-$20) for `advance_and_record`'s arguments."""
    users = sorted({n.user_id for step in steps for n in step.notifications})
    rooms = sorted({n.room_id for step in steps for n in step.notifications})
    netted = _net_changes(steps, after)
    net, rows = netted if netted is not None else ({}, [])
    keys = list(net)
    columns = [list(c) for c in zip(*_encoded_rows(rows), strict=True)] or [[]] * 8
    return [after, upto, users, rooms, users if pushes else [], netted is not None,
            [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
            [net[k][0] for k in keys], [net[k][1] for k in keys], [net[k][2] for k in keys],
            *columns]


def recorded_pg(conn: Connection, row: Row) -> Started | None:
    """`advance_and_record`'s answer from the columns of RECORD_RESULT_PG."""
    if not row["advanced"]:
        return None
    if row["written"]:
        return Started(frozenset(), None)
    return Started(frozenset(row["pushable"]), NotificationBatch(conn, set(), _room_reads(row)))


class NotificationStore:
    async def batch(self, conn: Connection, users: Collection[str], rooms: Collection[str],
                    after: int, upto: int, *, fresh: bool = False) -> NotificationBatch:
        """A batch for the events after stream position `after` up to `upto`, notifying
        at most `users` in `rooms`. `fresh`: the events were written by the caller's own
        transaction, so none of them can have notification rows yet."""
        existing: set[tuple[str, str]] = set()
        room_reads: dict[tuple[str, str], int] = {}
        if users:
            if not fresh:
                existing = {(r["user_id"], r["event_id"]) for r in await fetch_for_ids(
                    conn, SELECT_EXISTING_PG, SELECT_EXISTING_SQLITE, sorted(users), after,
                    upto)}
            if is_postgres(conn):
                rows = await conn.fetch(SELECT_ROOM_READS_PG, sorted(users), sorted(rooms))
            else:
                rows = await conn.fetch(SELECT_ROOM_READS_SQLITE, json.dumps(sorted(users)),
                                        json.dumps(sorted(rooms)))
            room_reads = {(r["user_id"], r["room_id"]): int(r["read_upto"]) for r in rows}
        return NotificationBatch(conn, existing, room_reads)

    async def advance_and_record(self, conn: Connection, after: int, upto: int,
                                 steps: Sequence[Step], *, pushes: bool) -> Started | None:
        """Move the push position from `after` to `upto` (push_position.ADVANCE) and
        record `steps`, the calls for the events in between, written by the caller's own
        transaction (as `batch(..., fresh=True)`). None if the position is not at `after`
        (nothing written). `pushes`: whether notified users with pushers get pushes.

        On PostgreSQL this is one statement (ADVANCE_AND_RECORD_PG) which, when no notified
        user has a pusher, writes everything; else, and on SQLite, the caller makes the
        calls on the returned batch, since a push carries the counts before it."""
        users = sorted({n.user_id for step in steps for n in step.notifications})
        rooms = sorted({n.room_id for step in steps for n in step.notifications})
        if not users and all(step.read is None for step in steps):
            if await conn.fetchval(push_position.ADVANCE, after, upto) is None:
                return None
            return Started(frozenset(), None)
        if not is_postgres(conn):
            if await conn.fetchval(push_position.ADVANCE, after, upto) is None:
                return None
            pushable = await users_with_pushers(conn, users) if pushes else set()
            return Started(frozenset(pushable),
                           await self.batch(conn, users, rooms, after, upto, fresh=True))
        row = await conn.fetchrow(ADVANCE_AND_RECORD_PG, *record_args_pg(after, upto, steps,
                                                                        pushes=pushes))
        assert row is not None
        return recorded_pg(conn, row)

    async def add(self, conn: Connection, notifications: Sequence[NewNotification]) -> None:
        """Record notifications and count the unread ones; adding one twice is a no-op."""
        for n in notifications:
            inserted = await conn.fetchval(
                INSERT_NOTIFICATION, n.user_id, n.room_id, n.event_id, n.thread_id,
                n.stream_ordering, _dump_actions(n.actions),
                int(n.highlight), n.ts)
            if inserted is None:
                continue
            room_read = await conn.fetchval(SELECT_ROOM_READ, n.user_id, n.room_id) or 0
            unread = n.stream_ordering > room_read
            await conn.execute(INCREMENT, n.user_id, n.room_id, n.thread_id, int(unread),
                               int(unread and n.highlight), room_read, n.stream_ordering)

    async def mark_read(self, conn: Connection, user_id: str, room_id: str,
                        thread_id: str | None, position: int) -> None:
        """Everything at or before `position` is read: in the whole room (`thread_id`
        None, an unthreaded receipt) or in one thread ('main' or a thread root)."""
        if thread_id is None:
            await conn.execute(UPSERT_ROOM_READ, user_id, room_id, position)
            await conn.execute(RECOUNT_ROOM, user_id, room_id, position)
        else:
            await conn.execute(MARK_THREAD_READ, user_id, room_id, position, thread_id)

    async def counts(self, db: Database | Connection,
                     user_id: str) -> dict[str, dict[str, tuple[int, int]]]:
        """room -> thread -> (notifications, highlights), non-zero counts only."""
        out: dict[str, dict[str, tuple[int, int]]] = {}
        for r in await db.fetch(SELECT_COUNTS, user_id):
            out.setdefault(r["room_id"], {})[r["thread_id"]] = (int(r["notif_count"]),
                                                                 int(r["highlight_count"]))
        return out

    async def list(self, db: Database | Connection, user_id: str, before: int, limit: int,
                   *, only_highlight: bool = False) -> list[NotificationRow]:
        """Newest first, below stream position `before`."""
        sql = SELECT_HIGHLIGHTS if only_highlight else SELECT_NOTIFICATIONS
        return [NotificationRow(r["room_id"], r["event_id"], int(r["stream_ordering"]),
                                json.loads(r["actions"]), int(r["ts"]),
                                r["read_upto"] is not None
                                and int(r["stream_ordering"]) <= int(r["read_upto"]))
                for r in await db.fetch(sql, user_id, before, limit)]
