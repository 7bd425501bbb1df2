"""Presence on both engines: states, status messages, idleness on timers, visibility."""

from __future__ import annotations

import asyncio

import pytest

from homeserver.clock import FakeClock
from homeserver.errors import Forbidden
from homeserver.storage import streams
from homeserver.storage.database import Database
from homeserver.storage.presence import PresenceStore
from homeserver.sync.notifier import Notifier
from homeserver.sync.presence import ACTIVITY_GRANULARITY_MS, PresenceService
from homeserver.sync.timers import FakeScheduler
from homeserver.sync.tokens import SyncToken
from tests.sync.fakes import FakeRooms

IDLE_MS = 300_000


@pytest.fixture
def rooms() -> FakeRooms:
    r = FakeRooms()
    r.join("@a:x", "!r:x")
    r.join("@b:x", "!r:x")
    r.join("@loner:x", "!solo:x")
    return r


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start_ms=10_000_000)


@pytest.fixture
def scheduler(clock: FakeClock) -> FakeScheduler:
    return FakeScheduler(clock)


@pytest.fixture
def notifier() -> Notifier:
    return Notifier()


@pytest.fixture
def presence(database: Database, rooms: FakeRooms, clock: FakeClock, scheduler: FakeScheduler,
             notifier: Notifier) -> PresenceService:
    return PresenceService(database, PresenceStore(), notifier, rooms, clock, scheduler,
                           idle_timeout_ms=IDLE_MS)


async def test_set_and_get(presence: PresenceService, clock: FakeClock) -> None:
    assert await presence.get_presence("@a:x", "@a:x") == {"presence": "offline"}
    await presence.set_presence("@a:x", "online", "hacking")
    clock.advance(1234)
    assert await presence.get_presence("@b:x", "@a:x") == {
        "presence": "online", "status_msg": "hacking", "last_active_ago": 1234,
        "currently_active": True}
    await presence.set_presence("@a:x", "unavailable")
    got = await presence.get_presence("@a:x", "@a:x")
    assert got["presence"] == "unavailable" and "status_msg" not in got
    assert got["currently_active"] is False and got["last_active_ago"] == 1234


async def test_presence_of_strangers_is_forbidden(presence: PresenceService) -> None:
    with pytest.raises(Forbidden):
        await presence.get_presence("@loner:x", "@a:x")


async def test_idle_user_becomes_unavailable(presence: PresenceService, scheduler: FakeScheduler,
                                             database: Database) -> None:
    await presence.set_presence("@a:x", "online")
    scheduler.advance(IDLE_MS - 1)
    await presence.settle()
    assert (await presence.get_presence("@a:x", "@a:x"))["presence"] == "online"
    scheduler.advance(1)
    await presence.settle()
    got = await presence.get_presence("@a:x", "@a:x")
    assert got["presence"] == "unavailable" and got["last_active_ago"] == IDLE_MS
    assert scheduler.pending() == 0


async def test_activity_postpones_idleness(presence: PresenceService, scheduler: FakeScheduler) -> None:
    await presence.set_presence("@a:x", "online")
    scheduler.advance(IDLE_MS - 1000)
    await presence.user_active("@a:x")
    scheduler.advance(1000)  # the first timer fires, sees the activity and re-arms
    await presence.settle()
    assert (await presence.get_presence("@a:x", "@a:x"))["presence"] == "online"
    assert scheduler.pending() == 1
    scheduler.advance(IDLE_MS)
    await presence.settle()
    assert (await presence.get_presence("@a:x", "@a:x"))["presence"] == "unavailable"


async def test_activity_writes_are_rate_limited(presence: PresenceService, database: Database,
                                                clock: FakeClock) -> None:
    await presence.user_active("@a:x")
    first = await streams.current_position(database, "presence")
    clock.advance(ACTIVITY_GRANULARITY_MS - 1)
    await presence.user_active("@a:x")
    assert await streams.current_position(database, "presence") == first
    clock.advance(1)
    await presence.user_active("@a:x")
    assert await streams.current_position(database, "presence") == first + 1


async def test_presence_since_and_wake_up(presence: PresenceService, database: Database,
                                          notifier: Notifier) -> None:
    # @b shares !r:x with @a, so a waiter of @b's on that room wakes.
    waiter = asyncio.ensure_future(notifier.wait_for("@b:x", SyncToken(), {"!r:x"}, 60_000))
    await asyncio.sleep(0)  # one loop turn: the waiter registers
    await presence.set_presence("@a:x", "online", "hi")
    assert await waiter is True
    await presence.set_presence("@loner:x", "online")
    up_to = await streams.current_position(database, "presence")
    events = await presence.presence_since(0, up_to, {"@a:x", "@b:x"})
    assert events == [{"type": "m.presence", "sender": "@a:x", "content": {
        "presence": "online", "status_msg": "hi", "last_active_ago": 0, "currently_active": True}}]
    assert await presence.presence_since(up_to, up_to, {"@a:x"}) == []


async def test_disabled_presence_is_inert(database: Database, rooms: FakeRooms, clock: FakeClock,
                                          scheduler: FakeScheduler) -> None:
    off = PresenceService(database, PresenceStore(), Notifier(), rooms, clock, scheduler,
                          enabled=False)
    await off.set_presence("@a:x", "online", "hello")
    await off.user_active("@a:x")
    assert await off.get_presence("@a:x", "@a:x") == {"presence": "offline"}
    assert await off.presence_since(0, 100, {"@a:x"}) == []
    assert scheduler.pending() == 0
    assert await streams.current_position(database, "presence") == 0
