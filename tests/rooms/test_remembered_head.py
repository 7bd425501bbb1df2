"""A batch of messages builds on the head the room's last batch here left (room row and
forward extremities) without reading it first; its one write checks that head is still
the room's and that no transaction ID of it is used, and when not, writes nothing and the
batch is built again on the head as read (rooms/persistence.py, `_write_sends`)."""

from __future__ import annotations

from typing import Any

import pytest
import signedjson.key

from homeserver.clock import FakeClock
from homeserver.errors import Forbidden
from homeserver.rooms.persistence import TxnKey
from homeserver.rooms.service import RoomService
from homeserver.storage import room_batch
from homeserver.storage.database import Database
from tests.rooms.conftest import ALICE, BOB, SERVER, make_room


def _message(room_id: str, sender: str, body: str) -> dict[str, object]:
    return {"type": "m.room.message", "room_id": room_id, "sender": sender,
            "content": {"body": body}}


def _spy(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often the head was read, and how often a write found it stale."""
    seen = {"reads": 0, "stale": 0}
    read_head, write_timeline = room_batch.read_head, room_batch.write_timeline

    async def reading(*args: Any) -> Any:
        seen["reads"] += 1
        return await read_head(*args)

    async def writing(*args: Any) -> Any:
        try:
            return await write_timeline(*args)
        except room_batch.StaleHead:
            seen["stale"] += 1
            raise
    monkeypatch.setattr(room_batch, "read_head", reading)
    monkeypatch.setattr(room_batch, "write_timeline", writing)
    return seen


async def _chain(database: Database, rooms: RoomService, room_id: str) -> list[str]:
    """The room's events in stream order, checked to form one line."""
    rows = await database.fetch("SELECT event_id FROM events WHERE room_id = $1"
                                " ORDER BY stream_ordering", room_id)
    async with database.connection() as conn:
        pdus = await rooms.stores.events.get_pdus(conn, [r[0] for r in rows])
        assert await rooms.stores.events.forward_extremities(conn, room_id) == [rows[-1][0]]
    ordered = [pdus[r[0]] for r in rows]
    for earlier, later in zip(ordered, ordered[1:], strict=False):
        assert later.prev_event_ids == [earlier.event_id]
    return [p.event_id for p in ordered]


async def _two_writers(rooms: RoomService, database: Database,
                       clock: FakeClock) -> tuple[RoomService, str]:
    """A second persister on the same database (another process), and a public room
    whose head `rooms` remembers (its last batch sent there)."""
    other = RoomService(database, server_name=SERVER,
                        signing_key=signedjson.key.generate_signing_key("t2"), clock=clock)
    room_id = await make_room(rooms, preset="public_chat")
    await rooms.persister.send(_message(room_id, ALICE, "ours"))
    return other, room_id


async def test_the_next_batch_builds_on_the_remembered_head(
        rooms: RoomService, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    room_id = await make_room(rooms)
    # Warm: the sender's auth events are in the events cache, its state reads remembered.
    await rooms.persister.send(_message(room_id, ALICE, "zero"))
    first = await rooms.persister.send(_message(room_id, ALICE, "one"), txn=TxnKey(ALICE, "D", "1"))
    seen = _spy(monkeypatch)
    second = await rooms.persister.send(_message(room_id, ALICE, "two"), txn=TxnKey(ALICE, "D", "2"))
    assert seen == {"reads": 0, "stale": 0}
    assert second.pdu.prev_event_ids == [first.event_id]
    assert (await _chain(database, rooms, room_id))[-2:] == [first.event_id, second.event_id]
    # A state event reads the head, and leaves none remembered for the next batch.
    await rooms.persister.send({"type": "m.room.topic", "room_id": room_id, "sender": ALICE,
                                "state_key": "", "content": {"topic": "t"}})
    reads = seen["reads"]
    await rooms.persister.send(_message(room_id, ALICE, "three"))
    assert seen["reads"] == reads + 1
    await rooms.persister.send(_message(room_id, ALICE, "four"))
    assert seen["reads"] == reads + 1
    await _chain(database, rooms, room_id)


async def test_a_head_another_writer_moved_is_noticed_and_the_batch_built_again(
        rooms: RoomService, database: Database, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    other, room_id = await _two_writers(rooms, database, clock)
    theirs = await other.persister.send(_message(room_id, ALICE, "theirs"))
    seen = _spy(monkeypatch)
    again = await rooms.persister.send(_message(room_id, ALICE, "ours again"))
    # Written once, on the head as read: nothing of the stale attempt is stored.
    assert seen == {"reads": 1, "stale": 1}
    assert again.pdu.prev_event_ids == [theirs.event_id]
    chain = await _chain(database, rooms, room_id)
    assert chain[-2:] == [theirs.event_id, again.event_id]
    assert await database.fetchval("SELECT COUNT(*) FROM events WHERE room_id = $1"
                                   " AND stream_ordering IS NOT NULL", room_id) == len(chain)


async def test_a_transaction_id_used_elsewhere_is_answered_with_its_event(
        rooms: RoomService, database: Database, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    other, room_id = await _two_writers(rooms, database, clock)
    # The client's first attempt went to the other process, which is otherwise quiet.
    first = await other.persister.send(_message(room_id, ALICE, "retried"),
                                       txn=TxnKey(ALICE, "D", "t"))
    seen = _spy(monkeypatch)
    retry = await rooms.persister.send(_message(room_id, ALICE, "retried"),
                                       txn=TxnKey(ALICE, "D", "t"))
    assert retry.deduplicated and retry.event_id == first.event_id
    assert seen["stale"] == 1
    await _chain(database, rooms, room_id)


async def test_a_send_refused_on_the_remembered_head_is_refused_by_the_room_as_it_is(
        rooms: RoomService, database: Database, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    other, room_id = await _two_writers(rooms, database, clock)
    with pytest.raises(Forbidden):  # refused on the head as read, too
        await rooms.persister.send(_message(room_id, BOB, "too early"), require_joined=True)
    await rooms.persister.send(_message(room_id, ALICE, "ours"))
    await other.membership.join(BOB, room_id)
    # Our remembered head has Bob outside the room; the room as it is lets him in.
    seen = _spy(monkeypatch)
    joined = await rooms.persister.send(_message(room_id, BOB, "joined"), require_joined=True)
    assert joined.pdu.sender == BOB
    assert seen == {"reads": 2, "stale": 0}  # the check, then the batch built again
    await _chain(database, rooms, room_id)
