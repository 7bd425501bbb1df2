"""Reads shared by the syncs at one events position, on both engines."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import signedjson.key

from homeserver.clock import FakeClock
from homeserver.rooms.creation import CreateRoomRequest
from homeserver.rooms.service import RoomService
from homeserver.storage.database import Database
from homeserver.storage.sync_queries import SyncQueries
from homeserver.sync.shared_reads import SharedReads, is_personal, personal_copy

ALICE = "@alice:test.local"
BOB = "@bob:test.local"


@pytest.fixture
def rooms(database: Database, clock: FakeClock) -> RoomService:
    key = signedjson.key.generate_signing_key("t1")
    return RoomService(database, server_name="test.local", signing_key=key, clock=clock)


def _shared(database: Database, rooms: RoomService, **kwargs: Any) -> SharedReads:
    return SharedReads(database, rooms.stores.events, rooms.loader, SyncQueries(), **kwargs)


async def _send(rooms: RoomService, database: Database, room_id: str, body: str) -> tuple[str, int]:
    event_id = await rooms.send.send_message(ALICE, "D", room_id, "m.room.message",
                                             {"msgtype": "m.text", "body": body}, body)
    async with database.connection() as conn:
        stored = await rooms.stores.events.get(conn, event_id)
    assert stored is not None and stored.stream_ordering is not None
    return event_id, stored.stream_ordering


async def test_window_holds_every_rooms_new_events_read_once(
        rooms: RoomService, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    a = await rooms.creator.create_room(ALICE, CreateRoomRequest(preset="public_chat"))
    b = await rooms.creator.create_room(ALICE, CreateRoomRequest(preset="public_chat"))
    _, since = await _send(rooms, database, a, "old")
    first, _ = await _send(rooms, database, a, "a1")
    second, _ = await _send(rooms, database, b, "b1")
    third, upto = await _send(rooms, database, a, "a2")
    shared = _shared(database, rooms)
    reads = 0
    original = rooms.stores.events.stream_range

    async def counting(*args: Any) -> Any:
        nonlocal reads
        reads += 1
        return await original(*args)

    monkeypatch.setattr(rooms.stores.events, "stream_range", counting)
    windows = await asyncio.gather(*(shared.window(since, upto) for _ in range(20)))
    assert reads == 1 and all(w is windows[0] for w in windows)
    window = windows[0]
    assert window is not None and window.covers(since, upto) and not window.covers(since - 1, upto)
    assert [e.event_id for e in window.room_events(a, since, upto)] == [first, third]
    assert [e.event_id for e in window.room_events(b, since, upto)] == [second]
    assert [e.event_id for e in window.room_events(a, since, upto - 1)] == [first]


async def test_too_many_new_events_are_not_shared(rooms: RoomService, database: Database) -> None:
    room = await rooms.creator.create_room(ALICE, CreateRoomRequest(preset="public_chat"))
    _, since = await _send(rooms, database, room, "old")
    for i in range(3):
        _, upto = await _send(rooms, database, room, f"new {i}")
    assert await _shared(database, rooms, max_window_events=2).window(since, upto) is None
    assert await _shared(database, rooms, max_window_events=3).window(since, upto) is not None


async def test_a_failed_read_is_not_remembered(rooms: RoomService, database: Database,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    room = await rooms.creator.create_room(ALICE, CreateRoomRequest(preset="public_chat"))
    _, since = await _send(rooms, database, room, "old")
    _, upto = await _send(rooms, database, room, "new")
    shared = _shared(database, rooms)
    original = rooms.stores.events.stream_range
    calls = 0

    async def failing_once(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database went away")
        return await original(*args)

    monkeypatch.setattr(rooms.stores.events, "stream_range", failing_once)
    with pytest.raises(RuntimeError):
        await shared.window(since, upto)
    window = await shared.window(since, upto)
    assert window is not None and len(window.room_events(room, since, upto)) == 1


async def test_formats_are_nobodys_and_personal_parts_are_left_to_each_user(
        rooms: RoomService, database: Database, clock: FakeClock) -> None:
    room = await rooms.creator.create_room(ALICE, CreateRoomRequest(preset="public_chat"))
    event_id, position = await _send(rooms, database, room, "hello")
    async with database.connection() as conn:
        event = await rooms.stores.events.get(conn, event_id)
        assert event is not None
        for_alice = await rooms.loader.format(conn, [event], user_id=ALICE, device_id="D",
                                              include_room_id=False)
    assert "transaction_id" in for_alice[0]["unsigned"]
    base = (await _shared(database, rooms).formats(position, [event]))[event_id]
    assert "transaction_id" not in base["unsigned"] and "room_id" not in base
    assert is_personal(ALICE, event, base) and not is_personal(BOB, event, base)
    clock.advance(5_000)
    copy = personal_copy(base, clock.time_ms())
    assert copy["unsigned"]["age"] == base["unsigned"]["age"] + 5_000
    assert copy["content"] == {"msgtype": "m.text", "body": "hello"}
    assert base["unsigned"] is not copy["unsigned"]  # the shared one is never changed


async def test_a_read_abandoned_by_its_sync_is_read_again_by_a_waiter(
        rooms: RoomService, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    room = await rooms.creator.create_room(ALICE, CreateRoomRequest(preset="public_chat"))
    _, since = await _send(rooms, database, room, "old")
    _, upto = await _send(rooms, database, room, "new")
    shared = _shared(database, rooms)
    original = rooms.stores.events.stream_range
    started, gate = asyncio.Event(), asyncio.Event()
    calls = 0

    async def slow_first(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            started.set()
            await gate.wait()
        return await original(*args)

    monkeypatch.setattr(rooms.stores.events, "stream_range", slow_first)
    first = asyncio.ensure_future(shared.window(since, upto))
    await started.wait()
    waiter = asyncio.ensure_future(shared.window(since, upto))
    await asyncio.sleep(0)
    first.cancel()  # its client went away mid-read
    window = await asyncio.wait_for(waiter, 10)
    assert window is not None and len(window.room_events(room, since, upto)) == 1
    assert calls == 2 and first.cancelled()
