"""The batched /sync reads on both engines, over rooms built by the real room service."""

from __future__ import annotations

import pytest
import signedjson.key

from homeserver.clock import FakeClock
from homeserver.rooms.creation import CreateRoomRequest
from homeserver.rooms.service import RoomService
from homeserver.storage.database import Database
from homeserver.storage.sync_queries import SummaryMembers, SyncQueries, Window

ALICE = "@alice:test.local"
BOB = "@bob:test.local"


@pytest.fixture
def rooms(database: Database, clock: FakeClock) -> RoomService:
    key = signedjson.key.generate_signing_key("t1")
    return RoomService(database, server_name="test.local", signing_key=key, clock=clock)


async def _room(rooms: RoomService, database: Database, messages: int) -> tuple[str, list[int]]:
    room_id = await rooms.creator.create_room(ALICE, CreateRoomRequest(preset="public_chat"))
    for i in range(messages):
        await rooms.send.send_message(ALICE, "D", room_id, "m.room.message", {"body": str(i)}, f"{room_id}{i}")
    positions = [int(r["stream_ordering"]) for r in await database.fetch(
        "SELECT stream_ordering FROM events WHERE room_id = $1 ORDER BY stream_ordering", room_id)]
    return room_id, positions


async def test_recent_events_reads_each_window_newest_first(rooms: RoomService,
                                                            database: Database) -> None:
    a, a_pos = await _room(rooms, database, 5)
    b, b_pos = await _room(rooms, database, 2)
    queries = SyncQueries()
    async with database.connection() as conn:
        found = await queries.recent_events(conn, [
            Window(a, a_pos[2], a_pos[-1]), Window(b, 0, b_pos[-2]), Window("!none:x", 0, 10**6)], 3)
    assert [e.stream_ordering for e in found[a]] == a_pos[-1:-4:-1]
    assert [e.stream_ordering for e in found[b]] == b_pos[-2:-5:-1]
    assert "!none:x" not in found


async def test_snapshots_and_states(rooms: RoomService, database: Database) -> None:
    room_id, positions = await _room(rooms, database, 1)
    await rooms.membership.join(BOB, room_id)
    queries = SyncQueries()
    async with database.connection() as conn:
        at = await queries.snapshots_at(conn, [(room_id, positions[-1]), (room_id, 10**9),
                                               (room_id, 0)])
        assert (room_id, 0) not in at
        states = await queries.snapshot_states(conn, [at[(room_id, positions[-1])],
                                                      at[(room_id, 10**9)]])
        before_bob = states[at[(room_id, positions[-1])]]
        now = states[at[(room_id, 10**9)]]
        assert ("m.room.member", BOB) not in before_bob and ("m.room.member", BOB) in now
        assert now == await rooms.stores.current_state.get_state(conn, room_id)
        summary = await queries.summary_members(conn, [room_id], 5)
        assert summary == {room_id: SummaryMembers({"join": 2}, [ALICE, BOB], [])}
        heroes = await queries.hero_candidates(conn, [room_id], ALICE, 5)
        assert heroes == {room_id: ([BOB], [])}
        assert await queries.shared_room_users(conn, BOB) == {ALICE, BOB}
        history = await queries.membership_history(conn, BOB, [room_id])
        assert [c.membership for c in history] == ["join"]
        visibility = await queries.visibility_changes(conn, [room_id])
        assert [v for _, v in visibility[room_id]] == ["shared"]


async def test_summary_members_counts_everyone_and_keeps_the_first_of_each_group(
        rooms: RoomService, database: Database) -> None:
    room_id, _ = await _room(rooms, database, 0)
    users = [f"@u{i}:test.local" for i in range(4)]
    for user in users:
        await rooms.membership.join(user, room_id)
    await rooms.membership.leave(users[0], room_id)
    await rooms.membership.invite(ALICE, room_id, BOB)
    other, _ = await _room(rooms, database, 0)
    queries = SyncQueries()
    async with database.connection() as conn:
        found = await queries.summary_members(conn, [room_id, other, "!none:x"], 2)
        heroes = await queries.hero_candidates(conn, [room_id], "", 2)
    # Joined: Alice and three users; invited: Bob; the user who left is among the others.
    assert found[room_id] == SummaryMembers({"join": 4, "invite": 1}, [ALICE, users[1]],
                                            [users[0]])
    assert (found[room_id].present, found[room_id].others) == heroes[room_id]
    assert found[other] == SummaryMembers({"join": 1}, [ALICE], [])
    assert "!none:x" not in found
