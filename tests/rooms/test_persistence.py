"""The one persistence path: graph, state, stream order, txn IDs, locks, callbacks."""

from __future__ import annotations

import asyncio

import pytest
import signedjson.key

from homeserver.clock import FakeClock
from homeserver.errors import Forbidden, NotFound, TooLarge
from homeserver.rooms import persistence
from homeserver.rooms.auth_memo import AuthMemo
from homeserver.rooms.persistence import PersistedEvent, TxnKey
from homeserver.rooms.service import RoomService
from homeserver.storage import room_batch, streams
from homeserver.storage.database import Connection, Database
from tests.rooms.conftest import ALICE, BOB, SERVER, make_room

MESSAGE = {"msgtype": "m.text", "body": "hello"}


async def _count(db: Database, sql: str, *args: object) -> int:
    return int(await db.fetchval(sql, *args))


async def test_create_room_builds_a_linear_graph(rooms: RoomService, database: Database) -> None:
    room_id = await make_room(rooms, preset="public_chat", name="Room")
    rows = await database.fetch(
        "SELECT event_id, type, stream_ordering FROM events WHERE room_id = $1 ORDER BY stream_ordering",
        room_id)
    types = [r["type"] for r in rows]
    assert types == ["m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules",
                     "m.room.history_visibility", "m.room.guest_access", "m.room.name"]
    async with database.connection() as conn:
        extremities = await rooms.stores.events.forward_extremities(conn, room_id)
        assert extremities == [rows[-1]["event_id"]]
        pdus = await rooms.stores.events.get_pdus(conn, [r["event_id"] for r in rows])
        for earlier, later in zip(rows, rows[1:], strict=False):
            assert pdus[later["event_id"]].prev_event_ids == [earlier["event_id"]]
        current = await rooms.stores.current_state.get_state(conn, room_id)
        last_state = await rooms.stores.state.get_event_state(conn, rows[-1]["event_id"])
        assert last_state is not None
        assert await rooms.stores.state.get_state(conn, last_state.after) == current
        assert len(current) == 7
        create_state = await rooms.stores.state.get_event_state(conn, rows[0]["event_id"])
        assert create_state is not None
        assert await rooms.stores.state.get_state(conn, create_state.before) == {}


async def test_v12_room_id_is_derived_from_the_create_event(rooms: RoomService, database: Database) -> None:
    room_id = await make_room(rooms)
    create_id = await database.fetchval(
        "SELECT event_id FROM events WHERE room_id = $1 AND type = 'm.room.create'", room_id)
    assert room_id == "!" + create_id[1:]
    assert ":" not in room_id


async def test_message_does_not_create_state_snapshots(rooms: RoomService, database: Database) -> None:
    room_id = await make_room(rooms)
    before = await _count(database, "SELECT COUNT(*) FROM state_snapshots")
    event_id = await rooms.send.send_message(ALICE, "DEV", room_id, "m.room.message", MESSAGE, "t1")
    assert await _count(database, "SELECT COUNT(*) FROM state_snapshots") == before
    async with database.connection() as conn:
        es = await rooms.stores.state.get_event_state(conn, event_id)
        assert es is not None and es.before == es.after


async def test_transaction_ids_are_idempotent(rooms: RoomService, database: Database) -> None:
    room_id = await make_room(rooms)
    first = await rooms.send.send_message(ALICE, "DEV", room_id, "m.room.message", MESSAGE, "txn")
    again = await rooms.send.send_message(ALICE, "DEV", room_id, "m.room.message", MESSAGE, "txn")
    other_device = await rooms.send.send_message(ALICE, "DEV2", room_id, "m.room.message", MESSAGE, "txn")
    assert first == again != other_device
    persisted = await rooms.persister.send(
        {"type": "m.room.message", "room_id": room_id, "sender": ALICE, "content": MESSAGE},
        txn=TxnKey(ALICE, "DEV", "txn"))
    assert persisted.deduplicated and persisted.event_id == first
    assert await _count(database, "SELECT COUNT(*) FROM events WHERE type = 'm.room.message'") == 2


async def test_callbacks_run_after_commit_and_failures_are_contained(rooms: RoomService, database: Database) -> None:
    seen: list[PersistedEvent] = []

    async def record(event: PersistedEvent) -> None:
        # Committed: visible from another connection.
        assert await database.fetchval("SELECT 1 FROM events WHERE event_id = $1", event.event_id) == 1
        seen.append(event)

    async def broken(event: PersistedEvent) -> None:
        raise RuntimeError("observer bug")

    rooms.add_event_listener(broken)
    rooms.add_event_listener(record)
    room_id = await make_room(rooms)
    assert [e.pdu.type for e in seen][:2] == ["m.room.create", "m.room.member"]
    orderings = [e.stream_ordering for e in seen]
    assert orderings == sorted(orderings) and len(set(orderings)) == len(orderings)
    assert all(e.room_id == room_id for e in seen)


async def test_concurrent_sends_stay_linear(rooms: RoomService, database: Database) -> None:
    room_id = await make_room(rooms)
    ids = await asyncio.gather(*[
        rooms.send.send_message(ALICE, "DEV", room_id, "m.room.message", {"body": str(i)}, f"t{i}")
        for i in range(15)])
    assert len(set(ids)) == 15
    async with database.connection() as conn:
        assert len(await rooms.stores.events.forward_extremities(conn, room_id)) == 1
        pdus = await rooms.stores.events.get_pdus(conn, ids)
    assert all(len(p.prev_event_ids) == 1 for p in pdus.values())
    assert len(rooms.persister._locks) == 0  # lock entries are dropped when unused


async def test_rejected_events_leave_no_trace(rooms: RoomService, database: Database) -> None:
    room_id = await make_room(rooms)
    count = await _count(database, "SELECT COUNT(*) FROM events")
    position = await database.fetchval("SELECT position FROM stream_positions WHERE stream = 'events'")
    with pytest.raises(Forbidden):
        await rooms.persister.send({"type": "m.room.message", "room_id": room_id, "sender": BOB,
                                    "content": MESSAGE})
    with pytest.raises(TooLarge):
        await rooms.persister.send({"type": "m.room.message", "room_id": room_id, "sender": ALICE,
                                    "content": {"body": "x" * 70_000}})
    with pytest.raises(NotFound):
        await rooms.persister.send({"type": "m.room.message", "room_id": "!nope:test.local",
                                    "sender": ALICE, "content": MESSAGE})
    assert await _count(database, "SELECT COUNT(*) FROM events") == count
    assert await database.fetchval("SELECT position FROM stream_positions WHERE stream = 'events'") == position


async def test_forks_are_merged_by_the_next_local_event(rooms: RoomService, database: Database) -> None:
    """Two extremities (as federation creates): the next event cites both and current
    state is their resolution."""
    room_id = await make_room(rooms, preset="public_chat")
    await rooms.membership.join(BOB, room_id)
    async with database.transaction() as conn:
        [tip] = await rooms.stores.events.forward_extremities(conn, room_id)
        tip_pdu = (await rooms.stores.events.get_pdus(conn, [tip]))[tip]
        [parent] = tip_pdu.prev_event_ids
        # Fork: re-point the extremities at the tip's parent as well.
        await rooms.stores.events.update_extremities(conn, room_id, remove=[], add=[parent])
    name_id = await rooms.send.set_state(ALICE, room_id, "m.room.name", "", {"name": "merged"})
    async with database.connection() as conn:
        pdu = (await rooms.stores.events.get_pdus(conn, [name_id]))[name_id]
        assert set(pdu.prev_event_ids) == {tip, parent}
        assert await rooms.stores.events.forward_extremities(conn, room_id) == [name_id]
        current = await rooms.stores.current_state.get_state(conn, room_id)
    assert current[("m.room.member", BOB)] == tip
    assert current[("m.room.name", "")] == name_id


async def test_queued_sends_to_a_room_share_a_transaction_and_fail_alone(
        rooms: RoomService, database: Database) -> None:
    """Sends that queue up behind a busy room are persisted together (one transaction),
    each rejected one fails alone, and a repeated transaction ID inside one batch still
    yields one event."""
    room_id = await make_room(rooms)
    transactions = 0
    real_transaction = database.transaction

    def counting_transaction() -> object:
        nonlocal transactions
        transactions += 1
        return real_transaction()

    database.transaction = counting_transaction  # type: ignore[method-assign]
    count = await _count(database, "SELECT COUNT(*) FROM events")

    def send(sender: str, body: str, txn: str | None) -> object:
        return rooms.persister.send(
            {"type": "m.room.message", "room_id": room_id, "sender": sender, "content": {"body": body}},
            txn=TxnKey(sender, "DEV", txn) if txn else None)

    results = await asyncio.gather(
        send(ALICE, "0", "a"), send(ALICE, "1", "b"), send(BOB, "not joined", None),
        send(ALICE, "1 again", "b"), send(ALICE, "2", "c"), return_exceptions=True)
    database.transaction = real_transaction  # type: ignore[method-assign]

    assert isinstance(results[2], Forbidden)
    ok = [r for r in results if isinstance(r, PersistedEvent)]
    assert len(ok) == 4
    assert results[3].event_id == results[1].event_id and results[3].deduplicated  # type: ignore[union-attr]
    assert await _count(database, "SELECT COUNT(*) FROM events") == count + 3
    # The first send ran alone; the four queued behind it shared one transaction.
    assert transactions == 2
    async with database.connection() as conn:
        assert len(await rooms.stores.events.forward_extremities(conn, room_id)) == 1
    assert rooms.persister._queued == {}


async def test_a_send_cancelled_while_queued_is_never_persisted(rooms: RoomService, database: Database) -> None:
    room_id = await make_room(rooms)
    count = await _count(database, "SELECT COUNT(*) FROM events")
    # The first send holds the room lock until the gate opens (on SQLite a send may
    # otherwise run start to finish without ever yielding).
    gate, holding = asyncio.Event(), asyncio.Event()
    events = rooms.stores.events
    lock_room = events.lock_room

    async def held_lock_room(conn: object, room: str) -> None:
        holding.set()
        await gate.wait()
        await lock_room(conn, room)  # type: ignore[arg-type]
    events.lock_room = held_lock_room  # type: ignore[method-assign, assignment]
    first = asyncio.create_task(rooms.persister.send(
        {"type": "m.room.message", "room_id": room_id, "sender": ALICE, "content": {"body": "1"}}))
    await holding.wait()  # first holds the room lock
    events.lock_room = lock_room  # type: ignore[method-assign]
    doomed = asyncio.create_task(rooms.persister.send(
        {"type": "m.room.message", "room_id": room_id, "sender": ALICE, "content": {"body": "2"}}))
    await asyncio.sleep(0)  # doomed is queued behind it
    assert len(rooms.persister._queued[room_id]) == 1
    doomed.cancel()
    gate.set()
    await first
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert await _count(database, "SELECT COUNT(*) FROM events") == count + 1
    assert rooms.persister._queued == {}


async def test_a_batch_leader_cancelled_mid_batch_still_persists_the_others(
        rooms: RoomService, database: Database) -> None:
    """The send that leads a batch is cancelled (its client went away) while the batch
    is being written: the batch still commits, the other senders get their events and
    their callbacks run; only the leader's own request ends cancelled."""
    room_id = await make_room(rooms)
    count = await _count(database, "SELECT COUNT(*) FROM events")
    notified: list[str] = []

    async def on_event(persisted: PersistedEvent) -> None:
        notified.append(persisted.event_id)
    rooms.persister.on_event_persisted.append(on_event)
    # The first send takes the room lock and waits at the gate, so the next ones queue
    # behind it; the second lock_room (the batch of the queued ones) waits at another.
    first_gate, batch_gate = asyncio.Event(), asyncio.Event()
    at_first, at_batch = asyncio.Event(), asyncio.Event()
    events = rooms.stores.events
    lock_room = events.lock_room
    calls = 0

    async def gated_lock_room(conn: object, room: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            at_first.set()
            await first_gate.wait()
        elif calls == 2:
            at_batch.set()
            await batch_gate.wait()
        await lock_room(conn, room)  # type: ignore[arg-type]
    events.lock_room = gated_lock_room  # type: ignore[method-assign, assignment]

    def send(body: str) -> asyncio.Task[PersistedEvent]:
        return asyncio.create_task(rooms.persister.send(
            {"type": "m.room.message", "room_id": room_id, "sender": ALICE,
             "content": {"body": body}}))
    first = send("first")
    await at_first.wait()
    leader, second, third = send("leader"), send("second"), send("third")
    await asyncio.sleep(0)
    first_gate.set()
    await first
    await at_batch.wait()  # the leader's batch (leader, second, third) is in its transaction
    leader.cancel()
    batch_gate.set()
    persisted = await asyncio.gather(second, third)
    with pytest.raises(asyncio.CancelledError):
        await leader
    events.lock_room = lock_room  # type: ignore[method-assign]
    assert await _count(database, "SELECT COUNT(*) FROM events") == count + 4
    assert {p.event_id for p in persisted} <= set(notified)
    assert len(notified) == 4  # the leader's own event too: it committed with the batch
    assert rooms.persister._queued == {}


async def test_a_batch_builds_each_event_on_the_one_before(rooms: RoomService, database: Database) -> None:
    """Within a batch, later sends see what earlier ones changed (state, extremities,
    auth events) without re-reading it: the graph stays linear and the current state
    is the state after the last event."""
    room_id = await make_room(rooms)

    def send(fields: dict[str, object]) -> object:
        return rooms.persister.send({"room_id": room_id, "sender": ALICE, **fields})

    results = await asyncio.gather(
        send({"type": "m.room.message", "content": {"body": "1"}}),
        send({"type": "m.room.name", "state_key": "", "content": {"name": "first"}}),
        send({"type": "m.room.message", "content": {"body": "2"}}),
        send({"type": "m.room.power_levels", "state_key": "",
              "content": {"users": {BOB: 50}, "events_default": 50}}),
        send({"type": "m.room.name", "state_key": "", "content": {"name": "second"}}),
        send({"type": "m.room.message", "content": {"body": "3"}}))
    persisted = [r for r in results if isinstance(r, PersistedEvent)]
    assert len(persisted) == 6
    for earlier, later in zip(persisted, persisted[1:], strict=False):
        assert later.pdu.prev_event_ids == [earlier.event_id]
    # The last message was authorised by the power levels sent in the same batch.
    assert persisted[3].event_id in persisted[5].pdu.auth_event_ids
    async with database.connection() as conn:
        assert await rooms.stores.events.forward_extremities(conn, room_id) == [persisted[-1].event_id]
        current = await rooms.stores.current_state.get_state(conn, room_id)
        last_state = await rooms.stores.state.get_event_state(conn, persisted[-1].event_id)
        assert last_state is not None
        assert await rooms.stores.state.get_state(conn, last_state.after) == current
    assert current[("m.room.name", "")] == persisted[4].event_id
    assert current[("m.room.power_levels", "")] == persisted[3].event_id


async def _rows(db: Database, room_id: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row the persistence path writes for a room's events, with the room's own
    identifiers (event IDs, stream orderings, snapshot IDs) replaced by their rank, so
    two rooms built by the same sends compare equal."""
    ids = {r[0] for r in await db.fetch("SELECT event_id FROM events WHERE room_id = $1", room_id)}
    queries = {
        "events": "SELECT event_id, stream_ordering, depth, type, state_key, sender,"
                  " outlier, replaces_state FROM events WHERE room_id = $1",
        "edges": "SELECT g.event_id, g.prev_event_id FROM event_edges g JOIN events e"
                 " ON e.event_id = g.event_id WHERE e.room_id = $1",
        "auth": "SELECT a.event_id, a.auth_event_id FROM event_auth a JOIN events e"
                " ON e.event_id = a.event_id WHERE e.room_id = $1",
        "event_state": "SELECT event_id, before_snapshot_id, after_snapshot_id FROM event_state"
                       " WHERE room_id = $1",
        "extremities": "SELECT event_id FROM forward_extremities WHERE room_id = $1",
        "txn_ids": "SELECT user_id, device_id, txn_id, event_id FROM event_txn_ids"
                   " WHERE room_id = $1",
        "relations": "SELECT event_id, relates_to_id, rel_type, aggregation_key FROM event_relations"
                     " WHERE room_id = $1",
        "current_state": "SELECT type, state_key, event_id FROM current_state WHERE room_id = $1",
    }
    raw = {name: [tuple(v.replace(room_id, "ROOM") if isinstance(v, str) and v not in ids else v
                        for v in r) for r in await db.fetch(sql, room_id)]
           for name, sql in queries.items()}
    order = sorted(raw["events"], key=lambda r: r[1])  # type: ignore[arg-type, return-value]
    rank: dict[object, object] = {r[0]: f"event {i}" for i, r in enumerate(order)}
    positions = {r[1]: i for i, r in enumerate(order)}
    snapshots = sorted({r[c] for r in raw["event_state"] for c in (1, 2)})  # type: ignore[type-var]
    snapshot_rank = {s: f"snapshot {i}" for i, s in enumerate(snapshots)}
    raw["events"] = [(r[0], positions[r[1]], *r[2:]) for r in raw["events"]]
    raw["event_state"] = [(r[0], snapshot_rank[r[1]], snapshot_rank[r[2]])
                          for r in raw["event_state"]]
    return {name: sorted(tuple(rank.get(v, v) for v in r) for r in rows)  # type: ignore[type-var]
            for name, rows in raw.items()}


async def test_deferred_writes_match_one_send_at_a_time(
        rooms: RoomService, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Timeline events of a batch write their rows together (rooms/persistence.py,
    `_flush`): the rows are the ones the same sends make one at a time, interleaved with
    state events and redactions, which are written at once; and the ones they make
    when nothing is deferred (every event written by `_persist`, table by table)."""

    def fields(room_id: str, i: int, target: str) -> dict[str, object]:
        kinds: list[dict[str, object]] = [
            {"type": "m.room.message", "content": {"body": f"m{i}"}},
            {"type": "m.room.message", "content": {"body": f"m{i}"}},
            {"type": "m.room.topic", "state_key": "", "content": {"topic": f"t{i}"}},
            {"type": "m.reaction", "content": {"m.relates_to": {
                "rel_type": "m.annotation", "event_id": target, "key": f"k{i}"}}},
            {"type": "m.room.message", "content": {"body": f"m{i}"}},
            {"type": "m.room.redaction", "redacts": target, "content": {}},
        ]
        return {"room_id": room_id, "sender": ALICE, **kinds[i % len(kinds)]}

    async def run(batched: bool) -> tuple[str, list[PersistedEvent]]:
        room_id = await make_room(rooms)
        first = await rooms.persister.send(
            {"room_id": room_id, "sender": ALICE, "type": "m.room.message", "content": {}},
            txn=TxnKey(ALICE, "DEV", f"{room_id}-0"))
        sends = [rooms.persister.send(fields(room_id, i, first.event_id),
                                      txn=TxnKey(ALICE, "DEV", f"{room_id}-{i}"))
                 for i in range(1, 14)]
        if batched:
            results = list(await asyncio.gather(*sends))
        else:
            results = [await s for s in sends]
        return room_id, [first, *results]

    room_a, batched = await run(True)
    room_b, single = await run(False)
    with monkeypatch.context() as patch:
        patch.setattr(persistence, "_deferrable", lambda fields, view: False)
        room_c, _ = await run(True)
    rows_a, rows_b = await _rows(database, room_a), await _rows(database, room_b)
    assert rows_a["relations"] and len(rows_a["txn_ids"]) == 14
    assert rows_a == rows_b == await _rows(database, room_c)
    for earlier, later in zip(batched, batched[1:], strict=False):
        assert later.pdu.prev_event_ids == [earlier.event_id]
        assert later.stream_ordering == earlier.stream_ordering + 1


async def test_a_failed_deferred_write_fails_the_whole_batch(
        rooms: RoomService, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    room_id = await make_room(rooms)
    count = await _count(database, "SELECT COUNT(*) FROM events")

    async def broken(conn: object, stream: str, rows: object) -> range:
        raise RuntimeError("disk full")
    with monkeypatch.context() as patch:
        patch.setattr(room_batch, "write_timeline", broken)
        results = await asyncio.gather(*(rooms.persister.send(
            {"type": "m.room.message", "room_id": room_id, "sender": ALICE,
             "content": {"body": str(i)}}) for i in range(4)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert await _count(database, "SELECT COUNT(*) FROM events") == count
    # The room is intact: the next send builds on the last stored event.
    ok = await rooms.persister.send({"type": "m.room.message", "room_id": room_id,
                                     "sender": ALICE, "content": {"body": "after"}})
    async with database.connection() as conn:
        assert await rooms.stores.events.forward_extremities(conn, room_id) == [ok.event_id]


# Makes the database refuse the transaction ID "poison": the last rows a batch of
# timeline events writes, after its events, edges, state rows and extremities.
_POISON = {
    "postgres": "ALTER TABLE event_txn_ids ADD CONSTRAINT no_poison CHECK (txn_id <> 'poison')",
    "sqlite": "CREATE TRIGGER no_poison BEFORE INSERT ON event_txn_ids"
              " WHEN new.txn_id = 'poison' BEGIN SELECT RAISE(ABORT, 'poison'); END",
}


async def test_a_deferred_write_the_database_refuses_fails_the_whole_batch(
        rooms: RoomService, database: Database) -> None:
    """The deferred rows go in together (one statement on PostgreSQL): when the
    database refuses one of them, no row of the batch stays, not even its stream
    positions, and the room goes on from where it was."""
    room_id = await make_room(rooms)
    before = await _rows(database, room_id)
    position = await database.fetchval("SELECT position FROM stream_positions WHERE stream = 'events'")
    async with database.connection() as conn:
        tip = await rooms.stores.events.forward_extremities(conn, room_id)
    await database.execute(_POISON[database.engine])
    results = await asyncio.gather(*(rooms.persister.send(
        {"type": "m.room.message", "room_id": room_id, "sender": ALICE,
         "content": {"body": str(i)}}, txn=TxnKey(ALICE, f"DEV{i}", "poison")) for i in range(4)),
        return_exceptions=True)
    assert all(isinstance(r, Exception) and not isinstance(r, Forbidden) for r in results)
    assert await _rows(database, room_id) == before
    assert await database.fetchval(
        "SELECT position FROM stream_positions WHERE stream = 'events'") == position
    ok = await rooms.persister.send({"type": "m.room.message", "room_id": room_id,
                                     "sender": ALICE, "content": {"body": "after"}},
                                    txn=TxnKey(ALICE, "DEV", "fine"))
    assert ok.stream_ordering == position + 1
    async with database.connection() as conn:
        assert await rooms.stores.events.forward_extremities(conn, room_id) == [ok.event_id]
        stored = await rooms.stores.events.get_pdus(conn, [ok.event_id])
    assert stored[ok.event_id].prev_event_ids == tip


async def test_state_reads_are_kept_only_from_committed_batches(
        rooms: RoomService, database: Database) -> None:
    """A batch finds the state entries earlier batches read in memory (keyed by
    snapshot, which never changes), but not those of a batch that rolled back."""
    room_id = await make_room(rooms)
    reads: list[object] = []
    current_state = rooms.stores.current_state
    real = current_state.get_entries

    async def counted(conn: object, room: str, keys: object) -> object:
        # Reads that happened (building from memory alone asks, and is refused).
        found = await real(conn, room, keys)  # type: ignore[arg-type]
        reads.append(keys)
        return found
    current_state.get_entries = counted  # type: ignore[method-assign, assignment]

    def message(body: str) -> dict[str, object]:
        return {"type": "m.room.message", "room_id": room_id, "sender": ALICE,
                "content": {"body": body}}

    await rooms.persister.send(message("first"))
    assert len(reads) == 1
    await rooms.persister.send(message("second"))
    assert len(reads) == 1
    # A state change makes a new snapshot: read again.
    await rooms.persister.send({"type": "m.room.topic", "room_id": room_id, "sender": ALICE,
                                "state_key": "", "content": {"topic": "t"}})
    await rooms.persister.send(message("third"))
    assert len(reads) == 3
    # A batch that rolls back leaves nothing behind (nor do its auth verdicts, which
    # would spare the read: tests/rooms/test_auth_memo.py).
    rooms.persister._state_reads.clear()
    rooms.persister._allowed = AuthMemo()
    await database.execute(_POISON[database.engine])
    with pytest.raises(Exception):  # noqa: B017 (the engine's own error type)
        await rooms.persister.send(message("fails"), txn=TxnKey(ALICE, "DEV", "poison"))
    assert len(reads) == 4 and not rooms.persister._state_reads
    await rooms.persister.send(message("fourth"))
    assert len(reads) == 5 and rooms.persister._state_reads


async def test_two_processes_sending_to_one_room(rooms: RoomService, database: Database,
                                                 clock: FakeClock) -> None:
    """Two persisters on one database (two processes): each batch builds on what the
    other committed, read under the room's lock, however much each keeps in memory."""
    other = RoomService(database, server_name=SERVER,
                        signing_key=signedjson.key.generate_signing_key("t2"), clock=clock)
    room_id = await make_room(rooms, preset="public_chat")

    def message(sender: str, body: str) -> dict[str, object]:
        return {"type": "m.room.message", "room_id": room_id, "sender": sender,
                "content": {"body": body}}

    sent = await asyncio.gather(*(
        (rooms if i % 2 else other).persister.send(message(ALICE, str(i)), txn=TxnKey(ALICE, "D", str(i)))
        for i in range(12)))
    # Each persister's own state reads are warm; Bob is not joined in what they read.
    with pytest.raises(Forbidden):
        await rooms.persister.send(message(BOB, "too early"), require_joined=True)
    await other.membership.join(BOB, room_id)
    after_join = await rooms.persister.send(message(BOB, "joined"), require_joined=True)
    # The other persister's transaction IDs count as used here too.
    again = await rooms.persister.send(message(ALICE, "0"), txn=TxnKey(ALICE, "D", "0"))
    assert again.deduplicated and again.event_id == sent[0].event_id
    async with database.connection() as conn:
        assert await rooms.stores.events.forward_extremities(conn, room_id) == [after_join.event_id]
        rows = await conn.fetch("SELECT event_id FROM events WHERE room_id = $1"
                                " ORDER BY stream_ordering", room_id)
        pdus = await rooms.stores.events.get_pdus(conn, [r[0] for r in rows])
    ordered = [pdus[r[0]] for r in rows]
    for earlier, later in zip(ordered, ordered[1:], strict=False):
        assert later.prev_event_ids == [earlier.event_id]


async def test_a_batch_of_messages_carries_the_committed_stream_positions(
        rooms: RoomService, database: Database) -> None:
    """A batch of timeline events hands its syncs every stream's position (what they
    would read once it committed); a batch that also persists a state event takes
    positions on its own path and hands none."""
    room_id = await make_room(rooms)

    def message(body: str) -> object:
        return rooms.persister.send({"type": "m.room.message", "room_id": room_id,
                                     "sender": ALICE, "content": {"body": body}})

    messages = await asyncio.gather(*(message(str(i)) for i in range(4)))
    async with database.connection() as conn:
        committed = await streams.all_positions(conn)
    for persisted in messages:
        assert isinstance(persisted, PersistedEvent)
        # Each batch's: its own last event on the events stream, the rest as they are.
        positions = persisted.stream_positions
        assert positions is not None and positions["events"] >= persisted.stream_ordering
        assert {**positions, "events": committed["events"]} == committed
    last = max(messages, key=lambda p: p.stream_ordering)  # type: ignore[union-attr]
    assert last.stream_positions == committed  # type: ignore[union-attr]
    mixed = await asyncio.gather(
        message("a"), message("b"),
        rooms.persister.send({"type": "m.room.topic", "room_id": room_id, "sender": ALICE,
                              "state_key": "", "content": {"topic": "t"}}),
        message("c"))
    # The first send runs alone (a pure batch); the three queued behind it share one.
    assert [getattr(p, "stream_positions", None) is None for p in mixed[1:]] == [True] * 3



async def test_a_failing_batch_writer_never_costs_the_events(
        rooms: RoomService, database: Database, caplog: pytest.LogCaptureFixture) -> None:
    """Where a savepoint is a round trip (PostgreSQL) the batch writers first run without
    one; when one fails there, the transaction is lost and the batch is written again
    with them in a savepoint. Either way every send is stored, once."""
    room_id = await make_room(rooms)
    runs: list[list[str]] = []

    async def failing_once(conn: Connection, events: list[PersistedEvent]) -> None:
        runs.append([e.event_id for e in events])
        if len(runs) == 1:
            # A real failing statement: on PostgreSQL it aborts the transaction.
            await conn.execute("SELECT no_such_column FROM events")
        return None

    rooms.persister.batch_writers.append(failing_once)
    event_ids = await asyncio.gather(*[
        rooms.send.send_message(ALICE, "DEV", room_id, "m.room.message",
                                {"msgtype": "m.text", "body": str(i)}, f"w{i}")
        for i in range(3)])
    assert len(set(event_ids)) == 3
    assert await _count(database, "SELECT COUNT(*) FROM events WHERE type = 'm.room.message'") == 3
    assert {e for run in runs for e in run} == set(event_ids)
    if database.engine == "postgres":
        assert "writing it again with them in a savepoint" in caplog.text
        # The lost run's events were built again (the same ones: the clock stood still).
        assert runs[1][:len(runs[0])] == runs[0]
    else:
        assert "batch writers failed" in caplog.text


async def test_queued_senders_return_after_their_batch_and_the_next_one_leads(
        rooms: RoomService, database: Database) -> None:
    """Sends queued behind a busy room wait for their batch, not for the room lock: they
    return once its callbacks ran; the first send queued while a batch ran leads the
    next one, and a room with nobody queued has no leader left."""
    room_id = await make_room(rooms)
    order: list[str] = []

    async def on_event(persisted: PersistedEvent) -> None:
        order.append("callback " + persisted.pdu.content["body"])
    rooms.persister.on_event_persisted.append(on_event)

    async def send(body: str) -> None:
        await rooms.persister.send({"type": "m.room.message", "room_id": room_id,
                                    "sender": ALICE, "content": {"body": body}})
        order.append("returned " + body)

    first = asyncio.create_task(send("1"))
    await asyncio.sleep(0)  # 1 leads
    rest = [asyncio.create_task(send(str(i))) for i in (2, 3, 4)]
    await asyncio.gather(first, *rest)
    for body in "1234":
        assert order.index("callback " + body) < order.index("returned " + body)
    # 2, 3 and 4 made one batch (led by 2) after 1's, and returned after its callbacks.
    assert order.index("callback 4") < order.index("returned 2")
    assert rooms.persister._queued == {} and rooms.persister._leading == set()
