"""`event_search`: the full-text index behind POST /search, and how far it has got.

PostgreSQL ranks with `ts_rank` over a tsvector (GIN index); SQLite with FTS5's `bm25`
(lower is better there, so it is negated to make higher mean closer on both engines).
Both indexes stem English (`english` configuration / `porter` tokenizer) and every
query term is a prefix match, so "martian" finds "Martians".
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import attrs

from homeserver.storage.batch import is_postgres
from homeserver.storage.database import Connection, Database

SELECT_POSITION = "SELECT indexed_upto FROM search_position WHERE id = 1"
# Compare-and-set: an indexer that read the position before another moved it matches no
# row and rolls back, so no batch is indexed twice (on PostgreSQL the row lock makes it
# wait for the first to commit before it checks).
ADVANCE_POSITION = """
UPDATE search_position SET indexed_upto = $2 WHERE id = 1 AND indexed_upto = $1
RETURNING indexed_upto
"""
# Timeline events after a position, in the order they committed (see storage/streams.py).
SELECT_EVENTS_AFTER = """
SELECT event_id, stream_ordering FROM events
WHERE stream_ordering > $1 ORDER BY stream_ordering LIMIT $2
"""
INSERT_PG = """
INSERT INTO event_search (event_id, room_id, key, sender, stream_ordering, origin_server_ts,
                          value, vector)
VALUES ($1, $2, $3, $4, $5, $6, $7, to_tsvector('english', $7))
ON CONFLICT (event_id) DO NOTHING
"""
INSERT_SQLITE = """
INSERT INTO event_search (event_id, room_id, key, sender, stream_ordering, origin_server_ts, value)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (event_id) DO NOTHING
"""
# A batch indexed inside the transaction that wrote its events (search/indexer.py), in
# one statement: the compare-and-set above and, only if it moved the position (the
# insert joins its RETURNING), the entries of events that no redaction targets. The
# targeted ones are returned (repeated if several redactions target one) and not written:
# whether a redaction applies is the caller's rule (rooms/event_loader.py). Written
# without a CTE over the entries: PostgreSQL then plans it in half the time.
ADVANCE_AND_INSERT_PG = """
WITH advanced AS (
    UPDATE search_position SET indexed_upto = $2 WHERE id = 1 AND indexed_upto = $1
    RETURNING indexed_upto
), inserted AS (
    INSERT INTO event_search (event_id, room_id, key, sender, stream_ordering,
                              origin_server_ts, value, vector)
    SELECT e.event_id, e.room_id, e.key, e.sender, e.stream_ordering, e.origin_server_ts,
           e.value, to_tsvector('english', e.value)
    FROM advanced, unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[],
                          $8::bigint[], $9::text[])
         AS e(event_id, room_id, key, sender, stream_ordering, origin_server_ts, value)
    WHERE NOT EXISTS (SELECT 1 FROM redactions d WHERE d.redacts = e.event_id)
    ON CONFLICT (event_id) DO NOTHING
)
SELECT EXISTS (SELECT 1 FROM advanced) AS advanced,
       ARRAY(SELECT d.redacts FROM redactions d WHERE d.redacts = ANY($3::text[])) AS held_back
"""
SELECT_TARGETED_SQLITE = """
SELECT DISTINCT redacts FROM redactions WHERE redacts IN (SELECT value FROM json_each($1))
"""
DELETE = "DELETE FROM event_search WHERE event_id = $1"
SELECT_VALUE = "SELECT value FROM event_search WHERE event_id = $1"

# $1 rooms, $2 query, $3 keys; rank order pages by offset ($5), recent order by the
# stream position of the last row seen ($5, exclusive).
_PG_MATCH = """
FROM event_search s, to_tsquery('english', $2) q
WHERE s.vector @@ q AND s.room_id = ANY($1::text[]) AND s.key = ANY($3::text[])
"""
_SQLITE_MATCH = """
FROM event_search_fts f JOIN event_search s ON s.id = f.rowid
WHERE event_search_fts MATCH $2
  AND s.room_id IN (SELECT value FROM json_each($1)) AND s.key IN (SELECT value FROM json_each($3))
"""
_PG_RANK = "ts_rank(s.vector, q)"
_SQLITE_RANK = "-bm25(event_search_fts)"
SEARCH_RANK_PG = f"""
SELECT s.event_id, s.stream_ordering, {_PG_RANK} AS rank {_PG_MATCH}
ORDER BY rank DESC, s.stream_ordering DESC LIMIT $4 OFFSET $5
"""
SEARCH_RANK_SQLITE = f"""
SELECT s.event_id, s.stream_ordering, {_SQLITE_RANK} AS rank {_SQLITE_MATCH}
ORDER BY rank DESC, s.stream_ordering DESC LIMIT $4 OFFSET $5
"""
SEARCH_RECENT_PG = f"""
SELECT s.event_id, s.stream_ordering, {_PG_RANK} AS rank {_PG_MATCH}
  AND s.stream_ordering < $5
ORDER BY s.stream_ordering DESC LIMIT $4
"""
SEARCH_RECENT_SQLITE = f"""
SELECT s.event_id, s.stream_ordering, {_SQLITE_RANK} AS rank {_SQLITE_MATCH}
  AND s.stream_ordering < $5
ORDER BY s.stream_ordering DESC LIMIT $4
"""
COUNT_PG = f"SELECT COUNT(*) {_PG_MATCH}"
COUNT_SQLITE = f"SELECT COUNT(*) {_SQLITE_MATCH}"


@attrs.frozen
class IndexEntry:
    event_id: str
    room_id: str
    key: str
    sender: str
    stream_ordering: int
    origin_server_ts: int
    value: str


@attrs.frozen
class SearchHit:
    event_id: str
    stream_ordering: int
    rank: float


def build_query(conn: Connection, terms: Sequence[str]) -> str:
    """The engine's query text for prefix matches of all `terms` (alphanumeric words,
    which is what keeps them from being read as query syntax)."""
    if is_postgres(conn):
        return " & ".join(f"{t}:*" for t in terms)
    return " AND ".join(f'"{t}"*' for t in terms)


def _columns(entries: Sequence[IndexEntry]) -> tuple[list[object], ...]:
    """The entries as one array per column (for unnest)."""
    return ([e.event_id for e in entries], [e.room_id for e in entries],
            [e.key for e in entries], [e.sender for e in entries],
            [e.stream_ordering for e in entries], [e.origin_server_ts for e in entries],
            [e.value for e in entries])


def _list(conn: Connection, values: Sequence[str]) -> object:
    return list(values) if is_postgres(conn) else json.dumps(list(values))


class SearchStore:
    async def indexed_upto(self, db: Database | Connection) -> int:
        return int(await db.fetchval(SELECT_POSITION) or 0)

    async def advance(self, conn: Connection, expected: int, position: int) -> bool:
        """Move the position from `expected` to `position`; False (and no change) if it
        is no longer at `expected`."""
        return await conn.fetchval(ADVANCE_POSITION, expected, position) is not None

    async def advance_and_insert(self, conn: Connection, expected: int, position: int,
                                 entries: Sequence[IndexEntry]) -> list[str] | None:
        """`advance`, then `insert` of the entries no redaction targets: None (and no
        change) if the position is no longer at `expected`, else the event IDs of the
        entries held back because a redaction targets them (possibly repeated)."""
        if is_postgres(conn):
            row = await conn.fetchrow(
                ADVANCE_AND_INSERT_PG, expected, position, *_columns(entries))
            assert row is not None
            return list(row["held_back"]) if row["advanced"] else None
        if await conn.fetchval(ADVANCE_POSITION, expected, position) is None:
            return None
        if not entries:
            return []
        rows = await conn.fetch(SELECT_TARGETED_SQLITE, json.dumps([e.event_id for e in entries]))
        targeted = {r[0] for r in rows}
        kept = [e for e in entries if e.event_id not in targeted]
        if kept:
            await conn.executemany(INSERT_SQLITE, list(zip(*_columns(kept), strict=True)))
        return [e.event_id for e in entries if e.event_id in targeted]

    async def events_after(self, db: Database | Connection, position: int,
                           limit: int) -> list[tuple[str, int]]:
        """(event_id, stream_ordering) of timeline events after `position`, oldest first."""
        rows = await db.fetch(SELECT_EVENTS_AFTER, position, limit)
        return [(r["event_id"], int(r["stream_ordering"])) for r in rows]

    async def insert(self, conn: Connection, entries: Sequence[IndexEntry]) -> None:
        if entries:
            await conn.executemany(INSERT_PG if is_postgres(conn) else INSERT_SQLITE,
                                   list(zip(*_columns(entries), strict=True)))

    async def delete(self, conn: Connection, event_ids: Sequence[str]) -> None:
        if event_ids:
            await conn.executemany(DELETE, [(e,) for e in event_ids])

    async def is_indexed(self, db: Database | Connection, event_id: str) -> bool:
        return await db.fetchval(SELECT_VALUE, event_id) is not None

    async def search_by_rank(self, conn: Connection, room_ids: Sequence[str], terms: Sequence[str],
                             keys: Sequence[str], *, offset: int, limit: int) -> list[SearchHit]:
        """Best matches first; ties newest first."""
        sql = SEARCH_RANK_PG if is_postgres(conn) else SEARCH_RANK_SQLITE
        rows = await conn.fetch(sql, _list(conn, room_ids), build_query(conn, terms),
                                _list(conn, keys), limit, offset)
        return [SearchHit(r["event_id"], int(r["stream_ordering"]), float(r["rank"])) for r in rows]

    async def search_by_recent(self, conn: Connection, room_ids: Sequence[str], terms: Sequence[str],
                               keys: Sequence[str], *, before: int, limit: int) -> list[SearchHit]:
        """Newest matches first, with stream ordering below `before`."""
        sql = SEARCH_RECENT_PG if is_postgres(conn) else SEARCH_RECENT_SQLITE
        rows = await conn.fetch(sql, _list(conn, room_ids), build_query(conn, terms),
                                _list(conn, keys), limit, before)
        return [SearchHit(r["event_id"], int(r["stream_ordering"]), float(r["rank"])) for r in rows]

    async def count(self, conn: Connection, room_ids: Sequence[str], terms: Sequence[str],
                    keys: Sequence[str]) -> int:
        """Matches before visibility and filters: the spec's "approximate count"."""
        sql = COUNT_PG if is_postgres(conn) else COUNT_SQLITE
        return int(await conn.fetchval(sql, _list(conn, room_ids), build_query(conn, terms),
                                       _list(conn, keys)) or 0)
