"""`event_relations`: which event relates to which, for /relations, /threads and the
bundled aggregations (spec: https://spec.matrix.org/v1.19/client-server-api/#forming-relationships-between-events).

Timeline order is stream ordering, as everywhere else in the client API. An empty
string stands for "any" in the optional filters so that each query stays one constant.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from homeserver.storage.batch import fetch_for_ids, is_postgres, json_id_list
from homeserver.storage.database import Connection
from homeserver.storage.events import Redaction

THREAD = "m.thread"


@attrs.frozen
class RelationRow:
    event_id: str
    relates_to_id: str
    rel_type: str
    aggregation_key: str | None
    room_id: str
    sender: str
    type: str
    stream_ordering: int


@attrs.frozen
class ThreadSummaryRow:
    root_id: str
    latest_event_id: str
    count: int
    # Replies the given user sent (the root's sender is checked by the caller).
    own_replies: int


@attrs.frozen
class ThreadRootRow:
    root_id: str
    latest_stream_ordering: int


@attrs.frozen
class ParentRelationRow:
    event_id: str
    relates_to_id: str
    rel_type: str
    sender: str
    type: str
    origin_server_ts: int


@attrs.frozen
class FormatRead:
    """What formatting a batch of events reads: `target -> accepted redactions`, oldest
    first (as EventStore.redactions_of); the parents' edits and references, oldest
    first; `root -> thread summary`."""

    redactions: dict[str, list[Redaction]]
    edits_and_references: list[ParentRelationRow]
    threads: dict[str, ThreadSummaryRow]


_COLUMNS = "event_id, relates_to_id, rel_type, aggregation_key, room_id, sender, type, stream_ordering"

INSERT = f"""
INSERT INTO event_relations ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT DO NOTHING
"""
SELECT_ONE = f"SELECT {_COLUMNS} FROM event_relations WHERE event_id = $1"
DELETE = "DELETE FROM event_relations WHERE event_id = $1"

# Children down to depth $2 (1 = direct children only); filters apply at every depth.
# An event relates to one parent, so the walk is a tree and yields no duplicates; the
# depth bound stops it even on a forged cycle.
_CHILDREN = """
WITH RECURSIVE related (event_id, depth) AS (
    SELECT event_id, 1 FROM event_relations WHERE relates_to_id = $1 AND room_id = $3
    UNION ALL
    SELECT r.event_id, related.depth + 1 FROM event_relations r
    JOIN related ON r.relates_to_id = related.event_id
    WHERE related.depth < $2 AND r.room_id = $3
)
SELECT r.event_id, r.stream_ordering FROM related JOIN event_relations r ON r.event_id = related.event_id
WHERE (r.rel_type = $4 OR $4 = '') AND (r.type = $5 OR $5 = '')
"""
# Backward: $6 >= stream_ordering > $7, newest first. Forward: $6 < stream_ordering <= $7.
SELECT_CHILDREN_BACKWARD = _CHILDREN + """
  AND r.stream_ordering <= $6 AND r.stream_ordering > $7
ORDER BY r.stream_ordering DESC LIMIT $8
"""
SELECT_CHILDREN_FORWARD = _CHILDREN + """
  AND r.stream_ordering > $6 AND r.stream_ordering <= $7
ORDER BY r.stream_ordering ASC LIMIT $8
"""

# Per thread root: the latest reply, the number of replies and how many are $2's.
_THREAD_SUMMARIES = """
SELECT t.relates_to_id, r.event_id, t.n, t.own FROM (
    SELECT relates_to_id, COUNT(*) AS n, MAX(stream_ordering) AS latest,
           SUM(CASE WHEN sender = $2 THEN 1 ELSE 0 END) AS own
    FROM event_relations WHERE rel_type = 'm.thread' AND relates_to_id {}
    GROUP BY relates_to_id
) t JOIN event_relations r ON r.relates_to_id = t.relates_to_id AND r.stream_ordering = t.latest
"""
# The ID arrays go through a scalar subquery on PostgreSQL so that the generic plan is
# kept rather than a custom plan made on every execution (see SELECT_REDACTIONS_PG): the
# union below took 0.15 ms to plan for 0.02 ms to run.
_IDS_PG = "= ANY((SELECT {}::text[])::text[])"
_IDS_SQLITE = "IN (SELECT value FROM json_each({}))"
SELECT_THREAD_SUMMARIES_PG = _THREAD_SUMMARIES.format(_IDS_PG.format("$1"))
SELECT_THREAD_SUMMARIES_SQLITE = _THREAD_SUMMARIES.format(_IDS_SQLITE.format("$1"))

# What formatting a batch of events for a client reads, in one round trip (it is on the
# delivery path of every woken /sync): `kind` 0, the accepted redactions targeting any
# of $3 (oldest first, as EventStore.redactions_of); 1, the edits and references of the
# parents $1 (oldest first; n is the child's origin_server_ts); 2, the thread summaries
# of $1 for user $2 (event_id is the latest reply, n the count, own the user's replies).
_FORMAT_READ = """
SELECT 0 AS kind, d.event_id, d.redacts AS target, NULL AS rel_type, NULL AS sender,
       NULL AS type, d.validated AS n, CAST(NULL AS BIGINT) AS own, e.stream_ordering AS ord
FROM redactions d {redaction_event}
WHERE d.redacts {events}
UNION ALL
SELECT 1, r.event_id, r.relates_to_id, r.rel_type, r.sender, r.type, e.origin_server_ts,
       NULL, r.stream_ordering
FROM event_relations r {child_event}
WHERE r.rel_type IN ('m.replace', 'm.reference') AND r.relates_to_id {parents}
UNION ALL
SELECT 2, s.event_id, s.relates_to_id, NULL, NULL, NULL, s.n, s.own, NULL FROM ({threads}) s
ORDER BY kind, ord
"""
# LATERAL ... LIMIT 1 on PostgreSQL so that even a generic plan made while `events` was
# nearly empty looks the events up by primary key (see SELECT_REDACTIONS_PG).
SELECT_FORMAT_READ_PG = _FORMAT_READ.format(
    redaction_event="CROSS JOIN LATERAL (SELECT e.stream_ordering FROM events e WHERE"
                    " e.event_id = d.event_id AND e.rejected_reason IS NULL LIMIT 1) e",
    events=_IDS_PG.format("$3"),
    child_event="CROSS JOIN LATERAL (SELECT e.origin_server_ts FROM events e"
                " WHERE e.event_id = r.event_id LIMIT 1) e",
    parents=_IDS_PG.format("$1"), threads=SELECT_THREAD_SUMMARIES_PG)
SELECT_FORMAT_READ_SQLITE = _FORMAT_READ.format(
    redaction_event="JOIN events e ON e.event_id = d.event_id AND e.rejected_reason IS NULL",
    events=_IDS_SQLITE.format("$3"),
    child_event="JOIN events e ON e.event_id = r.event_id",
    parents=_IDS_SQLITE.format("$1"), threads=SELECT_THREAD_SUMMARIES_SQLITE)

# A room's thread roots we hold, by latest reply, at or before position $2. With a user
# in $4, only threads they started or replied in (an empty $4 means every thread).
SELECT_THREAD_ROOTS = """
SELECT t.relates_to_id, MAX(t.stream_ordering) AS latest FROM event_relations t
JOIN events e ON e.event_id = t.relates_to_id
WHERE t.room_id = $1 AND t.rel_type = 'm.thread'
GROUP BY t.relates_to_id, e.sender
HAVING MAX(t.stream_ordering) <= $2
   AND ($4 = '' OR e.sender = $4 OR SUM(CASE WHEN t.sender = $4 THEN 1 ELSE 0 END) > 0)
ORDER BY latest DESC LIMIT $3
"""


class RelationStore:
    async def insert(self, conn: Connection, row: RelationRow) -> None:
        await conn.execute(INSERT, row.event_id, row.relates_to_id, row.rel_type,
                           row.aggregation_key, row.room_id, row.sender, row.type,
                           row.stream_ordering)

    async def get(self, conn: Connection, event_id: str) -> RelationRow | None:
        r = await conn.fetchrow(SELECT_ONE, event_id)
        if r is None:
            return None
        return RelationRow(r["event_id"], r["relates_to_id"], r["rel_type"], r["aggregation_key"],
                           r["room_id"], r["sender"], r["type"], r["stream_ordering"])

    async def delete(self, conn: Connection, event_id: str) -> None:
        await conn.execute(DELETE, event_id)

    async def children(self, conn: Connection, parent_id: str, room_id: str, *,
                       rel_type: str | None, event_type: str | None, depth: int,
                       forward: bool, from_position: int, to_position: int,
                       limit: int) -> list[tuple[str, int]]:
        """`(event_id, stream_ordering)` of the parent's children, newest first going
        backward (`to < ordering <= from`), oldest first going forward (`from < ordering <= to`)."""
        sql = SELECT_CHILDREN_FORWARD if forward else SELECT_CHILDREN_BACKWARD
        rows = await conn.fetch(sql, parent_id, depth, room_id, rel_type or "", event_type or "",
                                from_position, to_position, limit)
        return [(r["event_id"], r["stream_ordering"]) for r in rows]

    async def redactions_and_relations(self, conn: Connection, event_ids: Sequence[str], *,
                                       parent_ids: Sequence[str], user_id: str) -> FormatRead:
        """The redactions of `event_ids` and the relations bundled into `parent_ids`
        (for `user_id`), in one statement."""
        if is_postgres(conn):
            rows = await conn.fetch(SELECT_FORMAT_READ_PG, list(parent_ids), user_id, list(event_ids))
        else:
            rows = await conn.fetch(SELECT_FORMAT_READ_SQLITE, json_id_list(parent_ids), user_id,
                                    json_id_list(event_ids))
        redactions: dict[str, list[Redaction]] = {}
        children: list[ParentRelationRow] = []
        threads: dict[str, ThreadSummaryRow] = {}
        for r in rows:
            if r["kind"] == 0:
                redactions.setdefault(r["target"], []).append(
                    Redaction(r["event_id"], r["target"], bool(r["n"])))
            elif r["kind"] == 1:
                children.append(ParentRelationRow(r["event_id"], r["target"], r["rel_type"],
                                                  r["sender"], r["type"], int(r["n"])))
            else:
                threads[r["target"]] = ThreadSummaryRow(r["target"], r["event_id"], int(r["n"]),
                                                        int(r["own"] or 0))
        return FormatRead(redactions, children, threads)

    async def thread_summaries(self, conn: Connection, root_ids: Sequence[str],
                               user_id: str) -> dict[str, ThreadSummaryRow]:
        rows = await fetch_for_ids(conn, SELECT_THREAD_SUMMARIES_PG, SELECT_THREAD_SUMMARIES_SQLITE,
                                   root_ids, user_id)
        return {r["relates_to_id"]: ThreadSummaryRow(r["relates_to_id"], r["event_id"], int(r["n"]),
                                                     int(r["own"] or 0)) for r in rows}

    async def thread_roots(self, conn: Connection, room_id: str, *, at_or_before: int,
                           limit: int, participant: str | None) -> list[ThreadRootRow]:
        """Thread roots by latest reply, newest first; `participant` keeps only the
        threads that user started or replied in."""
        rows = await conn.fetch(SELECT_THREAD_ROOTS, room_id, at_or_before, limit, participant or "")
        return [ThreadRootRow(r["relates_to_id"], r["latest"]) for r in rows]
