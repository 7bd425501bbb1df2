"""The event store's cache of parsed events: only committed rows enter it, and a cached
event is still served redacted once a redaction applies (redactions are rows of their own,
applied by the loader)."""

from __future__ import annotations

import signedjson.key

from homeserver.clock import FakeClock
from homeserver.events.pdu import Pdu
from homeserver.rooms.creation import CreateRoomRequest
from homeserver.rooms.service import RoomService
from homeserver.storage.database import Database

ALICE = "@alice:test.local"


async def _room_with_message(database: Database, clock: FakeClock) -> tuple[RoomService, str, int]:
    rooms = RoomService(database, server_name="test.local",
                        signing_key=signedjson.key.generate_signing_key("t1"), clock=clock)
    room_id = await rooms.creator.create_room(ALICE, CreateRoomRequest(preset="private_chat"))
    persisted = await rooms.persister.send({"type": "m.room.message", "room_id": room_id,
                                            "sender": ALICE, "content": {"body": "hi"}})
    return rooms, persisted.event_id, persisted.stream_ordering


async def test_events_at_or_below_the_committed_position_are_cached(database: Database,
                                                                    clock: FakeClock) -> None:
    rooms, event_id, position = await _room_with_message(database, clock)
    events = rooms.stores.events
    # The persister caches the timeline events it has just committed.
    sent = events.cached(event_id)
    assert sent is not None and sent.stream_ordering == position
    # A row written by anyone else (another process) is cached once a position at or
    # above it has been read outside any transaction.
    pdu_json = dict(sent.pdu.get_json())
    pdu_json["origin_server_ts"] = sent.pdu.origin_server_ts + 1  # another event ID
    pdu = Pdu(pdu_json, sent.pdu.room_version)
    async with database.transaction() as conn:
        await events.insert(conn, pdu, stream_ordering=position + 1)
    async with database.connection() as conn:
        await events.get(conn, pdu.event_id)
        assert events.cached(pdu.event_id) is None  # nobody vouched for its position yet
        events.note_committed(position + 1)
        first = await events.get(conn, pdu.event_id)
    assert first is not None and events.cached(pdu.event_id) is first
    async with database.connection() as conn:
        assert (await events.get_many(conn, [pdu.event_id]))[pdu.event_id] is first


async def test_a_row_read_inside_a_transaction_is_not_cached(database: Database,
                                                              clock: FakeClock) -> None:
    rooms, event_id, position = await _room_with_message(database, clock)
    events = rooms.stores.events
    events.note_committed(position)
    async with database.connection() as conn:
        original = await events.get(conn, event_id)
    assert original is not None
    pdu_json = dict(original.pdu.get_json())
    pdu_json["origin_server_ts"] = original.pdu.origin_server_ts + 1  # another event ID
    pdu = Pdu(pdu_json, original.pdu.room_version)

    class RolledBack(Exception):
        pass

    try:
        async with database.transaction() as conn:
            await events.insert(conn, pdu, stream_ordering=position + 1)
            assert (await events.get_many(conn, [pdu.event_id]))[pdu.event_id].stream_ordering == position + 1
            raise RolledBack
    except RolledBack:
        pass
    assert events.cached(pdu.event_id) is None
    async with database.connection() as conn:
        assert await events.get(conn, pdu.event_id) is None


async def test_a_cached_event_is_served_redacted_once_redacted(database: Database,
                                                               clock: FakeClock) -> None:
    rooms, event_id, position = await _room_with_message(database, clock)
    events = rooms.stores.events
    events.note_committed(position)
    async with database.connection() as conn:
        cached = await events.get(conn, event_id)
        assert cached is not None and events.cached(event_id) is cached
        before = await rooms.loader.format(conn, [cached], user_id=ALICE, device_id=None)
    assert before[0]["content"] == {"body": "hi"}

    redaction = await rooms.persister.send({"type": "m.room.redaction", "room_id": cached.pdu.room_id,
                                            "sender": ALICE, "redacts": event_id,
                                            "content": {"redacts": event_id}})
    async with database.connection() as conn:
        again = await events.get(conn, event_id)
        assert again is cached  # the parsed row never changes...
        after = await rooms.loader.format(conn, [cached], user_id=ALICE, device_id=None)
    # ...but what is served does.
    assert after[0]["content"] == {}
    assert after[0]["unsigned"]["redacted_because"]["event_id"] == redaction.event_id
