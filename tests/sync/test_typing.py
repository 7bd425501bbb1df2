"""Typing: per-user timeouts on timers, a typing stream that wakes syncs."""

from __future__ import annotations

import asyncio

import pytest

from homeserver.clock import FakeClock
from homeserver.errors import Forbidden
from homeserver.sync.notifier import Notifier
from homeserver.sync.timers import FakeScheduler, LoopScheduler
from homeserver.sync.tokens import SyncToken
from homeserver.sync.typing import MAX_TIMEOUT_MS, TypingService
from tests.sync.fakes import FakeRooms

ROOM = "!r:x"


@pytest.fixture
def rooms() -> FakeRooms:
    r = FakeRooms()
    r.join("@a:x", ROOM)
    r.join("@b:x", ROOM)
    return r


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start_ms=1_000_000)


@pytest.fixture
def scheduler(clock: FakeClock) -> FakeScheduler:
    return FakeScheduler(clock)


@pytest.fixture
def typing(rooms: FakeRooms, clock: FakeClock, scheduler: FakeScheduler) -> TypingService:
    return TypingService(Notifier(), rooms, clock, scheduler)


async def test_typing_expires_after_its_timeout(typing: TypingService, scheduler: FakeScheduler) -> None:
    await typing.set_typing("@a:x", ROOM, True, 10_000)
    await typing.set_typing("@b:x", ROOM, True, 30_000)
    assert typing.typing_users(ROOM) == ["@a:x", "@b:x"]
    scheduler.advance(9_999)
    assert typing.typing_users(ROOM) == ["@a:x", "@b:x"]
    scheduler.advance(1)
    assert typing.typing_users(ROOM) == ["@b:x"]
    scheduler.advance(20_000)
    assert typing.typing_users(ROOM) == []
    assert scheduler.pending() == 0


async def test_refresh_extends_and_stop_cancels(typing: TypingService, scheduler: FakeScheduler) -> None:
    await typing.set_typing("@a:x", ROOM, True, 10_000)
    position = typing.position
    scheduler.advance(8_000)
    await typing.set_typing("@a:x", ROOM, True, 10_000)
    assert typing.position == position  # a refresh is no visible change
    scheduler.advance(8_000)
    assert typing.typing_users(ROOM) == ["@a:x"]  # the first timer did not remove it
    await typing.set_typing("@a:x", ROOM, False)
    assert typing.typing_users(ROOM) == [] and scheduler.pending() == 0
    assert typing.position > position


async def test_timeout_is_capped(typing: TypingService, scheduler: FakeScheduler) -> None:
    await typing.set_typing("@a:x", ROOM, True, 10**12)
    scheduler.advance(MAX_TIMEOUT_MS)
    assert typing.typing_users(ROOM) == []


async def test_non_members_cannot_type(typing: TypingService) -> None:
    with pytest.raises(Forbidden):
        await typing.set_typing("@stranger:x", ROOM, True, 1000)


async def test_changes_since_and_positions(typing: TypingService, clock: FakeClock) -> None:
    start = typing.position
    assert start == clock.time_ms()  # seeded from the clock: grows across restarts
    assert typing.changes_since(start, [ROOM]) == {}
    await typing.set_typing("@a:x", ROOM, True, 1000)
    after_a = typing.position
    assert typing.changes_since(start, [ROOM, "!quiet:x"]) == {
        ROOM: {"type": "m.typing", "content": {"user_ids": ["@a:x"]}}}
    assert typing.changes_since(after_a, [ROOM]) == {}
    assert typing.changes_since(None, [ROOM, "!quiet:x"]) == {
        ROOM: {"type": "m.typing", "content": {"user_ids": ["@a:x"]}}}
    # A token from before this process started gets the full state, empty rooms included.
    assert typing.changes_since(start - 1, ["!quiet:x"]) == {
        "!quiet:x": {"type": "m.typing", "content": {"user_ids": []}}}


async def test_typing_wakes_a_waiting_sync(rooms: FakeRooms, clock: FakeClock,
                                           scheduler: FakeScheduler) -> None:
    notifier = Notifier()
    typing = TypingService(notifier, rooms, clock, scheduler)
    since = SyncToken({"typing": typing.position})
    waiter = asyncio.ensure_future(notifier.wait_for("@b:x", since, {ROOM}, 60_000))
    await asyncio.sleep(0)  # one loop turn: the waiter registers
    await typing.set_typing("@a:x", ROOM, True, 1000)
    assert await waiter is True
    # Expiry is a change too.
    since = SyncToken({"typing": typing.position})
    waiter = asyncio.ensure_future(notifier.wait_for("@b:x", since, {ROOM}, 60_000))
    await asyncio.sleep(0)
    scheduler.advance(1000)
    assert await waiter is True


async def test_bounded_change_log_falls_back_to_full_state(rooms: FakeRooms, clock: FakeClock,
                                                           scheduler: FakeScheduler) -> None:
    typing = TypingService(Notifier(), rooms, clock, scheduler, max_tracked_rooms=1)
    rooms.join("@a:x", "!other:x")
    since = typing.position
    await typing.set_typing("@a:x", ROOM, True, 1000)
    await typing.set_typing("@a:x", "!other:x", True, 1000)  # forgets ROOM's change
    assert set(typing.changes_since(since, [ROOM, "!other:x"])) == {ROOM, "!other:x"}


async def test_real_loop_timer_expiry_is_event_driven(rooms: FakeRooms) -> None:
    notifier = Notifier()
    typing = TypingService(notifier, rooms, FakeClock(), LoopScheduler())
    await typing.set_typing("@a:x", ROOM, True, 5)
    since = SyncToken({"typing": typing.position})
    # Woken by the expiry itself, not by sleeping until it should have happened.
    assert await notifier.wait_for("@b:x", since, {ROOM}, 60_000) is True
    assert typing.typing_users(ROOM) == []
