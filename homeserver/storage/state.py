"""Room state: snapshots stored as bounded delta chains, and the per-event state index.

A snapshot is its parent's state plus a few entries (an entry with a NULL event ID
removes a key). A state change therefore writes as many rows as keys it changes, not
as many as the room has members. Reads walk at most MAX_CHAIN parents in one recursive
query. When a chain is full the new snapshot is re-based onto the chain's full snapshot
with the accumulated delta, and only when that delta grows to a sizeable fraction of the
state is a new full snapshot written; so even the occasional re-base stays far from
copying the room (Synapse's state groups copy it every 100 changes).

Identical snapshots of a room are deduplicated through an order-independent content
hash (XOR of per-entry SHA-256), which a delta updates in O(changed keys). A hash match
is confirmed by comparing the states, so a collision can never alias two states.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import attrs

from homeserver.storage import streams
from homeserver.storage.batch import is_postgres
from homeserver.storage.database import Connection, Row

StateKey = tuple[str, str]
StateMap = dict[StateKey, str]

# Longest delta chain above a full snapshot: bounds the rows a read walks.
MAX_CHAIN = 50
# A re-base writes at most this many entries (or a quarter of the state, if larger)
# before a full snapshot is preferred.
REBASE_MIN_ENTRIES = 100
# Stream name used only as a counter for snapshot IDs (portable across both engines).
SNAPSHOT_ID_COUNTER = "state_snapshot_ids"


@attrs.frozen
class SnapshotRow:
    snapshot_id: int
    parent_id: int | None
    chain_length: int
    content_hash: str


@attrs.frozen
class EventState:
    before: int
    after: int


_CHAIN = """
WITH RECURSIVE chain (snapshot_id, parent_id, depth) AS (
    SELECT snapshot_id, parent_id, 0 FROM state_snapshots WHERE snapshot_id = $1
    UNION ALL
    SELECT s.snapshot_id, s.parent_id, c.depth + 1
    FROM state_snapshots s JOIN chain c ON s.snapshot_id = c.parent_id
)
"""
SELECT_CHAIN = _CHAIN + "SELECT snapshot_id, depth FROM chain ORDER BY depth"
SELECT_ENTRIES = _CHAIN + """
SELECT c.depth, e.type, e.state_key, e.event_id
FROM chain c JOIN state_snapshot_entries e ON e.snapshot_id = c.snapshot_id
"""
SELECT_TYPE_ENTRIES = SELECT_ENTRIES + " WHERE e.type = $2"
SELECT_ONE_ENTRY = SELECT_ENTRIES + " WHERE e.type = $2 AND e.state_key = $3 ORDER BY c.depth LIMIT 1"
SELECT_SNAPSHOT = """
SELECT snapshot_id, parent_id, chain_length, content_hash FROM state_snapshots WHERE snapshot_id = $1
"""
SELECT_BY_HASH = "SELECT snapshot_id FROM state_snapshots WHERE room_id = $1 AND content_hash = $2"
INSERT_SNAPSHOT = """
INSERT INTO state_snapshots (snapshot_id, room_id, parent_id, chain_length, content_hash)
VALUES ($1, $2, $3, $4, $5)
"""
INSERT_ENTRY = """
INSERT INTO state_snapshot_entries (snapshot_id, type, state_key, event_id) VALUES ($1, $2, $3, $4)
"""
INSERT_EVENT_STATE = """
INSERT INTO event_state (event_id, room_id, before_snapshot_id, after_snapshot_id)
VALUES ($1, $2, $3, $4)
"""
SELECT_EVENT_STATE = "SELECT before_snapshot_id, after_snapshot_id FROM event_state WHERE event_id = $1"


def _entry_hash(key: StateKey, event_id: str) -> int:
    # JSON framing keeps ("a", "b\0c") and ("a\0b", "c") apart.
    data = json.dumps([key[0], key[1], event_id]).encode()
    return int.from_bytes(hashlib.sha256(data).digest(), "big")


def state_hash(state: Mapping[StateKey, str]) -> str:
    h = 0
    for key, event_id in state.items():
        h ^= _entry_hash(key, event_id)
    return f"{h:064x}"


def _fold(rows: list[Row]) -> dict[StateKey, str | None]:
    """Entries of a chain, nearest snapshot first wins (deletions kept as None)."""
    folded: dict[StateKey, str | None] = {}
    for r in sorted(rows, key=lambda r: r["depth"]):
        folded.setdefault((r["type"], r["state_key"]), r["event_id"])
    return folded


def apply_changes(state: Mapping[StateKey, str], changes: Mapping[StateKey, str | None]) -> StateMap:
    result = dict(state)
    for key, event_id in changes.items():
        if event_id is None:
            result.pop(key, None)
        else:
            result[key] = event_id
    return result


def diff_states(old: Mapping[StateKey, str], new: Mapping[StateKey, str]) -> dict[StateKey, str | None]:
    """The changes turning `old` into `new` (None removes a key)."""
    changes: dict[StateKey, str | None] = {k: v for k, v in new.items() if old.get(k) != v}
    changes.update({k: None for k in old if k not in new})
    return changes


class StateStore:
    async def get_state(self, conn: Connection, snapshot_id: int) -> StateMap:
        folded = _fold(await conn.fetch(SELECT_ENTRIES, snapshot_id))
        return {k: v for k, v in folded.items() if v is not None}

    async def get_entry(self, conn: Connection, snapshot_id: int, event_type: str,
                        state_key: str) -> str | None:
        row = await conn.fetchrow(SELECT_ONE_ENTRY, snapshot_id, event_type, state_key)
        return None if row is None else row["event_id"]  # type: ignore[no-any-return]

    async def get_entries(self, conn: Connection, snapshot_id: int,
                          keys: list[StateKey]) -> StateMap:
        """A few keys of a snapshot (e.g. the auth events of a new event)."""
        found: StateMap = {}
        for key in dict.fromkeys(keys):
            event_id = await self.get_entry(conn, snapshot_id, *key)
            if event_id is not None:
                found[key] = event_id
        return found

    async def get_state_of_type(self, conn: Connection, snapshot_id: int,
                                event_type: str) -> dict[str, str]:
        """`state_key -> event_id` for one event type (e.g. all m.room.member)."""
        folded = _fold(await conn.fetch(SELECT_TYPE_ENTRIES, snapshot_id, event_type))
        return {k[1]: v for k, v in folded.items() if v is not None}

    async def create_snapshot(self, conn: Connection, room_id: str, parent_id: int | None,
                              changes: Mapping[StateKey, str | None]) -> int:
        """The snapshot of `parent` + `changes`: an existing equal one, or a new one.

        Rows written: the changed keys, except at a full chain (see the module doc)."""
        if parent_id is None:
            return await self._full(conn, room_id, {k: v for k, v in changes.items() if v is not None})
        parent = await self._snapshot(conn, parent_id)
        old = {key: await self.get_entry(conn, parent_id, *key) for key in changes}
        delta = {k: v for k, v in changes.items() if old[k] != v}
        if not delta:
            return parent_id
        h = int(parent.content_hash, 16)
        for key, event_id in delta.items():
            old_id = old[key]
            if old_id is not None:
                h ^= _entry_hash(key, old_id)
            if event_id is not None:
                h ^= _entry_hash(key, event_id)
        content_hash = f"{h:064x}"
        existing = await self._find_equal(conn, room_id, content_hash, parent_id, delta)
        if existing is not None:
            return existing
        if parent.chain_length < MAX_CHAIN:
            return await self._write(conn, room_id, parent_id, parent.chain_length + 1,
                                     content_hash, delta)
        return await self._rebase(conn, room_id, parent_id, delta, content_hash)

    async def _snapshot(self, conn: Connection, snapshot_id: int) -> SnapshotRow:
        row = await conn.fetchrow(SELECT_SNAPSHOT, snapshot_id)
        if row is None:
            raise LookupError(f"unknown state snapshot {snapshot_id}")
        return SnapshotRow(row["snapshot_id"], row["parent_id"], row["chain_length"], row["content_hash"])

    async def _find_equal(self, conn: Connection, room_id: str, content_hash: str,
                          parent_id: int, delta: Mapping[StateKey, str | None]) -> int | None:
        candidates = [r["snapshot_id"] for r in await conn.fetch(SELECT_BY_HASH, room_id, content_hash)]
        if not candidates:
            return None
        wanted = apply_changes(await self.get_state(conn, parent_id), delta)
        for candidate in candidates:
            if await self.get_state(conn, candidate) == wanted:
                return candidate  # type: ignore[no-any-return]
        return None

    async def _rebase(self, conn: Connection, room_id: str, parent_id: int,
                      delta: Mapping[StateKey, str | None], content_hash: str) -> int:
        chain = await conn.fetch(SELECT_CHAIN, parent_id)
        root_id, root_depth = chain[-1]["snapshot_id"], chain[-1]["depth"]
        rows = await conn.fetch(SELECT_ENTRIES, parent_id)
        root = {(r["type"], r["state_key"]): r["event_id"] for r in rows if r["depth"] == root_depth}
        accumulated = _fold([r for r in rows if r["depth"] < root_depth])
        accumulated.update(delta)
        accumulated = {k: v for k, v in accumulated.items() if root.get(k) != v}
        if len(accumulated) <= max(REBASE_MIN_ENTRIES, len(root) // 4):
            return await self._write(conn, room_id, root_id, 1, content_hash, accumulated)
        full = apply_changes({k: v for k, v in root.items() if v is not None}, accumulated)
        return await self._write(conn, room_id, None, 0, content_hash, full)

    async def _full(self, conn: Connection, room_id: str, state: Mapping[StateKey, str]) -> int:
        content_hash = state_hash(state)
        for r in await conn.fetch(SELECT_BY_HASH, room_id, content_hash):
            if await self.get_state(conn, r["snapshot_id"]) == state:
                return r["snapshot_id"]  # type: ignore[no-any-return]
        return await self._write(conn, room_id, None, 0, content_hash, state)

    async def _write(self, conn: Connection, room_id: str, parent_id: int | None,
                     chain_length: int, content_hash: str,
                     entries: Mapping[StateKey, str | None]) -> int:
        snapshot_id = await next_snapshot_id(conn)
        await conn.execute(INSERT_SNAPSHOT, snapshot_id, room_id, parent_id, chain_length, content_hash)
        if entries:
            await conn.executemany(INSERT_ENTRY, [(snapshot_id, k[0], k[1], v) for k, v in entries.items()])
        return snapshot_id

    async def set_event_state(self, conn: Connection, event_id: str, room_id: str,
                              before: int, after: int) -> None:
        await conn.execute(INSERT_EVENT_STATE, event_id, room_id, before, after)

    async def get_event_state(self, conn: Connection, event_id: str) -> EventState | None:
        """The snapshots before and after an event (None for outliers and unknown events)."""
        row = await conn.fetchrow(SELECT_EVENT_STATE, event_id)
        return None if row is None else EventState(row[0], row[1])


NEXT_SNAPSHOT_ID_PG = "SELECT nextval('state_snapshot_ids')"


async def next_snapshot_id(conn: Connection) -> int:
    """A fresh snapshot ID. PostgreSQL: a sequence (schema 0012), because the counter row
    would stay locked until commit and order against the events stream row. SQLite: the
    counter, since its single writer cannot deadlock."""
    if is_postgres(conn):
        return int(await conn.fetchval(NEXT_SNAPSHOT_ID_PG))
    return await streams.next_position(conn, SNAPSHOT_ID_COUNTER)
