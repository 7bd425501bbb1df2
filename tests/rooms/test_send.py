"""Sending messages and state, redactions, and who may read what."""

from __future__ import annotations

import pytest

from homeserver.errors import BadAlias, BadJson, Forbidden, NotFound, TooLarge
from homeserver.rooms.service import RoomService
from tests.rooms.conftest import ALICE, BOB, CAROL, make_room

MESSAGE = {"msgtype": "m.text", "body": "hello"}


async def test_send_requires_membership(rooms: RoomService) -> None:
    room_id = await make_room(rooms)
    with pytest.raises(Forbidden):
        await rooms.send.send_message(BOB, None, room_id, "m.room.message", MESSAGE, "t")
    with pytest.raises(Forbidden):
        await rooms.send.send_message(BOB, None, "!unknown:test.local", "m.room.message", MESSAGE, "t")
    with pytest.raises(TooLarge):
        await rooms.send.send_message(ALICE, None, room_id, "m.room.message", {"body": "x" * 66_000}, "t")
    with pytest.raises(BadJson):
        await rooms.send.send_message(ALICE, None, room_id, "m.room.message", {"n": 1.5}, "t2")
    with pytest.raises(Forbidden):
        await rooms.send.send_message(ALICE, None, room_id, "m.room.create", {}, "t3")


async def test_state_put_get_and_idempotency(rooms: RoomService) -> None:
    room_id = await make_room(rooms, preset="public_chat")
    first = await rooms.send.set_state(ALICE, room_id, "m.room.topic", "", {"topic": "a"})
    assert await rooms.send.set_state(ALICE, room_id, "m.room.topic", "", {"topic": "a"}) == first
    second = await rooms.send.set_state(ALICE, room_id, "m.room.topic", "", {"topic": "b"})
    event = await rooms.reader.get_state_event(ALICE, room_id, "m.room.topic", "")
    assert event["event_id"] == second
    assert event["unsigned"]["replaces_state"] == first
    assert event["unsigned"]["prev_content"] == {"topic": "a"}
    with pytest.raises(NotFound):
        await rooms.reader.get_state_event(ALICE, room_id, "m.room.avatar", "")
    await rooms.membership.join(BOB, room_id)
    with pytest.raises(Forbidden):
        await rooms.send.set_state(BOB, room_id, "m.room.topic", "", {"topic": "mine"})
    with pytest.raises(Forbidden):
        await rooms.send.set_state(ALICE, room_id, "m.room.create", "", {})
    with pytest.raises(Forbidden):
        await rooms.reader.get_state(CAROL, room_id)


async def test_malformed_state_content(rooms: RoomService) -> None:
    room_id = await make_room(rooms)
    with pytest.raises(BadJson):
        await rooms.send.set_state(ALICE, room_id, "m.room.power_levels", "", {"ban": "50"})
    with pytest.raises(BadJson):
        await rooms.send.set_state(ALICE, room_id, "m.room.member", BOB, {"membership": "wat"})
    with pytest.raises(BadJson):
        await rooms.send.set_state(ALICE, room_id, "m.room.history_visibility", "", {})
    with pytest.raises(BadAlias):
        await rooms.send.set_state(ALICE, room_id, "m.room.canonical_alias", "", {"alias": "#nope:test.local"})


async def test_redactions(rooms: RoomService) -> None:
    room_id = await make_room(rooms, preset="public_chat")
    await rooms.membership.join(BOB, room_id)
    await rooms.membership.join(CAROL, room_id)
    bobs = await rooms.send.send_message(BOB, "B", room_id, "m.room.message", MESSAGE, "b1")
    with pytest.raises(Forbidden):
        await rooms.send.redact(CAROL, None, room_id, bobs, None, "c1")
    with pytest.raises(NotFound):
        await rooms.send.redact(BOB, None, room_id, "$missing", None, "b2")
    redaction = await rooms.send.redact(BOB, "B", room_id, bobs, "oops", "b3")
    assert await rooms.send.redact(BOB, "B", room_id, bobs, "oops", "b3") == redaction
    event = await rooms.reader.get_event(CAROL, None, room_id, bobs)
    assert event["content"] == {}
    assert event["unsigned"]["redacted_because"]["event_id"] == redaction
    assert event["unsigned"]["redacted_because"]["redacts"] == bobs
    redaction_event = await rooms.reader.get_event(BOB, "B", room_id, redaction)
    assert redaction_event["content"]["redacts"] == bobs  # v11+: in content, and top level
    assert redaction_event["unsigned"]["transaction_id"] == "b3"
    carols = await rooms.send.send_message(CAROL, None, room_id, "m.room.message", MESSAGE, "c2")
    # A moderator may redact anyone's event, also through /send.
    await rooms.send.send_message(ALICE, None, room_id, "m.room.redaction",
                                  {"redacts": carols, "reason": "spam"}, "a1")
    assert (await rooms.reader.get_event(BOB, None, room_id, carols))["content"] == {}


async def test_history_visibility(rooms: RoomService) -> None:
    room_id = await make_room(rooms, preset="public_chat")
    await rooms.send.set_state(ALICE, room_id, "m.room.history_visibility", "",
                               {"history_visibility": "joined"})
    early = await rooms.send.send_message(ALICE, None, room_id, "m.room.message", MESSAGE, "a1")
    await rooms.membership.join(BOB, room_id)
    late = await rooms.send.send_message(ALICE, None, room_id, "m.room.message", MESSAGE, "a2")
    with pytest.raises(NotFound):
        await rooms.reader.get_event(BOB, None, room_id, early)
    assert (await rooms.reader.get_event(BOB, None, room_id, late))["event_id"] == late
    with pytest.raises(NotFound):
        await rooms.reader.get_event(CAROL, None, room_id, late)
    with pytest.raises(NotFound):
        await rooms.reader.get_event(ALICE, None, "!other:test.local", late)
