"""createRoom: presets, room versions, power levels, aliases, invites."""

from __future__ import annotations

import pytest

from homeserver.errors import BadJson, Forbidden, InvalidParam, RoomInUse, UnsupportedRoomVersion
from homeserver.rooms.creation import CHANNEL_PRESET, StateEventSpec
from homeserver.rooms.service import RoomService
from tests.rooms.conftest import ALICE, BOB, CAROL, make_room


async def _state(rooms: RoomService, room_id: str, event_type: str, state_key: str = "") -> dict:
    return (await rooms.reader.get_state_event(ALICE, room_id, event_type, state_key))["content"]


async def test_private_chat_defaults(rooms: RoomService) -> None:
    room_id = await make_room(rooms)
    assert await _state(rooms, room_id, "m.room.join_rules") == {"join_rule": "invite"}
    assert await _state(rooms, room_id, "m.room.history_visibility") == {"history_visibility": "shared"}
    assert await _state(rooms, room_id, "m.room.guest_access") == {"guest_access": "can_join"}
    create = await _state(rooms, room_id, "m.room.create")
    assert create == {"room_version": "12"}
    levels = await _state(rooms, room_id, "m.room.power_levels")
    assert levels["users"] == {}  # v12: the creator's power is implicit
    assert levels["events"]["m.room.tombstone"] == 150


async def test_public_chat_with_name_topic_alias(rooms: RoomService) -> None:
    room_id = await make_room(rooms, preset="public_chat", name="Lobby", topic="Say hi",
                              room_alias_name="lobby", visibility="public")
    assert await _state(rooms, room_id, "m.room.join_rules") == {"join_rule": "public"}
    assert await _state(rooms, room_id, "m.room.name") == {"name": "Lobby"}
    assert (await _state(rooms, room_id, "m.room.topic"))["topic"] == "Say hi"
    assert await _state(rooms, room_id, "m.room.canonical_alias") == {"alias": "#lobby:test.local"}
    assert (await rooms.aliases.resolve("#lobby:test.local"))["room_id"] == room_id
    assert await rooms.membership.join(BOB, "#lobby:test.local") == room_id
    with pytest.raises(RoomInUse):
        await make_room(rooms, room_alias_name="lobby")
    with pytest.raises(InvalidParam):
        await make_room(rooms, room_alias_name="bad:alias")


async def test_older_room_version_has_server_room_id_and_creator(rooms: RoomService) -> None:
    room_id = await make_room(rooms, room_version="10")
    assert room_id.endswith(":test.local")
    assert (await _state(rooms, room_id, "m.room.create"))["creator"] == ALICE
    assert (await _state(rooms, room_id, "m.room.power_levels"))["users"] == {ALICE: 100}
    with pytest.raises(UnsupportedRoomVersion):
        await make_room(rooms, room_version="999")


async def test_trusted_private_chat_invitees_get_creator_power(rooms: RoomService) -> None:
    v12 = await make_room(rooms, preset="trusted_private_chat", invite=(BOB,), is_direct=True)
    assert (await _state(rooms, v12, "m.room.create"))["additional_creators"] == [BOB]
    invite = await _state(rooms, v12, "m.room.member", BOB)
    assert invite == {"membership": "invite", "is_direct": True}
    v11 = await make_room(rooms, preset="trusted_private_chat", invite=(BOB,), room_version="11")
    assert (await _state(rooms, v11, "m.room.power_levels"))["users"] == {ALICE: 100, BOB: 100}


async def test_power_level_override_and_initial_state(rooms: RoomService) -> None:
    room_id = await make_room(
        rooms, power_level_content_override={"events_default": 10},
        initial_state=(StateEventSpec("m.room.join_rules", "", {"join_rule": "public"}),
                       StateEventSpec("org.example.custom", "k", {"a": 1})))
    assert (await _state(rooms, room_id, "m.room.power_levels"))["events_default"] == 10
    assert await _state(rooms, room_id, "m.room.join_rules") == {"join_rule": "public"}
    assert await _state(rooms, room_id, "org.example.custom", "k") == {"a": 1}


@pytest.mark.parametrize("override", [
    {"events_default": "10"},          # strings are not integers from v10
    {"users": {ALICE: 100}},           # v12 creators may not be listed
    {"events": {"m.room.name": 1.5}},
    {"users": "nope"},
])
async def test_malformed_power_levels_are_bad_json(rooms: RoomService, override: dict) -> None:
    with pytest.raises(BadJson):
        await make_room(rooms, power_level_content_override=override)


async def test_string_power_levels_allowed_before_v10(rooms: RoomService) -> None:
    room_id = await make_room(rooms, room_version="9", power_level_content_override={"ban": "60"})
    assert (await _state(rooms, room_id, "m.room.power_levels"))["ban"] == "60"


async def test_bad_requests_create_nothing(rooms: RoomService) -> None:
    with pytest.raises(BadJson):
        await make_room(rooms, preset="no_such_preset")
    with pytest.raises(BadJson):
        await make_room(rooms, initial_state=(StateEventSpec("m.room.member", ALICE, {"membership": "join"}),))
    with pytest.raises(InvalidParam):
        await make_room(rooms, invite=("not-a-user",))
    assert await rooms.reader.joined_rooms(ALICE) == []


async def test_channel_preset_only_moderators_post(rooms: RoomService) -> None:
    room_id = await make_room(rooms, preset=CHANNEL_PRESET, name="Announcements")
    assert await _state(rooms, room_id, "m.room.join_rules") == {"join_rule": "public"}
    assert (await _state(rooms, room_id, "m.room.power_levels"))["events_default"] == 50
    await rooms.membership.join(BOB, room_id)
    await rooms.send.send_message(ALICE, None, room_id, "m.room.message", {"body": "news"}, "a1")
    with pytest.raises(Forbidden):
        await rooms.send.send_message(BOB, None, room_id, "m.room.message", {"body": "hi"}, "b1")
    await rooms.send.set_state(ALICE, room_id, "m.room.power_levels", "", {
        **await _state(rooms, room_id, "m.room.power_levels"), "users": {CAROL: 50}})
    await rooms.membership.join(CAROL, room_id)
    await rooms.send.send_message(CAROL, None, room_id, "m.room.message", {"body": "mod"}, "c1")
