"""The search index: what is indexed, catch-up from the events stream, redactions, and
the store's ranking on both engines."""

from __future__ import annotations

import asyncio
from typing import Any

from homeserver.rooms.service import RoomService
from homeserver.search.indexer import SearchIndexer, index_entry
from homeserver.storage.database import Connection, Database
from homeserver.storage.search import SearchStore
from homeserver.storage.streams import current_position
from tests.rooms.conftest import ALICE, make_room


def _indexer(rooms: RoomService, database: Database, batch_size: int = 500) -> SearchIndexer:
    return SearchIndexer(database, SearchStore(), rooms.stores, rooms.loader, batch_size=batch_size)


async def _send(rooms: RoomService, room_id: str, body: str, txn: str) -> str:
    return await rooms.send.send_message(ALICE, "DEV", room_id, "m.room.message",
                                         {"msgtype": "m.text", "body": body}, txn)


async def test_index_entries_per_event_type(rooms: RoomService, database: Database) -> None:
    room_id = await make_room(rooms, name="Room name", topic="Room topic")
    message = await _send(rooms, room_id, "hello", "t1")
    blank = await _send(rooms, room_id, "   ", "t2")
    keyed = await rooms.send.set_state(ALICE, room_id, "m.room.name", "not-empty", {"name": "x"})
    async with database.connection() as conn:
        rows = await database.fetch("SELECT event_id FROM events WHERE room_id = $1", room_id)
        stored = await rooms.stores.events.get_many(conn, [r["event_id"] for r in rows])
    entries = {e.event_id: index_entry(e) for e in stored.values()}
    assert {(x.key, x.value) for x in entries.values() if x} == {
        ("content.name", "Room name"), ("content.topic", "Room topic"), ("content.body", "hello")}
    entry = entries[message]
    assert entry is not None and entry.sender == ALICE
    assert entries[blank] is None and entries[keyed] is None


async def test_catch_up_reads_the_stream_in_batches(rooms: RoomService, database: Database) -> None:
    room_id = await make_room(rooms)
    sent = [await _send(rooms, room_id, f"word{i} common", f"t{i}") for i in range(7)]
    indexer = _indexer(rooms, database, batch_size=3)
    store = SearchStore()
    assert await store.indexed_upto(database) == 0
    read = await indexer.catch_up()
    assert read == await current_position(database, "events")
    assert await store.indexed_upto(database) == read
    assert all([await store.is_indexed(database, e) for e in sent])
    assert await indexer.catch_up() == 0
    # The hook indexes new events (and anything before them not yet indexed) in the
    # background; `caught_up` waits for it.
    rooms.add_event_listener(indexer.on_event_persisted)
    later = await _send(rooms, room_id, "later", "t9")
    await indexer.caught_up()
    assert await store.is_indexed(database, later)
    await indexer.close()


class GatedStore(SearchStore):
    """Holds each pass before it reads the stream until the test opens the gate, and
    records every move of the position (one per transaction)."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.arrived = asyncio.Event()
        self.moves: list[tuple[int, int]] = []

    async def events_after(self, db: Database | Connection, position: int,
                           limit: int) -> list[tuple[str, int]]:
        self.arrived.set()
        await self.gate.wait()
        return await super().events_after(db, position, limit)

    async def advance(self, conn: Connection, expected: int, position: int) -> bool:
        moved = await super().advance(conn, expected, position)
        if moved:
            self.moves.append((expected, position))
        return moved


async def test_events_arriving_during_a_pass_are_indexed_in_one_transaction(
        rooms: RoomService, database: Database) -> None:
    room_id = await make_room(rooms)
    store = GatedStore()
    indexer = SearchIndexer(database, store, rooms.stores, rooms.loader)
    store.gate.set()
    await indexer.catch_up()
    store.moves.clear()
    store.gate.clear()
    rooms.add_event_listener(indexer.on_event_persisted)
    # The first send starts a pass, which waits at the gate while four more commit.
    sent = [await _send(rooms, room_id, f"burst {i}", f"b{i}") for i in range(5)]
    store.gate.set()
    await indexer.caught_up()
    assert len(store.moves) == 1
    assert store.moves[0][1] == await current_position(database, "events")
    assert all([await store.is_indexed(database, e) for e in sent])
    # An idle indexer handles a lone event at once, in a pass of its own.
    lone = await _send(rooms, room_id, "lone", "l1")
    await indexer.caught_up()
    assert len(store.moves) == 2 and await store.is_indexed(database, lone)
    await indexer.close()


async def test_a_pass_that_loses_the_race_rolls_back(rooms: RoomService,
                                                     database: Database) -> None:
    """Two indexers on one database (two processes): each batch is written once."""
    room_id = await make_room(rooms)
    sent = [await _send(rooms, room_id, f"race {i}", f"r{i}") for i in range(4)]
    first, second = GatedStore(), GatedStore()
    a = SearchIndexer(database, first, rooms.stores, rooms.loader)
    b = SearchIndexer(database, second, rooms.stores, rooms.loader)
    runs = asyncio.gather(a.catch_up(), b.catch_up())
    # Both have read the position (0) before either writes.
    await first.arrived.wait()
    await second.arrived.wait()
    first.gate.set()
    second.gate.set()
    await runs
    # Exactly one moved the position from 0; the other rolled back and found nothing new.
    assert [m[0] for m in first.moves + second.moves].count(0) == 1
    assert await first.indexed_upto(database) == await current_position(database, "events")
    assert all([await first.is_indexed(database, e) for e in sent])


async def test_search_waits_only_for_events_it_was_told_of(rooms: RoomService,
                                                         database: Database) -> None:
    indexer = _indexer(rooms, database)
    await indexer.caught_up()  # nothing heard: returns at once
    room_id = await make_room(rooms)
    rooms.add_event_listener(indexer.on_event_persisted)
    event_id = await _send(rooms, room_id, "told", "w1")
    await indexer.caught_up()
    assert await SearchStore().is_indexed(database, event_id)
    await indexer.close()


async def test_redactions_remove_entries(rooms: RoomService, database: Database) -> None:
    room_id = await make_room(rooms)
    indexer = _indexer(rooms, database)
    store = SearchStore()
    # Redacted before the indexer ever saw it: never indexed.
    early = await _send(rooms, room_id, "early", "t1")
    await rooms.send.redact(ALICE, "DEV", room_id, early, None, "r1")
    await indexer.catch_up()
    assert not await store.is_indexed(database, early)
    # Indexed, then redacted: removed.
    late = await _send(rooms, room_id, "late", "t2")
    await indexer.catch_up()
    assert await store.is_indexed(database, late)
    await rooms.send.redact(ALICE, "DEV", room_id, late, None, "r2")
    await indexer.catch_up()
    assert not await store.is_indexed(database, late)


async def test_store_ranks_counts_and_pages(rooms: RoomService, database: Database) -> None:
    room_id = await make_room(rooms)
    other = await make_room(rooms)
    weak = await _send(rooms, room_id, "one banana among a great many other words", "t1")
    strong = await _send(rooms, room_id, "banana banana bananas", "t2")
    await _send(rooms, other, "banana elsewhere", "t3")
    await _indexer(rooms, database).catch_up()
    store = SearchStore()
    keys = ["content.body"]
    async with database.connection() as conn:
        ranked = await store.search_by_rank(conn, [room_id], ["banana"], keys, offset=0, limit=10)
        assert [h.event_id for h in ranked] == [strong, weak]
        assert ranked[0].rank > ranked[1].rank > 0
        assert [h.event_id for h in await store.search_by_rank(
            conn, [room_id], ["banana"], keys, offset=1, limit=10)] == [weak]
        recent = await store.search_by_recent(conn, [room_id], ["banan"], keys, before=2**62, limit=10)
        assert [h.event_id for h in recent] == [strong, weak]
        older = await store.search_by_recent(conn, [room_id], ["banana"], keys,
                                             before=recent[0].stream_ordering, limit=10)
        assert [h.event_id for h in older] == [weak]
        assert await store.count(conn, [room_id, other], ["banana"], keys) == 3
        assert await store.count(conn, [room_id], ["banana", "great"], keys) == 1
        assert await store.count(conn, [room_id], ["banana"], ["content.name"]) == 0
        # Entries are written once, however often the same events are indexed.
        before = await database.fetchval("SELECT COUNT(*) FROM event_search")
        await database.execute("UPDATE search_position SET indexed_upto = 0")
    await _indexer(rooms, database).catch_up()
    assert await database.fetchval("SELECT COUNT(*) FROM event_search") == before


async def test_events_are_indexed_inside_their_own_transaction(
        rooms: RoomService, database: Database) -> None:
    """As the homeserver wires it (server.py): the batch writer indexes each batch with
    its commit, so no pass runs, and redactions take their target out the same way."""
    room_id = await make_room(rooms)
    store = GatedStore()
    indexer = SearchIndexer(database, store, rooms.stores, rooms.loader)
    store.gate.set()
    await indexer.catch_up()
    store.arrived.clear()
    store.gate.clear()  # a pass would hang here
    rooms.persister.batch_writers.append(indexer.index_in_transaction)
    rooms.add_event_listener(indexer.on_event_persisted)
    message = await _send(rooms, room_id, "indexed with its commit", "i1")
    assert await store.is_indexed(database, message)
    await rooms.send.redact(ALICE, "DEV", room_id, message, None, "i2")
    assert not await store.is_indexed(database, message)
    await indexer.caught_up()  # returns: everything heard is indexed
    assert not store.arrived.is_set()
    assert await store.indexed_upto(database) == await current_position(database, "events")
    await indexer.close()


class CountingStore(SearchStore):
    """Counts the indexer's own moves of the position: in a batch writer's statement
    (`statements`) and in a pass (`passes`)."""

    def __init__(self) -> None:
        self.statements = 0
        self.passes = 0

    async def advance_and_insert(self, conn: Connection, expected: int, position: int,
                                 entries: Any) -> list[str] | None:
        self.statements += 1
        return await super().advance_and_insert(conn, expected, position, entries)

    async def advance(self, conn: Connection, expected: int, position: int) -> bool:
        self.passes += 1
        return await super().advance(conn, expected, position)


async def test_on_postgresql_the_entries_ride_the_statement_that_writes_the_events(
        rooms: RoomService, database: Database, engine: str) -> None:
    """Wired as server.py does, a batch of messages is indexed by the timeline statement
    on PostgreSQL (no statement of the indexer's own), by the batch writer on SQLite;
    either way with its commit, and the next batch's position check holds."""
    room_id = await make_room(rooms)
    store = CountingStore()
    indexer = SearchIndexer(database, store, rooms.stores, rooms.loader)
    await indexer.catch_up()
    store.passes = 0
    rooms.persister.batch_writers.append(indexer.index_in_transaction)
    rooms.persister.timeline_search = indexer.timeline_rows
    rooms.add_event_listener(indexer.on_event_persisted)
    sent = [await _send(rooms, room_id, f"message number {i}", f"t{i}") for i in range(3)]
    no_text = await rooms.send.send_message(ALICE, "DEV", room_id, "m.room.message",
                                            {"msgtype": "m.text", "body": " "}, "t3")
    await indexer.caught_up()
    for event_id in sent:
        assert await store.is_indexed(database, event_id)
    assert not await store.is_indexed(database, no_text)
    assert await store.indexed_upto(database) == await current_position(database, "events")
    assert store.statements == (0 if engine == "postgres" else 4)
    assert store.passes == 0
    async with database.connection() as conn:
        assert await store.count(conn, [room_id], ["number"], ["content.body"]) == 3
    await indexer.close()


class FailingInsert(SearchStore):
    def __init__(self) -> None:
        self.failures = 1

    async def _fail_once(self, conn: Connection) -> None:
        if self.failures:
            self.failures -= 1
            await conn.execute("SELECT no_such_column FROM event_search")

    async def insert(self, conn: Connection, entries: Any) -> None:
        await self._fail_once(conn)
        await super().insert(conn, entries)

    async def advance_and_insert(self, conn: Connection, expected: int, position: int,
                                 entries: Any) -> list[str] | None:
        await self._fail_once(conn)
        return await super().advance_and_insert(conn, expected, position, entries)


async def test_a_failed_inline_index_is_rolled_back_and_caught_up(
        rooms: RoomService, database: Database) -> None:
    room_id = await make_room(rooms)
    store = FailingInsert()
    indexer = SearchIndexer(database, store, rooms.stores, rooms.loader)
    store.failures = 0
    await indexer.catch_up()
    store.failures = 1
    rooms.persister.batch_writers.append(indexer.index_in_transaction)
    rooms.add_event_listener(indexer.on_event_persisted)
    message = await _send(rooms, room_id, "the first write fails", "f1")
    await indexer.caught_up()
    assert store.failures == 0
    assert await store.is_indexed(database, message)
    assert await store.indexed_upto(database) == await current_position(database, "events")
    await indexer.close()


async def test_inline_indexing_holds_back_events_a_redaction_targets(
        rooms: RoomService, database: Database) -> None:
    """A redaction stored before its target (as federation may deliver them) keeps the
    target out of the index if it applies; one that does not apply (here: its event is
    unknown) does not."""
    room_id = await make_room(rooms)
    indexer = _indexer(rooms, database)
    await indexer.catch_up()
    store = SearchStore()
    first = await rooms.persister.send({"type": "m.room.message", "room_id": room_id,
                                        "sender": ALICE, "content": {"body": "redacted"}})
    second = await rooms.persister.send({"type": "m.room.message", "room_id": room_id,
                                         "sender": ALICE, "content": {"body": "kept"}})
    third = await rooms.persister.send({"type": "m.room.message", "room_id": room_id,
                                        "sender": ALICE, "content": {"body": "plain"}})
    await rooms.send.redact(ALICE, "DEV", room_id, first.event_id, None, "r1")
    await database.execute("INSERT INTO redactions (event_id, redacts, room_id, validated)"
                           " VALUES ('$unknown', $1, $2, 1)", second.event_id, room_id)
    async with database.transaction() as conn:
        recorded = await indexer.index_in_transaction(conn, [first, second, third])
    assert recorded is not None
    assert not await store.is_indexed(database, first.event_id)
    assert await store.is_indexed(database, second.event_id)
    assert await store.is_indexed(database, third.event_id)
    assert await store.indexed_upto(database) == third.stream_ordering


async def test_advance_and_insert_writes_nothing_when_the_position_moved(
        rooms: RoomService, database: Database) -> None:
    room_id = await make_room(rooms)
    persisted = await rooms.persister.send({"type": "m.room.message", "room_id": room_id,
                                            "sender": ALICE, "content": {"body": "words"}})
    entry = index_entry(await _stored(rooms, database, persisted.event_id))
    assert entry is not None
    store = SearchStore()
    async with database.transaction() as conn:
        upto = await store.indexed_upto(conn)
        assert await store.advance_and_insert(conn, upto + 1, upto + 2, [entry]) is None
        assert await store.indexed_upto(conn) == upto
        assert not await store.is_indexed(conn, entry.event_id)
        assert await store.advance_and_insert(conn, upto, upto + 2, [entry]) == []
        assert await store.indexed_upto(conn) == upto + 2
        assert await store.is_indexed(conn, entry.event_id)
        # No entries: the position still moves.
        assert await store.advance_and_insert(conn, upto + 2, upto + 3, []) == []
        assert await store.indexed_upto(conn) == upto + 3


async def _stored(rooms: RoomService, database: Database, event_id: str) -> Any:
    async with database.connection() as conn:
        return await rooms.stores.events.get(conn, event_id)
