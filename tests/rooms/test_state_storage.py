"""State snapshots: bounded delta chains, deduplication, and O(1) rows per change."""

from __future__ import annotations

import random

from homeserver.rooms.service import RoomService
from homeserver.storage.database import Database
from homeserver.storage.state import MAX_CHAIN, StateStore, apply_changes
from tests.rooms.conftest import ALICE, make_room

ROOM = "!state:test.local"


async def _entries(db: Database) -> int:
    return int(await db.fetchval("SELECT COUNT(*) FROM state_snapshot_entries"))


async def test_random_changes_read_back_exactly(database: Database) -> None:
    """A model check across many chain re-bases and full snapshots, with deletions."""
    store = StateStore()
    rng = random.Random(7)
    model: dict[tuple[str, str], str] = {}
    snapshots: list[tuple[int, dict[tuple[str, str], str]]] = []
    async with database.transaction() as conn:
        snapshot = await store.create_snapshot(conn, ROOM, None, {})
        for i in range(400):
            key = ("m.room.member", f"@u{rng.randrange(60)}:x")
            changes: dict[tuple[str, str], str | None] = {key: f"$e{i}"}
            if rng.random() < 0.1 and model:
                changes[rng.choice(sorted(model))] = None
            snapshot = await store.create_snapshot(conn, ROOM, snapshot, changes)
            model = apply_changes(model, changes)
            snapshots.append((snapshot, dict(model)))
        chain = await conn.fetchval("SELECT MAX(chain_length) FROM state_snapshots")
        assert chain <= MAX_CHAIN
        for snapshot_id, expected in snapshots[::17] + snapshots[-3:]:
            assert await store.get_state(conn, snapshot_id) == expected
            key = next(iter(expected))
            assert await store.get_entry(conn, snapshot_id, *key) == expected[key]
            members = await store.get_state_of_type(conn, snapshot_id, "m.room.member")
            assert members == {k[1]: v for k, v in expected.items()}


async def test_identical_states_share_a_snapshot(database: Database) -> None:
    store = StateStore()
    async with database.transaction() as conn:
        root = await store.create_snapshot(conn, ROOM, None, {("a", ""): "$1"})
        one = await store.create_snapshot(conn, ROOM, root, {("b", ""): "$2"})
        back = await store.create_snapshot(conn, ROOM, one, {("b", ""): None})
        assert back == root
        assert await store.create_snapshot(conn, ROOM, one, {("b", ""): "$2"}) == one
        again = await store.create_snapshot(conn, ROOM, root, {("b", ""): "$2"})
        assert again == one
        assert await store.create_snapshot(conn, ROOM, None, {("a", ""): "$1"}) == root


async def test_membership_change_in_a_big_room_adds_constant_rows(rooms: RoomService,
                                                                   database: Database) -> None:
    room_id = await make_room(rooms, preset="public_chat")
    members = 150
    for i in range(members):
        await rooms.membership.join(f"@user{i}:test.local", room_id)
    fulls = "SELECT COUNT(*) FROM state_snapshots WHERE parent_id IS NULL"
    fulls_before = await database.fetchval(fulls)
    rows_per_change = []
    for i in range(members, members + 100):
        before = await _entries(database)
        await rooms.membership.join(f"@user{i}:test.local", room_id)
        rows_per_change.append(await _entries(database) - before)
    # A change writes one row; once per MAX_CHAIN changes a re-base writes the delta
    # accumulated since the last full snapshot; a full copy of the state is written at
    # most once here. Copying the state on each change would be 150+ rows per change.
    assert sorted(rows_per_change)[len(rows_per_change) // 2] == 1
    assert sum(1 for n in rows_per_change if n > 1) <= 100 // MAX_CHAIN + 1
    assert await database.fetchval(fulls) - fulls_before <= 1
    assert sum(rows_per_change) / len(rows_per_change) < 6
    async with database.connection() as conn:
        current = await rooms.stores.current_state.get_state(conn, room_id)
        room = await rooms.stores.rooms.get(conn, room_id)
        assert room is not None and room.current_snapshot_id is not None
        assert await rooms.stores.state.get_state(conn, room.current_snapshot_id) == current
    assert len([k for k in current if k[0] == "m.room.member"]) == members + 101
    leave_before = await _entries(database)
    await rooms.membership.leave("@user3:test.local", room_id)
    assert await _entries(database) - leave_before == 1
    assert ALICE in {k[1] for k in current}
