"""Keeps the full-text index (`event_search`) in step with the events table.

Indexing runs after commit, off the request path: the persistence path's
`on_event_persisted` hook only notes the event and starts a background pass if none is
running, so it never slows down or fails a send. A pass is driven by the events stream
rather than by the events handed to the hook: it reads the events after `indexed_upto`
(at most `batch_size`) and writes their rows and the new position in one transaction (a
compare-and-set from where it read, so a concurrent indexer elsewhere rolls back rather
than index twice). Events committed while a pass runs make up the next one, so under
load one commit covers many events. An event committed just before a crash, or while a
pass failed, is picked up by the next pass; `catch_up()` at startup makes that happen
before the first search. Search reads its own writes: `caught_up()` waits until every
event this process committed so far is indexed.

Redactions remove the redacted event's entry (the index holds the plain text), and an
event whose redaction was persisted first is never indexed.

In the common case the passes find nothing to do: `index_in_transaction` is a batch
writer of the persistence path (rooms/persistence.py) that indexes new events inside
their own transaction, from the PDUs in memory, when the position is right behind them
(on PostgreSQL the compare-and-set, the redaction check and the rows are one statement,
storage/search.py; the compare-and-set still decides whether any row is written). On
PostgreSQL a batch of plain messages does not even take that statement: the persister
asks `timeline_rows` for the entries and the statement that writes the events writes
them too, with the same compare-and-set (storage/room_batch.py), one round trip less;
the batch writer then only acts on its outcome.
That saves a transaction per batch and the re-reading of the events, and keeps the
indexer from queueing for the database writer between sends. Events it cannot index
(the position lags, or the write failed and was rolled back) take the pass path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from homeserver.events.pdu import Pdu
from homeserver.rooms.event_loader import ClientEventLoader
from homeserver.rooms.persistence import PersistedEvent
from homeserver.rooms.stores import RoomStores
from homeserver.storage.database import Connection, Database
from homeserver.storage.events import StoredEvent
from homeserver.storage.room_batch import SearchRows
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
    if event.outlier or event.stream_ordering is None:
        return None
    return timeline_entry(event.pdu, event.stream_ordering)


def searchable(pdu: Pdu) -> tuple[str, str] | None:
    """The key and text an event is indexed under, or None if it has no searchable text."""
    key = INDEXED_KEYS.get(pdu.type)
    if key is None or pdu.rejected_reason:
        return None
    if pdu.type != "m.room.message" and pdu.state_key != "":
        return None
    value = pdu.content.get(key.removeprefix("content."))
    if not isinstance(value, str) or not value.strip():
        return None
    return key, value[:MAX_INDEXED_CHARS]


def timeline_entry(pdu: Pdu, stream_ordering: int) -> IndexEntry | None:
    """`index_entry` for an event of the timeline at `stream_ordering`."""
    found = searchable(pdu)
    if found is None:
        return None
    return IndexEntry(pdu.event_id, pdu.room_id, found[0], pdu.sender, stream_ordering,
                      pdu.origin_server_ts, found[1])


class SearchIndexer:
    def __init__(self, db: Database, store: SearchStore, stores: RoomStores,
                 loader: ClientEventLoader, *, batch_size: int = BATCH_SIZE):
        self._db = db
        self._store = store
        self._stores = stores
        self._loader = loader
        self._batch_size = batch_size
        # One pass at a time per process.
        self._lock = asyncio.Lock()
        # The newest event the hook was told of, and how far this process saw the index get.
        self._heard = 0
        self._indexed = 0
        self._worker: asyncio.Task[None] | None = None
        self._progress = asyncio.Event()
        # Events index_in_transaction indexed whose commit is not announced yet; a
        # rolled-back batch leaves its IDs behind (bounded; a lost one costs a pass).
        self._indexed_inline: set[str] = set()
        # The position as of the last inline commit announced (see record_in_transaction
        # in push/bulk_evaluator.py): saves reading it; the compare-and-set checks it.
        self._known_position: int | None = None

    async def on_event_persisted(self, persisted: PersistedEvent) -> None:
        """The after-commit hook: an event indexed with its commit (and so everything
        before it) is done; others are indexed by a background pass."""
        self._heard = max(self._heard, persisted.stream_ordering)
        if persisted.event_id in self._indexed_inline:
            self._indexed_inline.discard(persisted.event_id)
            self._known_position = persisted.stream_ordering
            self._reached(persisted.stream_ordering)
            return
        self._known_position = None
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work())

    def timeline_rows(self, pdus: Sequence[Pdu]) -> SearchRows:
        """The persister's `timeline_search` hook: the entries of a batch's new events,
        for the statement that writes them (the compare-and-set there decides, as in
        `index_in_transaction`, whether they are written)."""
        return SearchRows([(i, *found) for i, pdu in enumerate(pdus)
                           if (found := searchable(pdu)) is not None])

    async def index_in_transaction(self, conn: Connection, events: Sequence[PersistedEvent],
                                   ) -> Callable[[], None] | None:
        """Batch writer (rooms/persistence.py): index `events`, which the caller's
        transaction just wrote in stream order, if the position is right behind them.
        If the statement that wrote them took their entries (`timeline_rows`), only its
        outcome is left to act on."""
        if not events:
            return None
        if all(e.search for e in events):
            held_back: list[str] | None = []  # the statement that wrote them indexed them
        else:
            held_back = await self._advance_and_insert(conn, events)
        if held_back is None:
            self._known_position = None
            return None
        if held_back:
            # A redaction persisted before its target: indexed only if it does not apply.
            targeted = set(held_back)
            redacted = await self._loader.applied_redactions(
                conn, [e.pdu for e in events if e.event_id in targeted])
            kept = [timeline_entry(e.pdu, e.stream_ordering) for e in events
                    if e.event_id in targeted and e.event_id not in redacted]
            await self._store.insert(conn, [x for x in kept if x is not None])
        await self._store.delete(conn, await self._redacted_by(conn, [e.pdu for e in events]))

        def indexed() -> None:
            if len(self._indexed_inline) > 4096:
                self._indexed_inline.clear()
            self._indexed_inline.update(e.event_id for e in events)
        return indexed

    async def _advance_and_insert(self, conn: Connection,
                                  events: Sequence[PersistedEvent]) -> list[str] | None:
        """The entries of `events` and the position moved past them, if it is right
        behind them: SearchStore.advance_and_insert's answer, or None without a
        statement when the position is known to be elsewhere."""
        upto = events[0].stream_ordering - 1
        if self._known_position != upto and await self._store.indexed_upto(conn) != upto:
            return None
        entries = [entry for e in events
                   if (entry := timeline_entry(e.pdu, e.stream_ordering)) is not None]
        return await self._store.advance_and_insert(conn, upto, events[-1].stream_ordering,
                                                    entries)

    async def caught_up(self) -> None:
        """Returns once every event the hook was told of so far is indexed, or once
        indexing gave up on it (it failed; the next event's pass retries)."""
        target = self._heard
        while self._indexed < target and self._worker is not None and not self._worker.done():
            await self._progress.wait()

    async def close(self) -> None:
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass

    async def _work(self) -> None:
        try:
            # Stops when a pass finds nothing new, whatever `_heard` says, so that it can
            # never spin.
            while self._indexed < self._heard and await self.catch_up():
                pass
        except Exception:
            logger.exception("search indexing failed")
        finally:
            self._signal()

    def _signal(self) -> None:
        progress, self._progress = self._progress, asyncio.Event()
        progress.set()

    async def catch_up(self) -> int:
        """Index every event after `indexed_upto`; returns how many events were read."""
        async with self._lock:
            total = 0
            while True:
                read = await self._index_batch()
                if read is None:
                    continue  # another indexer got there first: read on from its position
                total += read
                if read < self._batch_size:
                    return total

    async def _index_batch(self) -> int | None:
        """One pass: the number of events read, or None if the position moved meanwhile."""
        async with self._db.connection() as conn:
            upto = await self._store.indexed_upto(conn)
            batch = await self._store.events_after(conn, upto, self._batch_size)
            if not batch:
                self._reached(upto)
                return 0
            stored = await self._stores.events.get_many(conn, [e for e, _ in batch])
            pdus = [stored[e].pdu for e, _ in batch if e in stored]
            stale = await self._redacted_by(conn, pdus)
            redacted = await self._loader.applied_redactions(conn, pdus)
            entries = [entry for e, _ in batch if e in stored and e not in redacted
                       and (entry := index_entry(stored[e])) is not None]
        position = batch[-1][1]
        async with self._db.transaction() as conn:
            if not await self._store.advance(conn, upto, position):
                return None
            await self._store.delete(conn, stale)
            await self._store.insert(conn, entries)
        self._reached(position)
        if entries:
            logger.debug("indexed %d events up to %d", len(entries), position)
        return len(batch)

    def _reached(self, position: int) -> None:
        self._indexed = max(self._indexed, position)
        self._signal()

    async def _redacted_by(self, conn: Connection, pdus: Sequence[Pdu]) -> list[str]:
        """The events that redactions among `pdus` apply to: their entries must go."""
        target_ids = [p.redacts for p in pdus if p.type == "m.room.redaction"
                      and p.rejected_reason is None and p.redacts is not None]
        if not target_ids:
            return []
        targets = await self._stores.events.get_pdus(conn, target_ids)
        return sorted(await self._loader.applied_redactions(conn, list(targets.values())))
