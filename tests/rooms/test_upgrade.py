"""Room upgrades: tombstone, predecessor, copied state, moved aliases."""

from __future__ import annotations

import pytest

from homeserver.errors import Forbidden, UnsupportedRoomVersion
from homeserver.rooms.service import RoomService
from tests.rooms.conftest import ALICE, BOB, CAROL, make_room


async def _content(rooms: RoomService, room_id: str, event_type: str, key: str = "") -> dict:
    return (await rooms.reader.get_state_event(ALICE, room_id, event_type, key))["content"]


async def test_upgrade_v10_to_v12(rooms: RoomService) -> None:
    old = await make_room(rooms, room_version="10", preset="public_chat", name="Old",
                          room_alias_name="town")
    await rooms.membership.join(BOB, old)
    await rooms.membership.ban(ALICE, old, CAROL)
    new = await rooms.upgrader.upgrade(ALICE, old, "12")
    tombstone = await _content(rooms, old, "m.room.tombstone")
    assert tombstone["replacement_room"] == new
    create = await _content(rooms, new, "m.room.create")
    assert create["predecessor"]["room_id"] == old and create["room_version"] == "12"
    assert await _content(rooms, new, "m.room.name") == {"name": "Old"}
    assert await _content(rooms, new, "m.room.join_rules") == {"join_rule": "public"}
    assert (await _content(rooms, new, "m.room.member", CAROL))["membership"] == "ban"
    assert ALICE not in (await _content(rooms, new, "m.room.power_levels"))["users"]
    assert (await rooms.aliases.resolve("#town:test.local"))["room_id"] == new
    assert (await _content(rooms, old, "m.room.power_levels"))["events_default"] == 50
    with pytest.raises(Forbidden):
        await rooms.send.send_message(BOB, None, old, "m.room.message", {"body": "x"}, "b")
    await rooms.membership.join(BOB, new)


async def test_upgrade_checks(rooms: RoomService) -> None:
    room_id = await make_room(rooms, preset="public_chat", room_version="11")
    await rooms.membership.join(BOB, room_id)
    with pytest.raises(Forbidden):
        await rooms.upgrader.upgrade(BOB, room_id, "12")
    with pytest.raises(UnsupportedRoomVersion):
        await rooms.upgrader.upgrade(ALICE, room_id, "99")
    with pytest.raises(Forbidden):
        await rooms.upgrader.upgrade(CAROL, room_id, "12")
    new = await rooms.upgrader.upgrade(ALICE, room_id, "11")
    assert (await _content(rooms, new, "m.room.power_levels"))["users"] == {ALICE: 100}
