"""Membership: join, invite, leave, forget, kick, ban, unban, knock, member lists."""

from __future__ import annotations

import pytest

from homeserver.errors import BadRequest, Forbidden, InvalidParam, NotFound
from homeserver.rooms.service import RoomService
from tests.rooms.conftest import ALICE, BOB, CAROL, make_room


async def test_invite_only_room(rooms: RoomService) -> None:
    room_id = await make_room(rooms)
    with pytest.raises(Forbidden):
        await rooms.membership.join(BOB, room_id)
    with pytest.raises(Forbidden):
        await rooms.membership.invite(CAROL, room_id, BOB)  # inviter not in the room
    await rooms.membership.invite(ALICE, room_id, BOB)
    assert await rooms.membership.join(BOB, room_id) == room_id
    assert await rooms.membership.join(BOB, room_id) == room_id  # already joined: no-op
    assert await rooms.reader.joined_rooms(BOB) == [room_id]
    with pytest.raises(Forbidden):
        await rooms.membership.invite(ALICE, room_id, BOB)  # already in the room


async def test_unknown_rooms_and_aliases(rooms: RoomService) -> None:
    with pytest.raises(NotFound):
        await rooms.membership.join(BOB, "!unknown:test.local")
    with pytest.raises(NotFound):
        await rooms.membership.join(BOB, "#unknown:test.local")
    with pytest.raises(NotFound):
        await rooms.membership.leave(BOB, "!unknown:test.local")
    with pytest.raises(Forbidden):
        await rooms.membership.invite(BOB, "!unknown:test.local", ALICE)
    with pytest.raises(InvalidParam):
        await rooms.membership.join(BOB, "#bad")


async def test_leave_and_forget(rooms: RoomService) -> None:
    room_id = await make_room(rooms, preset="public_chat")
    with pytest.raises(Forbidden):
        await rooms.membership.leave(BOB, room_id)
    await rooms.membership.join(BOB, room_id)
    with pytest.raises(BadRequest):
        await rooms.membership.forget(BOB, room_id)
    await rooms.membership.leave(BOB, room_id)
    await rooms.membership.leave(BOB, room_id)  # idempotent
    await rooms.membership.forget(BOB, room_id)
    assert await rooms.reader.joined_rooms(BOB) == []
    async with rooms.access._db.connection() as conn:
        assert await rooms.stores.memberships.is_forgotten(conn, room_id, BOB)
    await rooms.membership.join(BOB, room_id)
    async with rooms.access._db.connection() as conn:
        assert not await rooms.stores.memberships.is_forgotten(conn, room_id, BOB)


async def test_kick_ban_unban_need_power(rooms: RoomService) -> None:
    room_id = await make_room(rooms, preset="public_chat")
    await rooms.membership.join(BOB, room_id)
    await rooms.membership.join(CAROL, room_id)
    with pytest.raises(Forbidden):
        await rooms.membership.kick(BOB, room_id, CAROL)
    with pytest.raises(Forbidden):
        await rooms.membership.ban(BOB, room_id, CAROL)
    await rooms.membership.kick(ALICE, room_id, CAROL, reason="spam")
    with pytest.raises(Forbidden):
        await rooms.membership.kick(ALICE, room_id, CAROL)  # not in the room any more
    await rooms.membership.ban(ALICE, room_id, CAROL)
    with pytest.raises(Forbidden):
        await rooms.membership.join(CAROL, room_id)
    with pytest.raises(Forbidden):
        await rooms.membership.unban(ALICE, room_id, BOB)  # not banned
    await rooms.membership.unban(ALICE, room_id, CAROL)
    await rooms.membership.join(CAROL, room_id)
    members = await rooms.reader.members(ALICE, room_id)
    assert {m["state_key"]: m["content"]["membership"] for m in members} == {
        ALICE: "join", BOB: "join", CAROL: "join"}


async def test_knock(rooms: RoomService) -> None:
    room_id = await make_room(rooms, initial_state=())
    await rooms.send.set_state(ALICE, room_id, "m.room.join_rules", "", {"join_rule": "knock"})
    assert await rooms.membership.knock(BOB, room_id, reason="let me in") == room_id
    members = await rooms.reader.members(ALICE, room_id, membership="knock")
    assert [m["state_key"] for m in members] == [BOB]
    await rooms.membership.invite(ALICE, room_id, BOB)
    await rooms.membership.join(BOB, room_id)
    old = await make_room(rooms, room_version="6")
    await rooms.send.set_state(ALICE, old, "m.room.join_rules", "", {"join_rule": "knock"})
    with pytest.raises(Forbidden):
        await rooms.membership.knock(BOB, old)  # knocking needs room version 7


async def test_restricted_join_via_membership_of_another_room(rooms: RoomService) -> None:
    space = await make_room(rooms)
    await rooms.membership.invite(ALICE, space, BOB)
    await rooms.membership.join(BOB, space)
    room_id = await make_room(rooms)
    await rooms.send.set_state(ALICE, room_id, "m.room.join_rules", "", {
        "join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]})
    with pytest.raises(Forbidden):
        await rooms.membership.join(CAROL, room_id)
    await rooms.membership.join(BOB, room_id)
    member = await rooms.reader.get_state_event(ALICE, room_id, "m.room.member", BOB)
    assert member["content"]["join_authorised_via_users_server"] == ALICE


async def test_members_filters_and_access(rooms: RoomService) -> None:
    room_id = await make_room(rooms, preset="public_chat")
    await rooms.membership.join(BOB, room_id)
    position = await rooms.event_position(room_id, (await rooms.reader.get_state_event(
        ALICE, room_id, "m.room.member", BOB))["event_id"])
    await rooms.membership.invite(ALICE, room_id, CAROL)
    assert {m["state_key"] for m in await rooms.reader.members(ALICE, room_id, not_membership="invite")} == {ALICE, BOB}
    at = await rooms.reader.members(ALICE, room_id, at=f"s{position}")
    assert {m["state_key"] for m in at} == {ALICE, BOB}
    with pytest.raises(Forbidden):
        await rooms.reader.members(CAROL, room_id)  # invited, not joined
    with pytest.raises(InvalidParam):
        await rooms.reader.members(ALICE, room_id, membership="bogus")
    joined = await rooms.reader.joined_members(BOB, room_id)
    assert set(joined["joined"]) == {ALICE, BOB}
    await rooms.membership.leave(BOB, room_id)
    await rooms.send.set_state(ALICE, room_id, "m.room.name", "", {"name": "after"})
    # A user who left sees the state as it was when they left.
    state = await rooms.reader.get_state(BOB, room_id)
    assert ("m.room.name", "") not in {(e["type"], e["state_key"]) for e in state}
    assert await rooms.is_joined(ALICE, room_id) and not await rooms.is_joined(BOB, room_id)
