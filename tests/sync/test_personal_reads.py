"""Per-user values read in batches for the syncs woken together (sync/personal_reads.py,
storage/sync_batch_reads.py): each user and device gets exactly what the single-user reads
give, and a value written between two batches is seen by the second."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import signedjson.key

from homeserver.clock import FakeClock
from homeserver.rooms.creation import CreateRoomRequest
from homeserver.rooms.service import RoomService
from homeserver.storage.database import Database
from homeserver.storage.e2e_keys import E2eKeyStore
from homeserver.storage.memberships import MembershipStore
from homeserver.storage.notifications import NewNotification, NotificationStore
from homeserver.storage.sync_batch_reads import (
    DeviceKeyCounts,
    PersonalRows,
    personal_rows,
)
from homeserver.storage.sync_queries import SyncQueries
from homeserver.sync.personal_reads import PersonalReads, room_counts
from homeserver.sync.shared_reads import PerUserBatch

ALICE = "@alice:test.local"
BOB = "@bob:test.local"
CAROL = "@carol:test.local"
ROOM = "!room:test.local"
OTHER_ROOM = "!other:test.local"


# --- PerUserBatch --------------------------------------------------------------------


class RecordingReader:
    """A batch reader over a dict that can change between batches; records each batch."""

    def __init__(self, values: dict[str, int]):
        self.values = values
        self.batches: list[list[str]] = []
        self.fail: BaseException | None = None

    async def __call__(self, keys: list[str]) -> dict[str, int]:
        self.batches.append(sorted(keys))
        if self.fail is not None:
            raise self.fail
        return {k: self.values[k] for k in keys if k in self.values}


async def test_callers_in_one_turn_share_one_read_and_get_their_own_answers() -> None:
    reader = RecordingReader({ALICE: 1, BOB: 2})
    batch: PerUserBatch[str, int] = PerUserBatch(reader)
    answers = await asyncio.gather(batch.get(ALICE), batch.get(BOB), batch.get(ALICE))
    assert answers == [1, 2, 1]
    assert reader.batches == [[ALICE, BOB]]


async def test_a_value_written_between_two_batches_is_seen_by_the_second() -> None:
    reader = RecordingReader({ALICE: 1, BOB: 2})
    batch: PerUserBatch[str, int] = PerUserBatch(reader)
    assert await asyncio.gather(batch.get(ALICE), batch.get(BOB)) == [1, 2]
    reader.values[ALICE] = 5
    assert await asyncio.gather(batch.get(ALICE), batch.get(BOB)) == [5, 2]
    assert reader.batches == [[ALICE, BOB], [ALICE, BOB]]


async def test_a_request_made_early_joins_the_batch_of_its_turn() -> None:
    reader = RecordingReader({ALICE: 1, BOB: 2})
    batch: PerUserBatch[str, int] = PerUserBatch(reader)
    early = batch.request(ALICE)
    assert await batch.get(BOB) == 2
    assert early.done() and early.result() == 1
    assert reader.batches == [[ALICE, BOB]]


async def test_a_caller_that_goes_away_does_not_cancel_the_read_for_the_others() -> None:
    reader = RecordingReader({ALICE: 1})
    batch: PerUserBatch[str, int] = PerUserBatch(reader)
    gone = asyncio.ensure_future(batch.get(ALICE))
    stays = asyncio.ensure_future(batch.get(ALICE))
    await asyncio.sleep(0)
    gone.cancel()
    assert await stays == 1
    assert gone.cancelled()


async def test_a_failed_read_fails_its_batch_and_the_next_batch_reads_again() -> None:
    reader = RecordingReader({ALICE: 1})
    batch: PerUserBatch[str, int] = PerUserBatch(reader)
    reader.fail = RuntimeError("database went away")
    results = await asyncio.gather(batch.get(ALICE), batch.get(ALICE), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    reader.fail = None
    assert await batch.get(ALICE) == 1


async def test_an_answer_missing_from_a_read_is_an_error_not_a_wait() -> None:
    batch: PerUserBatch[str, int] = PerUserBatch(RecordingReader({ALICE: 1}))
    results = await asyncio.gather(batch.get(ALICE), batch.get(BOB), return_exceptions=True)
    assert results[0] == 1 and isinstance(results[1], KeyError)


# --- the batched reads, against the single-user reads, on both engines ----------------


async def _add_users(database: Database, devices: dict[str, list[str]]) -> None:
    async with database.transaction() as conn:
        for user_id, device_ids in devices.items():
            await conn.execute("INSERT INTO users (user_id, created_ts) VALUES ($1, 0)", user_id)
            for device_id in device_ids:
                await conn.execute("INSERT INTO devices (user_id, device_id, created_ts) "
                                   "VALUES ($1, $2, 0)", user_id, device_id)


async def _rooms_with_members(database: Database) -> list[str]:
    """Three rooms of Alice's; Bob joined the last two and left the last one."""
    rooms = RoomService(database, server_name="test.local", clock=FakeClock(),
                        signing_key=signedjson.key.generate_signing_key("t1"))
    room_ids = [await rooms.creator.create_room(ALICE, CreateRoomRequest(preset="public_chat"))
                for _ in range(3)]
    for room_id in room_ids[1:]:
        await rooms.membership.join(BOB, room_id)
    await rooms.membership.leave(BOB, room_ids[2])
    return room_ids


def _notification(user_id: str, room_id: str, event: str, position: int, *,
                  thread: str = "main", highlight: bool = False) -> NewNotification:
    return NewNotification(user_id, room_id, f"${event}", thread, position, ["notify"],
                           highlight, 0)


async def test_batched_unread_counts_match_each_users_own_read(database: Database) -> None:
    store = NotificationStore()
    async with database.transaction() as conn:
        await store.add(conn, [
            _notification(ALICE, ROOM, "a1", 1),
            _notification(ALICE, ROOM, "a2", 2, highlight=True),
            _notification(ALICE, ROOM, "a3", 3, thread="$root"),
            _notification(ALICE, OTHER_ROOM, "a4", 4),
            _notification(BOB, ROOM, "b1", 1),
            _notification(BOB, ROOM, "b2", 2),
        ])
        # Bob read everything in ROOM: his zero counts are left out, as the single read does.
        await store.mark_read(conn, BOB, ROOM, None, 2)
    async with database.connection() as conn:
        batched = (await personal_rows(conn, [], [ALICE, BOB, CAROL, ALICE], [])).unread
        singles = {u: await store.counts(conn, u) for u in (ALICE, BOB, CAROL)}
    assert batched == singles
    assert batched[ALICE] == {ROOM: {"main": (2, 1), "$root": (1, 0)},
                              OTHER_ROOM: {"main": (1, 0)}}
    assert batched[BOB] == {} and batched[CAROL] == {}


async def test_batched_key_counts_match_each_devices_own_read(database: Database) -> None:
    await _add_users(database, {ALICE: ["A1", "A2"], BOB: ["B1"]})
    store = E2eKeyStore()
    async with database.transaction() as conn:
        await store.add_one_time_keys(conn, ALICE, "A1", [
            ("signed_curve25519", f"k{i}", "{}") for i in range(3)] + [("curve25519", "c", "{}")], 1)
        await store.add_one_time_keys(conn, ALICE, "A2", [("signed_curve25519", "k", "{}")], 2)
        await store.set_fallback_key(conn, ALICE, "A1", "signed_curve25519", "f1", "{}")
        await store.set_fallback_key(conn, ALICE, "A1", "curve25519", "f2", "{}")
        await store.set_fallback_key(conn, BOB, "B1", "signed_curve25519", "f3", "{}")
        await store.claim_fallback_key(conn, BOB, "B1", "signed_curve25519")  # now used
    devices = [(ALICE, "A1"), (ALICE, "A2"), (BOB, "B1"), (BOB, "UNKNOWN")]
    async with database.connection() as conn:
        batched = (await personal_rows(conn, [], [], devices)).keys
        singles = {(u, d): DeviceKeyCounts(await store.one_time_key_counts(conn, u, d),
                                           await store.unused_fallback_key_types(conn, u, d))
                   for u, d in devices}
        assert await personal_rows(conn, [], [], []) == PersonalRows({}, {}, {})
    assert batched == singles
    assert batched[(ALICE, "A1")] == DeviceKeyCounts(
        {"signed_curve25519": 3, "curve25519": 1}, ["curve25519", "signed_curve25519"])
    assert batched[(BOB, "B1")] == DeviceKeyCounts({}, [])


async def test_batched_memberships_match_each_users_own_read(database: Database) -> None:
    rooms = await _rooms_with_members(database)
    users = [ALICE, BOB, CAROL, ALICE]
    async with database.connection() as conn:
        batched = (await personal_rows(conn, users, [], [])).memberships
        assert batched == await SyncQueries().memberships_of_users(conn, users)
        assert batched == {u: await MembershipStore().rooms_for_user(conn, u)
                           for u in (ALICE, BOB, CAROL)}
    assert [m.room_id for m in batched[ALICE]] == rooms
    assert [(m.room_id, m.membership) for m in batched[BOB]] == [(rooms[1], "join"),
                                                                  (rooms[2], "leave")]


async def test_personal_rows_read_each_kind_for_whom_it_is_asked(database: Database) -> None:
    await _add_users(database, {ALICE: ["A1"], BOB: ["B1"]})
    async with database.transaction() as conn:
        await NotificationStore().add(conn, [_notification(ALICE, ROOM, "a1", 1),
                                             _notification(BOB, ROOM, "b1", 2)])
        await E2eKeyStore().add_one_time_keys(conn, BOB, "B1", [("signed_curve25519", "k", "{}")], 1)
    rooms = await _rooms_with_members(database)
    async with database.connection() as conn:
        found = await personal_rows(conn, [ALICE], [BOB], [(BOB, "B1")])
    assert list(found.memberships) == [ALICE] and len(found.memberships[ALICE]) == len(rooms)
    assert found.unread == {BOB: {ROOM: {"main": (1, 0)}}}
    assert found.keys == {(BOB, "B1"): DeviceKeyCounts({"signed_curve25519": 1}, [])}


async def test_personal_reads_give_each_device_its_own_values(
        database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    await _add_users(database, {ALICE: ["A1", "A2"], BOB: ["B1"]})
    store = E2eKeyStore()
    async with database.transaction() as conn:
        await store.add_one_time_keys(conn, ALICE, "A1", [("signed_curve25519", "k1", "{}")], 1)
        await NotificationStore().add(conn, [_notification(BOB, ROOM, "b1", 1)])
    batches: list[int] = []
    original = PersonalReads._read

    async def recording(self: PersonalReads, asked: list[Any]) -> Any:
        batches.append(len(asked))
        return await original(self, asked)

    monkeypatch.setattr(PersonalReads, "_read", recording)
    reads = PersonalReads(database, SyncQueries(), counts=True, keys=True)
    futures = [reads.request(ALICE, "A1"), reads.request(ALICE, "A2"),
               reads.request(BOB, "B1"), reads.request(BOB, None)]
    a1, a2, b1, b_none = await asyncio.gather(*futures)
    assert batches == [4]
    assert a1.keys == DeviceKeyCounts({"signed_curve25519": 1}, [])
    assert a2.keys == DeviceKeyCounts({}, [])
    assert b1.keys == DeviceKeyCounts({}, []) and b_none.keys is None
    assert a1.counts == a2.counts == {}
    assert b1.counts == b_none.counts == {ROOM: {"main": (1, 0)}}
    # A key claimed after that batch is seen by the next one.
    async with database.transaction() as conn:
        await store.claim_one_time_key(conn, ALICE, "A1", "signed_curve25519")
    assert (await reads.request(ALICE, "A1")).keys == DeviceKeyCounts({}, [])


async def test_personal_reads_read_only_what_they_are_asked_to(database: Database) -> None:
    await _add_users(database, {ALICE: ["A1"]})
    keys_only = await PersonalReads(database, SyncQueries(), counts=False, keys=True).request(
        ALICE, "A1")
    assert keys_only.counts is None and keys_only.keys == DeviceKeyCounts({}, [])
    counts_only = await PersonalReads(database, SyncQueries(), counts=True, keys=False).request(
        ALICE, "A1")
    assert counts_only.counts == {} and counts_only.keys is None


def test_room_counts_sum_threads_or_split_them() -> None:
    counts = {ROOM: {"main": (2, 1), "$root": (3, 0)}}
    summed = room_counts(counts, [ROOM, OTHER_ROOM], by_thread=False)
    assert summed[ROOM].unread == {"notification_count": 5, "highlight_count": 1}
    assert summed[ROOM].threads is None
    assert summed[OTHER_ROOM].unread == {"notification_count": 0, "highlight_count": 0}
    split = room_counts(counts, [ROOM, OTHER_ROOM], by_thread=True)
    assert split[ROOM].unread == {"notification_count": 2, "highlight_count": 1}
    assert split[ROOM].threads == {"$root": {"notification_count": 3, "highlight_count": 0}}
    assert split[OTHER_ROOM].threads == {}


async def test_a_batch_cancelled_before_its_read_fails_its_callers_and_the_next_reads() -> None:
    reader = RecordingReader({ALICE: 1})
    batch: PerUserBatch[str, int] = PerUserBatch(reader)
    waiting = asyncio.ensure_future(batch.get(ALICE))
    await asyncio.sleep(0)
    for task in list(batch._running):  # noqa: SLF001 (cancelling the batch's own task)
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert reader.batches == []
    assert await batch.get(ALICE) == 1
