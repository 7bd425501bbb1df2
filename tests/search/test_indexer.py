"""The search index: what is indexed, catch-up from the events stream, redactions, and
the store's ranking on both engines."""

from __future__ import annotations

from homeserver.rooms.service import RoomService
from homeserver.search.indexer import SearchIndexer, index_entry
from homeserver.storage.database import Database
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
    # The hook indexes new events (and anything before them not yet indexed).
    rooms.add_event_listener(indexer.on_event_persisted)
    later = await _send(rooms, room_id, "later", "t9")
    assert await store.is_indexed(database, later)


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
