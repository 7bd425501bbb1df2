"""Push evaluation inside the persist transaction (BulkPushEvaluator.record_in_transaction
as a batch writer of the persistence path): it records exactly what the after-commit
passes record, moves the position with the events, needs no pass of its own, and when
it cannot record, the events are not lost and the background pass records them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import pytest

from homeserver.clock import FakeClock
from homeserver.push.bulk_evaluator import BulkPushEvaluator
from homeserver.rooms.persistence import PersistedEvent
from homeserver.rooms.service import RoomService
from homeserver.storage.database import Connection, Database
from homeserver.storage.notifications import NotificationStore, Started, Step
from homeserver.storage.push_position import PushPositionStore
from homeserver.storage.pushers import PusherRow, PusherStore
from homeserver.storage.streams import current_position
from tests.push.test_bulk_evaluator import (
    GatedPosition,
    chat,
    evaluator,
    pushes_for,
    reset,
    send,
    snapshot,
)
from tests.rooms.conftest import ALICE, BOB, make_room


def attach(rooms: RoomService, push: BulkPushEvaluator) -> None:
    """Wire the evaluator as the homeserver does (server.py, _build_push): on
    PostgreSQL a batch of messages is recorded by the statement that writes it."""
    rooms.persister.batch_writers.append(push.record_in_transaction)
    rooms.persister.timeline_push = push.timeline_rows
    rooms.add_event_listener(push.on_event_persisted)


async def room_with_bob(rooms: RoomService, database: Database, clock: FakeClock, *,
                        notifications: NotificationStore | None = None,
                        delivery: Any = None) -> tuple[str, BulkPushEvaluator]:
    """A public room of alice's that bob joined, and an evaluator caught up and wired."""
    room_id = await make_room(rooms, preset="public_chat")
    await rooms.membership.join(BOB, room_id)
    push = evaluator(rooms, database, clock, notifications=notifications, delivery=delivery)
    await push.catch_up()
    attach(rooms, push)
    return room_id, push


def counts_at_wake_up(push: BulkPushEvaluator, database: Database, user: str) -> list[Any]:
    """What a woken /sync of `user` would read as each event is announced, in order."""
    seen: list[Any] = []

    async def wake(persisted: PersistedEvent) -> None:
        seen.append(await NotificationStore().counts(database, user))
    push.after_evaluation.append(wake)
    return seen


class Woken:
    """An after_evaluation callback: which events were announced, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def __call__(self, persisted: PersistedEvent) -> None:
        self.events.append(persisted.event_id)


@pytest.mark.parametrize("pusher", [True, False])
async def test_inline_records_what_the_passes_record(
        rooms: RoomService, database: Database, clock: FakeClock, pusher: bool) -> None:
    start = await current_position(database, "events")
    position = GatedPosition()
    push = evaluator(rooms, database, clock, position=position)
    await push.catch_up()
    position.arrived.clear()
    attach(rooms, push)
    _, chat_start = await chat(rooms, database, clock, pusher=pusher)
    await push.drained()
    inline = await snapshot(database)
    assert all(v or (t == "push_queue" and not pusher) for t, v in inline.items())
    # Every event moved the position inside its own transaction; no pass read the stream.
    assert not position.arrived.is_set()
    assert await PushPositionStore().evaluated_upto(database) == \
        await current_position(database, "events")
    # The same conversation evaluated by after-commit passes records the same rows.
    await reset(database, chat_start)
    await evaluator(rooms, database, clock, batch_size=1).catch_up()
    # chat() ends with a receipt, which the passes here see before evaluating and the
    # inline run saw after: the counts agree, but a thread row created after the receipt
    # keeps its own read position (a bookkeeping column no count depends on).
    assert without_read_upto(await snapshot(database)) == without_read_upto(inline)
    assert start <= chat_start


def without_read_upto(tables: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    return {**tables, "notification_counts": [r[:5] for r in tables["notification_counts"]]}


async def test_the_wake_up_follows_the_commit_with_counts_in_place(
        rooms: RoomService, database: Database, clock: FakeClock) -> None:
    room_id, push = await room_with_bob(rooms, database, clock)
    seen = counts_at_wake_up(push, database, BOB)
    await send(rooms, ALICE, room_id, "one")
    await send(rooms, ALICE, room_id, "two")
    # Announced during the send itself (no background pass to wait for).
    assert seen == [{room_id: {"main": (1, 0)}}, {room_id: {"main": (2, 0)}}]


class FailingOnce(NotificationStore):
    """The first batch cannot be recorded (a database error mid-write)."""

    def __init__(self) -> None:
        self.failures = 1

    async def advance_and_record(self, conn: Connection, after: int, upto: int,
                                 steps: Sequence[Step], *, pushes: bool) -> Started | None:
        if self.failures:
            self.failures -= 1
            # A real failing statement, so PostgreSQL's transaction state is exercised.
            await conn.execute("SELECT no_such_column FROM notifications")
        return await super().advance_and_record(conn, after, upto, steps, pushes=pushes)


async def test_a_failed_inline_record_is_rolled_back_and_caught_up_after_commit(
        rooms: RoomService, database: Database, clock: FakeClock) -> None:
    room_id = await make_room(rooms, preset="public_chat")
    await rooms.membership.join(BOB, room_id)
    store = FailingOnce()
    push = evaluator(rooms, database, clock, notifications=store)
    await push.catch_up()
    attach(rooms, push)
    woken = Woken()
    push.after_evaluation.append(woken)
    first = await send(rooms, ALICE, room_id, "the write fails")
    second = await send(rooms, ALICE, room_id, "after it")
    await push.drained()
    assert store.failures == 0
    # The sends stand, each event counted once, announced in stream order.
    assert await NotificationStore().counts(database, BOB) == {room_id: {"main": (2, 0)}}
    assert woken.events == [first, second]
    assert await PushPositionStore().evaluated_upto(database) == \
        await current_position(database, "events")


async def test_events_behind_an_unevaluated_one_wait_for_the_pass(
        rooms: RoomService, database: Database, clock: FakeClock) -> None:
    room_id = await make_room(rooms, preset="public_chat")
    await rooms.membership.join(BOB, room_id)
    position = GatedPosition()
    push = evaluator(rooms, database, clock, position=position)
    # Not caught up: the room's own events are still unevaluated, so nothing may be
    # recorded inline (the position would jump over them).
    attach(rooms, push)
    woken = Woken()
    push.after_evaluation.append(woken)
    position.gate.clear()
    lone = await send(rooms, ALICE, room_id, "behind the room's setup")
    await position.arrived.wait()
    assert woken.events == []
    position.gate.set()
    await push.drained()
    assert woken.events == [lone]
    assert await NotificationStore().counts(database, BOB) == {room_id: {"main": (1, 0)}}
    # Caught up now: the next event is recorded with its commit.
    position.moves.clear()
    await send(rooms, ALICE, room_id, "inline again")
    assert await NotificationStore().counts(database, BOB) == {room_id: {"main": (2, 0)}}
    assert len(position.moves) == 1


class CountingRecords(NotificationStore):
    """Counts the evaluator's own statements that record fresh events."""

    def __init__(self) -> None:
        self.calls = 0

    async def advance_and_record(self, conn: Connection, after: int, upto: int,
                                 steps: Sequence[Step], *, pushes: bool) -> Started | None:
        self.calls += 1
        return await super().advance_and_record(conn, after, upto, steps, pushes=pushes)


async def test_on_postgresql_the_records_ride_the_statement_that_writes_the_events(
        rooms: RoomService, database: Database, clock: FakeClock, engine: str) -> None:
    """Once the evaluator knows the position (after its first batch), a batch of
    messages is recorded by the timeline statement on PostgreSQL: no statement of its
    own, the same counts, and the wake-up right after the commit."""
    store = CountingRecords()
    room_id, push = await room_with_bob(rooms, database, clock, notifications=store)
    store.calls = 0  # the catch-up's
    seen = counts_at_wake_up(push, database, BOB)
    await send(rooms, ALICE, room_id, "one")
    await send(rooms, ALICE, room_id, "two")
    await send(rooms, ALICE, room_id, "three", **{"m.mentions": {"user_ids": [BOB]}})
    await send(rooms, BOB, room_id, "read")  # sending reads up to one's own event
    assert seen[:3] == [{room_id: {"main": (1, 0)}}, {room_id: {"main": (2, 0)}},
                        {room_id: {"main": (3, 1)}}]
    assert seen[3] == {}
    assert await NotificationStore().counts(database, ALICE) == {room_id: {"main": (1, 0)}}
    assert store.calls == (1 if engine == "postgres" else 4)
    assert await PushPositionStore().evaluated_upto(database) == \
        await current_position(database, "events")


async def test_a_wrong_guess_of_the_positions_records_nothing_and_the_event_is_not_lost(
        rooms: RoomService, database: Database, clock: FakeClock) -> None:
    """Another writer took an events position the evaluator did not see (another
    process): the batch's guess is wrong, the statement writes the events alone, and
    the event is recorded the usual way."""
    store = CountingRecords()
    room_id, push = await room_with_bob(rooms, database, clock, notifications=store)
    await send(rooms, ALICE, room_id, "one")
    calls = store.calls
    async with database.transaction() as conn:
        await conn.execute("UPDATE stream_positions SET position = position + 1"
                           " WHERE stream = 'events'")
    await send(rooms, ALICE, room_id, "two")
    await push.drained()
    assert await NotificationStore().counts(database, BOB) == {room_id: {"main": (2, 0)}}
    assert await PushPositionStore().evaluated_upto(database) == \
        await current_position(database, "events")
    # Nothing was written by the statement: a pass recorded it.
    assert store.calls > calls
    await send(rooms, ALICE, room_id, "three")
    assert await NotificationStore().counts(database, BOB) == {room_id: {"main": (3, 0)}}


async def test_rooms_sending_at_once_are_recorded_once_each(
        rooms: RoomService, database: Database, clock: FakeClock) -> None:
    """Batches of two rooms in flight together, where a guess of the positions may be
    wrong: every message is counted exactly once."""
    first = await make_room(rooms, preset="public_chat")
    second = await make_room(rooms, preset="public_chat")
    for room_id in (first, second):
        await rooms.membership.join(BOB, room_id)
    push = evaluator(rooms, database, clock)
    await push.catch_up()
    attach(rooms, push)
    await send(rooms, ALICE, first, "known position")
    await asyncio.gather(*(send(rooms, ALICE, room_id, f"at once {i}")
                           for i in range(5) for room_id in (first, second)))
    await push.drained()
    assert await NotificationStore().counts(database, BOB) == {
        first: {"main": (6, 0)}, second: {"main": (5, 0)}}
    assert await PushPositionStore().evaluated_upto(database) == \
        await current_position(database, "events")


async def test_on_postgresql_the_records_are_made_while_the_lock_is_taken(
        rooms: RoomService, database: Database, clock: FakeClock, engine: str) -> None:
    """With everything it needs in memory, the evaluator makes a batch's records while
    the lock statement is under way (on the persister's memory-only connection), and
    the statement takes those along; where that would need a read (a cold cache), the
    batch writer records the batch as usual, in its savepoint."""
    store = CountingRecords()
    room_id, push = await room_with_bob(rooms, database, clock, notifications=store)
    await send(rooms, ALICE, room_id, "the position is known after this")
    store.calls = 0
    made_on: list[str] = []
    original = rooms.persister.timeline_push
    assert original is not None

    async def recording(conn: Connection, pdus: Sequence[Any], snapshot_id: int) -> Any:
        made_on.append(type(conn).__name__)
        return await original(conn, pdus, snapshot_id)
    rooms.persister.timeline_push = recording
    await send(rooms, ALICE, room_id, "two")
    await send(rooms, ALICE, room_id, "three")
    push._audiences = type(push._audiences)()  # a cold cache: the room must be read
    await send(rooms, ALICE, room_id, "four")
    await push.drained()
    # Only ever on the memory-only connection; the cold cache's batch is recorded by
    # the batch writer (its one statement of its own on PostgreSQL).
    assert made_on == (["_MemoryOnly"] * 3 if engine == "postgres" else [])
    assert store.calls == (1 if engine == "postgres" else 3)
    assert await NotificationStore().counts(database, BOB) == {room_id: {"main": (4, 0)}}
    assert await PushPositionStore().evaluated_upto(database) == \
        await current_position(database, "events")


class FailingTwice:
    """Queueing a push fails twice: the batch's writers fail on both of its tries (the
    second in their savepoint), then it works."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.failures = 2

    async def users_with_pushers(self, conn: Connection, user_ids: Any) -> set[str]:
        return cast(set[str], await self.inner.users_with_pushers(conn, user_ids))

    async def enqueue(self, conn: Connection, notifications: Sequence[Any]) -> bool:
        if self.failures:
            self.failures -= 1
            raise ValueError("cannot queue")
        return cast(bool, await self.inner.enqueue(conn, notifications))

    def wake(self) -> None:
        pass


async def test_records_the_statement_cannot_write_whole_are_not_lost_with_the_writers(
        rooms: RoomService, database: Database, clock: FakeClock, engine: str) -> None:
    """Bob has a pusher, so a push must be queued with his notification: the batch's
    statement leaves the records (and the position) to push's batch writer. When the
    writer fails in its savepoint, nothing of push was written and the after-commit pass
    records the event; had the statement moved the position, the event would be lost."""
    delivery = FailingTwice(pushes_for(database, clock))
    room_id, push = await room_with_bob(rooms, database, clock, delivery=delivery)
    delivery.failures = 0
    await send(rooms, ALICE, room_id, "the position is known after this")
    async with database.transaction() as conn:
        await PusherStore().upsert(conn, PusherRow(BOB, "app", "key", "http", "App", "Phone",
                                                   None, "en", {"url": "https://x"}, None, 0))
    # PostgreSQL runs the writers without a savepoint first, then again in one.
    delivery.failures = 2 if engine == "postgres" else 1
    event_id = await send(rooms, ALICE, room_id, "queued for a phone")
    await push.drained()
    assert delivery.failures == 0
    notified = {r["event_id"] for r in await database.fetch(
        "SELECT event_id FROM notifications WHERE user_id = $1", BOB)}
    assert event_id in notified
    assert await NotificationStore().counts(database, BOB) == {room_id: {"main": (2, 0)}}
    assert await PushPositionStore().evaluated_upto(database) == \
        await current_position(database, "events")
