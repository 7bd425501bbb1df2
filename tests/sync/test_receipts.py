"""Receipts and read markers on both engines."""

from __future__ import annotations

import asyncio

import pytest

from homeserver.clock import FakeClock
from homeserver.errors import Forbidden, InvalidParam, NotFound
from homeserver.storage import streams
from homeserver.storage.account_data import AccountDataStore
from homeserver.storage.database import Database
from homeserver.storage.receipts import ReceiptStore
from homeserver.sync.notifier import Notifier
from homeserver.sync.receipts import ReceiptService, validate_thread_id
from homeserver.sync.tokens import SyncToken
from tests.sync.fakes import FakeRooms

ROOM = "!r:x"


@pytest.fixture
def rooms() -> FakeRooms:
    r = FakeRooms()
    r.join("@a:x", ROOM)
    r.join("@b:x", ROOM)
    for i in range(1, 6):
        r.add_event(ROOM, f"$e{i}", i)
    r.add_event("!elsewhere:x", "$far", 99)
    return r


@pytest.fixture
def notifier() -> Notifier:
    return Notifier()


@pytest.fixture
def service(database: Database, rooms: FakeRooms, notifier: Notifier) -> ReceiptService:
    return ReceiptService(database, ReceiptStore(), AccountDataStore(), notifier, rooms, rooms,
                          FakeClock(start_ms=5000))


async def _position(db: Database) -> int:
    return await streams.current_position(db, "receipts")


async def test_public_receipt_seen_by_everyone_in_room(service: ReceiptService, database: Database) -> None:
    await service.post_receipt("@a:x", ROOM, "m.read", "$e2")
    up_to = await _position(database)
    expected = {ROOM: {"type": "m.receipt",
                       "content": {"$e2": {"m.read": {"@a:x": {"ts": 5000}}}}}}
    assert await service.receipts_since("@b:x", [ROOM], 0, up_to) == expected
    assert await service.receipts_initial("@b:x", [ROOM]) == expected
    assert await service.receipts_since("@b:x", [ROOM], up_to, up_to) == {}
    assert await service.receipts_since("@b:x", ["!other:x"], 0, up_to) == {}


async def test_private_receipt_only_for_its_owner(service: ReceiptService, database: Database) -> None:
    await service.post_receipt("@a:x", ROOM, "m.read.private", "$e3")
    up_to = await _position(database)
    mine = await service.receipts_since("@a:x", [ROOM], 0, up_to)
    assert mine[ROOM]["content"] == {"$e3": {"m.read.private": {"@a:x": {"ts": 5000}}}}
    assert await service.receipts_since("@b:x", [ROOM], 0, up_to) == {}
    assert await service.receipts_initial("@b:x", [ROOM]) == {}


async def test_threaded_receipts_are_separate(service: ReceiptService, database: Database) -> None:
    await service.post_receipt("@a:x", ROOM, "m.read", "$e4", thread_id="$e1")
    await service.post_receipt("@a:x", ROOM, "m.read", "$e2", thread_id="main")
    await service.post_receipt("@a:x", ROOM, "m.read", "$e3")
    content = (await service.receipts_initial("@b:x", [ROOM]))[ROOM]["content"]
    assert content == {
        "$e4": {"m.read": {"@a:x": {"ts": 5000, "thread_id": "$e1"}}},
        "$e2": {"m.read": {"@a:x": {"ts": 5000, "thread_id": "main"}}},
        "$e3": {"m.read": {"@a:x": {"ts": 5000}}},
    }


async def test_receipts_never_move_backwards(service: ReceiptService, database: Database) -> None:
    await service.post_receipt("@a:x", ROOM, "m.read", "$e4")
    before = await _position(database)
    await service.post_receipt("@a:x", ROOM, "m.read", "$e2")  # accepted, ignored
    assert await _position(database) == before
    content = (await service.receipts_initial("@b:x", [ROOM]))[ROOM]["content"]
    assert content == {"$e4": {"m.read": {"@a:x": {"ts": 5000}}}}
    await service.post_receipt("@a:x", ROOM, "m.read", "$e5")
    content = (await service.receipts_initial("@b:x", [ROOM]))[ROOM]["content"]
    assert list(content) == ["$e5"]


async def test_checks(service: ReceiptService) -> None:
    with pytest.raises(Forbidden):
        await service.post_receipt("@stranger:x", ROOM, "m.read", "$e1")
    with pytest.raises(NotFound):
        await service.post_receipt("@a:x", ROOM, "m.read", "$unknown")
    with pytest.raises(NotFound):
        await service.post_receipt("@a:x", ROOM, "m.read", "$far")  # another room's event
    with pytest.raises(InvalidParam):
        await service.post_receipt("@a:x", ROOM, "m.unknown", "$e1")
    with pytest.raises(InvalidParam):
        await service.post_receipt("@a:x", ROOM, "m.fully_read", "$e1", thread_id="main")


@pytest.mark.parametrize("receipt_type,thread_id", [
    ("m.read", ""), ("m.read", 5), ("m.fully_read", "main"), ("m.read", "not-an-event"),
])
def test_thread_id_validation(receipt_type: str, thread_id: object) -> None:
    with pytest.raises(InvalidParam):
        validate_thread_id(receipt_type, thread_id)


async def test_read_markers_write_account_data_and_receipts(
        service: ReceiptService, database: Database, notifier: Notifier) -> None:
    since = SyncToken()
    woken = asyncio.ensure_future(notifier.wait_for("@a:x", since, set(), 60_000))
    await asyncio.sleep(0)  # one loop turn: the waiter registers
    await service.set_read_markers("@a:x", ROOM, fully_read="$e3", read="$e3", read_private="$e4")
    assert await woken is True
    store = AccountDataStore()
    assert await store.get_room(database, "@a:x", ROOM, "m.fully_read") == {"event_id": "$e3"}
    content = (await service.receipts_initial("@a:x", [ROOM]))[ROOM]["content"]
    assert content == {"$e3": {"m.read": {"@a:x": {"ts": 5000}}},
                       "$e4": {"m.read.private": {"@a:x": {"ts": 5000}}}}
    # The fully-read marker only moves forward too, also through the receipt endpoint.
    await service.post_receipt("@a:x", ROOM, "m.fully_read", "$e1")
    assert await store.get_room(database, "@a:x", ROOM, "m.fully_read") == {"event_id": "$e3"}
    await service.post_receipt("@a:x", ROOM, "m.fully_read", "$e5")
    assert await store.get_room(database, "@a:x", ROOM, "m.fully_read") == {"event_id": "$e5"}


async def test_public_receipt_wakes_room_members_private_only_owner(
        service: ReceiptService, notifier: Notifier) -> None:
    since = SyncToken()
    a = asyncio.ensure_future(notifier.wait_for("@a:x", since, {ROOM}, 60_000))
    b = asyncio.ensure_future(notifier.wait_for("@b:x", since, set(), 60_000))  # not via room
    await asyncio.sleep(0)
    await service.post_receipt("@a:x", ROOM, "m.read.private", "$e1")
    assert await a is True
    assert not b.done()
    b.cancel()
    with pytest.raises(asyncio.CancelledError):
        await b
    c = asyncio.ensure_future(notifier.wait_for("@c:x", since, {ROOM}, 60_000))
    await asyncio.sleep(0)
    await service.post_receipt("@b:x", ROOM, "m.read", "$e1")
    assert await c is True
