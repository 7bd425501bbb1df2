"""What syncs woken together wait for: room summaries read in the background once a stream
window is, and the current token shared by the syncs that ask before its read starts,
each with an answer of its own (on both engines where a database is involved)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import signedjson.key

from homeserver.clock import FakeClock
from homeserver.rooms.creation import CreateRoomRequest
from homeserver.rooms.service import RoomService
from homeserver.storage.database import Database
from homeserver.storage.sync_queries import SyncQueries
from homeserver.sync.shared_reads import SharedReads
from homeserver.sync.tokens import CurrentTokenReader, SyncToken

ALICE = "@alice:test.local"
BOB = "@bob:test.local"


@pytest.fixture
def rooms(database: Database, clock: FakeClock) -> RoomService:
    key = signedjson.key.generate_signing_key("t1")
    return RoomService(database, server_name="test.local", signing_key=key, clock=clock)


async def _position(rooms: RoomService, database: Database, room_id: str, body: str) -> int:
    event_id = await rooms.send.send_message(ALICE, "D", room_id, "m.room.message",
                                             {"msgtype": "m.text", "body": body}, body)
    async with database.connection() as conn:
        stored = await rooms.stores.events.get(conn, event_id)
    assert stored is not None and stored.stream_ordering is not None
    return stored.stream_ordering


async def _settled(shared: SharedReads) -> None:
    """Until the background reads the window started are done (a readiness check)."""
    for _ in range(1000):
        if not shared._prefetching:  # noqa: SLF001 (the test waits for the background)
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the background reads never finished")


async def test_a_windows_room_summaries_are_read_once_in_the_background(
        rooms: RoomService, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    room = await rooms.creator.create_room(ALICE, CreateRoomRequest(preset="public_chat"))
    await rooms.membership.join(BOB, room)
    since = await _position(rooms, database, room, "old")
    upto = await _position(rooms, database, room, "new")
    queries = SyncQueries()
    reads = 0
    original = queries.summary_members

    async def counting(*args: Any) -> Any:
        nonlocal reads
        reads += 1
        return await original(*args)

    monkeypatch.setattr(queries, "summary_members", counting)
    shared = SharedReads(database, rooms.stores.events, rooms.loader, queries,
                         prefetch_heroes=5)
    assert await shared.window(since, upto) is not None
    await _settled(shared)
    assert reads == 1
    summaries = await asyncio.gather(*(shared.summaries(upto, [room], 5) for _ in range(10)))
    assert reads == 1
    base = summaries[0][room]
    assert base.counts == {"join": 2}
    assert base.summary(BOB)["m.heroes"] == [ALICE]
    assert base.summary("@carol:test.local") == {
        "m.heroes": [ALICE, BOB], "m.joined_member_count": 2, "m.invited_member_count": 0}


async def test_a_failed_background_read_is_logged_and_read_again_when_asked(
        rooms: RoomService, database: Database, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    room = await rooms.creator.create_room(ALICE, CreateRoomRequest(preset="public_chat"))
    since = await _position(rooms, database, room, "old")
    upto = await _position(rooms, database, room, "new")
    queries = SyncQueries()
    original = queries.summary_members
    calls = 0

    async def failing_once(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database went away")
        return await original(*args)

    monkeypatch.setattr(queries, "summary_members", failing_once)
    shared = SharedReads(database, rooms.stores.events, rooms.loader, queries,
                         prefetch_heroes=5)
    with caplog.at_level(logging.WARNING, logger="homeserver.sync.shared_reads"):
        await shared.window(since, upto)
        await _settled(shared)
    assert "prefetching room summaries failed" in caplog.text
    summaries = await shared.summaries(upto, [room], 5)
    assert calls == 2 and summaries[room].counts == {"join": 1}


class _GatedDb:
    """Answers the stream-positions query once `gate` is set; `fail` makes it raise."""

    def __init__(self) -> None:
        self.reads = 0
        self.gate = asyncio.Event()
        self.fail: Exception | None = None

    async def fetch(self, sql: str, *args: object) -> list[dict[str, object]]:
        self.reads += 1
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return [{"stream": "events", "position": self.reads}]


async def test_a_caller_that_goes_away_leaves_the_others_their_token() -> None:
    db = _GatedDb()
    reader = CurrentTokenReader(db, lambda: {})
    gone = asyncio.ensure_future(reader.read())
    stays = asyncio.ensure_future(reader.read())
    await asyncio.sleep(0)
    gone.cancel()
    db.gate.set()
    assert await stays == SyncToken({"events": 1})
    assert gone.cancelled() and db.reads == 1
    assert reader.last == SyncToken({"events": 1})


async def test_a_failed_token_read_fails_its_callers_and_the_next_read_works() -> None:
    db = _GatedDb()
    db.fail = RuntimeError("database went away")
    reader = CurrentTokenReader(db, lambda: {})
    db.gate.set()
    results = await asyncio.gather(reader.read(), reader.read(), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results) and db.reads == 1
    db.fail = None
    assert await reader.read() == SyncToken({"events": 2})
