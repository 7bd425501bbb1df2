"""A batch's head read and its timeline rows (storage/room_batch.py), on both engines:
the one-statement PostgreSQL forms answer and write what the per-table SQLite forms do."""

from __future__ import annotations

import asyncio

import attrs
import pytest
import signedjson.key

from homeserver.clock import FakeClock
from homeserver.events.pdu import Pdu
from homeserver.rooms.creation import CreateRoomRequest
from homeserver.rooms.persistence import TxnKey
from homeserver.rooms.service import RoomService
from homeserver.storage import room_batch, streams
from homeserver.storage.database import Database
from homeserver.storage.streams import current_position

ALICE = "@alice:test.local"


async def _room(database: Database, clock: FakeClock) -> tuple[RoomService, str]:
    rooms = RoomService(database, server_name="test.local",
                        signing_key=signedjson.key.generate_signing_key("t1"), clock=clock)
    return rooms, await rooms.creator.create_room(ALICE, CreateRoomRequest(preset="private_chat"))


async def test_head_of_an_unknown_room(database: Database) -> None:
    async with database.transaction() as conn:
        head = await room_batch.read_head(conn, "!nope:test.local", [(ALICE, None, "t")])
    assert head == room_batch.RoomHead(None, [], [None])


async def test_head_reads_the_room_its_extremities_and_used_transaction_ids(
        database: Database, clock: FakeClock) -> None:
    rooms, room_id = await _room(database, clock)
    sent = {}
    for device, txn in (("A", "1"), ("B", "1"), (None, "2")):
        persisted = await rooms.persister.send(
            {"type": "m.room.message", "room_id": room_id, "sender": ALICE, "content": {}},
            txn=TxnKey(ALICE, device, txn))
        sent[(device, txn)] = persisted.event_id
    async with database.transaction() as conn:
        room = await rooms.stores.rooms.get(conn, room_id)
        head = await room_batch.read_head(conn, room_id, [
            (ALICE, "B", "1"), (ALICE, "A", "9"), (ALICE, "A", "1"), (ALICE, None, "2"),
            (ALICE, "", "2"), ("@bob:test.local", "A", "1"), (ALICE, "B", "1")])
    assert head.room == room
    assert head.extremities == [sent[(None, "2")]]
    # In the order asked, repeats included; no device and "" are one scope.
    assert head.txn_events == [sent[("B", "1")], None, sent[("A", "1")], sent[(None, "2")],
                               sent[(None, "2")], None, sent[("B", "1")]]


async def test_timeline_rows_with_several_events_and_extremities(
        database: Database, clock: FakeClock) -> None:
    """Two events replacing two of three extremities, with edges, auth edges, state rows
    and transaction IDs, numbered from the stream."""
    rooms, room_id = await _room(database, clock)
    async with database.connection() as conn:
        [tip] = await rooms.stores.events.forward_extremities(conn, room_id)
        tip_pdu = (await rooms.stores.events.get_pdus(conn, [tip]))[tip]
        room = await rooms.stores.rooms.get(conn, room_id)
    assert room is not None and room.current_snapshot_id is not None

    def message(n: int) -> Pdu:
        fields = {k: v for k, v in tip_pdu.get_json().items() if k != "state_key"}
        fields.update(type="m.room.message", content={"n": n}, depth=tip_pdu.depth + n,
                      origin_server_ts=tip_pdu.origin_server_ts + n)
        return Pdu(fields, tip_pdu.room_version)
    first, second = message(1), message(2)
    async with database.transaction() as conn:
        await rooms.stores.events.update_extremities(conn, room_id, remove=[], add=["$a", "$b"])
        position = await conn.fetchval("SELECT position FROM stream_positions WHERE stream = 'events'")
        written = await room_batch.write_timeline(conn, "events", room_batch.TimelineRows(
            room_id, [(first, room.current_snapshot_id), (second, room.current_snapshot_id)],
            remove_extremities=[tip, "$a"], add_extremities=[first.event_id, second.event_id],
            txns=[(ALICE, None, "x", first.event_id), (ALICE, "D", "x", second.event_id)],
            now_ms=1234))
    orderings = written.orderings
    assert list(orderings) == [position + 1, position + 2]
    async with database.connection() as conn:
        committed = await streams.all_positions(conn)
    # Every stream's position comes with the write, as they are once committed.
    assert written.positions == committed
    async with database.connection() as conn:
        extremities = await conn.fetch(
            "SELECT event_id FROM forward_extremities WHERE room_id = $1", room_id)
        assert {r[0] for r in extremities} == {"$b", first.event_id, second.event_id}
        stored = await rooms.stores.events.get_many(conn, [first.event_id, second.event_id])
        for pdu, ordering in zip((first, second), orderings, strict=True):
            event = stored[pdu.event_id]
            assert event.stream_ordering == ordering and not event.outlier
            assert event.replaces_state is None and event.pdu.get_json() == pdu.get_json()
            state = await rooms.stores.state.get_event_state(conn, pdu.event_id)
            assert state is not None and state.before == state.after == room.current_snapshot_id
        edges = await conn.fetch("SELECT event_id, prev_event_id FROM event_edges"
                                 " WHERE event_id = $1 OR event_id = $2", first.event_id,
                                 second.event_id)
        assert sorted(tuple(r) for r in edges) == sorted(
            (p.event_id, e) for p in (first, second) for e in p.prev_event_ids)
        auth = await conn.fetch("SELECT event_id, auth_event_id FROM event_auth"
                                " WHERE event_id = $1 OR event_id = $2", first.event_id,
                                second.event_id)
        assert sorted(tuple(r) for r in auth) == sorted(
            (p.event_id, a) for p in (first, second) for a in p.auth_event_ids)
        txns = await conn.fetch("SELECT user_id, device_id, txn_id, event_id, room_id, created_ts"
                                " FROM event_txn_ids WHERE room_id = $1", room_id)
        assert sorted(tuple(r) for r in txns) == sorted([
            (ALICE, "", "x", first.event_id, room_id, 1234),
            (ALICE, "D", "x", second.event_id, room_id, 1234)])


async def _message_rows(rooms: RoomService, database: Database, room_id: str,
                        n: int) -> room_batch.TimelineRows:
    async with database.connection() as conn:
        [tip] = await rooms.stores.events.forward_extremities(conn, room_id)
        tip_pdu = (await rooms.stores.events.get_pdus(conn, [tip]))[tip]
        room = await rooms.stores.rooms.get(conn, room_id)
    assert room is not None and room.current_snapshot_id is not None
    fields = {k: v for k, v in tip_pdu.get_json().items() if k != "state_key"}
    fields.update(type="m.room.message", content={"n": n}, depth=tip_pdu.depth + 1,
                  origin_server_ts=tip_pdu.origin_server_ts + n)
    pdu = Pdu(fields, tip_pdu.room_version)
    return room_batch.TimelineRows(room_id, [(pdu, room.current_snapshot_id)],
                                   remove_extremities=[tip], add_extremities=[pdu.event_id],
                                   txns=[], now_ms=1)


@pytest.mark.parametrize("engine", ["postgres"])
async def test_positions_are_not_vouched_for_after_waiting_for_another_writer(
        database: Database, clock: FakeClock) -> None:
    """The statement's snapshot is taken before it waits for the events counter: if
    another writer held it, that writer's other positions may be missing, so the write
    reports no positions (the events stream is still numbered right)."""
    rooms, room_id = await _room(database, clock)
    rows = await _message_rows(rooms, database, room_id, 1)
    started = asyncio.Event()

    async def waiting_writer() -> room_batch.TimelineWritten:
        async with database.transaction() as conn:
            started.set()
            return await room_batch.write_timeline(conn, "events", rows)

    async with database.transaction() as first:
        # Another writer: an events position and a device-list one, not yet committed.
        taken = await streams.next_position(first, "events")
        await streams.next_position(first, "device_lists")
        task = asyncio.create_task(waiting_writer())
        await started.wait()
        for _ in range(500):  # bounded: until the second writer is seen waiting
            waiting = await database.fetchval(
                "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted")
            if waiting:
                break
            await asyncio.sleep(0.01)
        assert waiting == 1 and not task.done()
    written = await task
    assert list(written.orderings) == [taken + 1]
    assert written.positions is None
    # Alone, the same kind of write vouches for every position.
    alone = await _message_rows(rooms, database, room_id, 2)
    async with database.transaction() as conn:
        written = await room_batch.write_timeline(conn, "events", alone)
    async with database.connection() as conn:
        assert written.positions == await streams.all_positions(conn)


async def _search_rows(database: Database, room_id: str) -> list[tuple[object, ...]]:
    rows = await database.fetch(
        "SELECT event_id, room_id, key, sender, stream_ordering, origin_server_ts, value"
        " FROM event_search WHERE room_id = $1 ORDER BY stream_ordering", room_id)
    return [(r["event_id"], r["room_id"], r["key"], r["sender"], r["stream_ordering"],
             r["origin_server_ts"], r["value"]) for r in rows]


async def _search_position(database: Database) -> int:
    return int(await database.fetchval("SELECT indexed_upto FROM search_position WHERE id = 1"))


async def _two_messages(rooms: RoomService, database: Database,
                        room_id: str) -> room_batch.TimelineRows:
    one = await _message_rows(rooms, database, room_id, 1)
    two = await _message_rows(rooms, database, room_id, 2)
    return attrs.evolve(one, events=[*one.events, *two.events])


@pytest.mark.parametrize("engine", ["postgres"])
async def test_search_entries_ride_the_timeline_statement(
        database: Database, clock: FakeClock) -> None:
    """With the search position right behind the batch, its entries are written with
    the events' positions and the position moves past the batch; with the position
    elsewhere, or a stored redaction targeting one of the events (the indexer decides
    whether it applies, in its own statement), nothing of the index is written."""
    rooms, room_id = await _room(database, clock)
    async with database.transaction() as conn:
        assert room_batch.search_rides_timeline(conn)
    rows = await _two_messages(rooms, database, room_id)
    (first, _), (second, _) = rows.events
    last = await current_position(database, "events")
    await database.execute("UPDATE search_position SET indexed_upto = $1", last)
    search = room_batch.SearchRows([(0, "content.body", "first words"),
                                    (1, "content.body", "second words")])
    async with database.transaction() as conn:
        written = await room_batch.write_timeline(conn, "events", attrs.evolve(rows, search=search))
    assert list(written.orderings) == [last + 1, last + 2]
    assert written.search is True
    assert await _search_position(database) == last + 2
    assert await _search_rows(database, room_id) == [
        (first.event_id, room_id, "content.body", first.sender, last + 1,
         first.origin_server_ts, "first words"),
        (second.event_id, room_id, "content.body", second.sender, last + 2,
         second.origin_server_ts, "second words")]
    assert await database.fetchval(
        "SELECT vector @@ to_tsquery('english', 'word') FROM event_search WHERE event_id = $1",
        first.event_id)

    async def unindexed(rows: room_batch.TimelineRows, entry: tuple[int, str, str]) -> range:
        """Write `rows` with `entry`, which must not be written: the batch's positions."""
        async with database.transaction() as conn:
            written = await room_batch.write_timeline(conn, "events", attrs.evolve(
                rows, search=room_batch.SearchRows([entry])))
        assert written.search is False
        assert await _search_position(database) == last + 2
        return written.orderings

    # A redaction stored before one of the next batch's events: nothing of the index.
    rows = await _two_messages(rooms, database, room_id)
    await database.execute("INSERT INTO redactions (event_id, redacts, room_id, validated)"
                           " VALUES ('$r', $1, $2, 1)", rows.events[1][0].event_id, room_id)
    assert list(await unindexed(rows, (0, "content.body", "not here"))) == [last + 3, last + 4]
    # The position is not right behind the next batch: its events alone are written.
    rows = await _two_messages(rooms, database, room_id)
    assert list(await unindexed(rows, (1, "content.body", "not indexed"))) == [last + 5, last + 6]
    assert len(await _search_rows(database, room_id)) == 2


@pytest.mark.parametrize("engine", ["postgres"])
async def test_a_stale_head_writes_no_search_entries(database: Database, clock: FakeClock) -> None:
    rooms, room_id = await _room(database, clock)
    rows = await _message_rows(rooms, database, room_id, 1)
    last = await current_position(database, "events")
    await database.execute("UPDATE search_position SET indexed_upto = $1", last)
    room = await database.fetchval("SELECT current_snapshot_id FROM rooms WHERE room_id = $1",
                                   room_id)
    stale = room_batch.Head(int(room) + 1, rows.remove_extremities, last)
    with pytest.raises(room_batch.StaleHead):
        async with database.transaction() as conn:
            await room_batch.write_timeline(conn, "events", attrs.evolve(
                rows, expect=stale,
                search=room_batch.SearchRows([(0, "content.body", "never written")])))
    assert await _search_position(database) == last
    assert await _search_rows(database, room_id) == []


@pytest.mark.parametrize("engine", ["sqlite"])
async def test_search_entries_do_not_ride_on_sqlite(database: Database, clock: FakeClock) -> None:
    """In process a statement costs no round trip: the indexer writes the entries."""
    rooms, room_id = await _room(database, clock)
    rows = await _message_rows(rooms, database, room_id, 1)
    before = await _search_position(database)
    async with database.transaction() as conn:
        assert not room_batch.search_rides_timeline(conn)
        written = await room_batch.write_timeline(conn, "events", attrs.evolve(
            rows, search=room_batch.SearchRows([(0, "content.body", "words")])))
    assert written.search is None
    assert await _search_position(database) == before
    assert await _search_rows(database, room_id) == []
