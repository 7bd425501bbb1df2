"""Keeps the full-text index (`event_search`) in step with the events table.

Indexing runs after commit, from the persistence path's `on_event_persisted` hook, so
it never slows down or fails a send. It is driven by the events stream rather than by
the event handed to the hook: each run indexes everything after `indexed_upto` and
advances it in the same transaction. So an event committed just before a crash, or
while a hook run failed, is picked up by the next run; `catch_up()` at startup makes
that next run happen before the first search.

Redactions remove the redacted event's entry (the index holds the plain text), and an
event whose redaction was persisted first is never indexed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from homeserver.events.pdu import Pdu
from homeserver.rooms.event_loader import ClientEventLoader
from homeserver.rooms.persistence import PersistedEvent
from homeserver.rooms.stores import RoomStores
from homeserver.storage.database import Connection, Database
from homeserver.storage.events import StoredEvent
from homeserver.storage.search import IndexEntry, SearchStore

logger = logging.getLogger(__name__)

# Which content key is indexed for which event type (spec: POST /search `keys`).
INDEXED_KEYS = {
    "m.room.message": "content.body",
    "m.room.name": "content.name",
    "m.room.topic": "content.topic",
}
BATCH_SIZE = 500
# Text beyond this is not indexed: tsvector has a 1 MiB limit and nobody searches for
# the tail of a 64 KiB message.
MAX_INDEXED_CHARS = 16_384


def index_entry(event: StoredEvent) -> IndexEntry | None:
    """The index row for an event, or None if it has no searchable text."""
    pdu = event.pdu
    key = INDEXED_KEYS.get(pdu.type)
    if key is None or event.outlier or event.stream_ordering is None or pdu.rejected_reason:
        return None
    if pdu.type != "m.room.message" and pdu.state_key != "":
        return None
    value = pdu.content.get(key.removeprefix("content."))
    if not isinstance(value, str) or not value.strip():
        return None
    return IndexEntry(pdu.event_id, pdu.room_id, key, pdu.sender, event.stream_ordering,
                      pdu.origin_server_ts, value[:MAX_INDEXED_CHARS])


class SearchIndexer:
    def __init__(self, db: Database, store: SearchStore, stores: RoomStores,
                 loader: ClientEventLoader, *, batch_size: int = BATCH_SIZE):
        self._db = db
        self._store = store
        self._stores = stores
        self._loader = loader
        self._batch_size = batch_size
        # One run at a time per process; runs in other processes are harmless (inserts
        # are idempotent and the position only moves forwards).
        self._lock = asyncio.Lock()

    async def on_event_persisted(self, persisted: PersistedEvent) -> None:
        """The persistence hook: index everything committed so far."""
        await self.catch_up()

    async def catch_up(self) -> int:
        """Index every event after `indexed_upto`; returns how many events were read."""
        async with self._lock:
            total = 0
            while True:
                done = await self._index_batch()
                total += done
                if done < self._batch_size:
                    return total

    async def _index_batch(self) -> int:
        async with self._db.transaction() as conn:
            upto = await self._store.indexed_upto(conn)
            batch = await self._store.events_after(conn, upto, self._batch_size)
            if not batch:
                return 0
            stored = await self._stores.events.get_many(conn, [e for e, _ in batch])
            events = [stored[e] for e, _ in batch if e in stored]
            await self._apply_redactions(conn, [e.pdu for e in events])
            redacted = await self._loader.applied_redactions(conn, [e.pdu for e in events])
            entries = [entry for e in events
                       if e.event_id not in redacted and (entry := index_entry(e)) is not None]
            await self._store.insert(conn, entries)
            await self._store.advance(conn, batch[-1][1])
        if entries:
            logger.debug("indexed %d events up to %d", len(entries), batch[-1][1])
        return len(batch)

    async def _apply_redactions(self, conn: Connection, pdus: Sequence[Pdu]) -> None:
        """Drop the entries of events that redactions in this batch apply to."""
        target_ids = [p.redacts for p in pdus if p.type == "m.room.redaction"
                      and p.rejected_reason is None and p.redacts is not None]
        if not target_ids:
            return
        targets = await self._stores.events.get_pdus(conn, target_ids)
        for event_id in await self._loader.applied_redactions(conn, list(targets.values())):
            await self._store.delete(conn, event_id)
