"""The push evaluator works in batches: events that commit while a pass runs are
evaluated by the next pass and recorded in one transaction, with exactly the rows that
evaluating them one at a time gives, and exactly once across a crash."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import pytest

from homeserver.clock import FakeClock
from homeserver.push.bulk_evaluator import BulkPushEvaluator, Outcome
from homeserver.push.rules_service import PushRules
from homeserver.push.sender import PushSender
from homeserver.rooms.service import RoomService
from homeserver.storage.account_data import AccountDataStore
from homeserver.storage.database import Connection, Database
from homeserver.storage.notifications import NewNotification, NotificationStore, Started, Step
from homeserver.storage.push_position import PushPositionStore
from homeserver.storage.push_queue import PushQueueStore
from homeserver.storage.push_rules import PushRuleStore
from homeserver.storage.pushers import PusherRow, PusherStore
from homeserver.storage.streams import current_position
from homeserver.sync.timers import FakeScheduler
from tests.rooms.conftest import ALICE, BOB, CAROL, SERVER, make_room

DAVE = "@dave:test.local"
TABLES = {
    "notifications": "SELECT user_id, room_id, event_id, thread_id, stream_ordering, actions, "
                     "highlight, ts FROM notifications ORDER BY user_id, stream_ordering",
    "notification_counts": "SELECT user_id, room_id, thread_id, notif_count, highlight_count, "
                           "read_upto FROM notification_counts ORDER BY user_id, room_id, thread_id",
    "push_queue": "SELECT user_id, app_id, pushkey, event_id, stream_ordering, actions, unread "
                  "FROM push_queue ORDER BY user_id, stream_ordering, pushkey",
}


class GatedPosition(PushPositionStore):
    """Holds each pass before it reads the stream while the gate is shut, and records
    every move of the position (one per transaction)."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.arrived = asyncio.Event()
        self.moves: list[tuple[int, int]] = []
        self.crash_on_read: int | None = None

    async def events_after(self, db: Database | Connection, position: int,
                           limit: int) -> list[str]:
        self.arrived.set()
        await self.gate.wait()
        if self.crash_on_read is not None:
            self.crash_on_read -= 1
            if self.crash_on_read < 0:
                raise Crash()
        return await super().events_after(db, position, limit)

    def watch(self, store: NotificationStore) -> NotificationStore:
        """Also record the moves `store` makes: a fresh batch's position moves with its
        notifications (NotificationStore.advance_and_record)."""
        inner = store.advance_and_record

        async def advance_and_record(conn: Connection, after: int, upto: int,
                                     steps: Sequence[Step], *, pushes: bool) -> Started | None:
            started = await inner(conn, after, upto, steps, pushes=pushes)
            if started is not None:
                self.moves.append((after, upto))
            return started
        store.advance_and_record = advance_and_record  # type: ignore[method-assign]
        return store

    async def advance(self, conn: Connection, expected: int, position: int) -> bool:
        moved = await super().advance(conn, expected, position)
        if moved:
            self.moves.append((expected, position))
        return moved


class Crash(BaseException):
    """The process dies here: nothing catches it, open transactions roll back."""


def pushes_for(database: Database, clock: FakeClock) -> PushSender:
    """The real sender's queueing side (it is never started, so nothing is delivered)."""
    return PushSender(database, PushQueueStore(), PusherStore(), cast(Any, None),
                      cast(Any, None), clock, FakeScheduler(clock))


def evaluator(rooms: RoomService, database: Database, clock: FakeClock, *,
              batch_size: int = 200, position: PushPositionStore | None = None,
              notifications: NotificationStore | None = None,
              delivery: Any = None) -> BulkPushEvaluator:
    rules = PushRules(database, PushRuleStore(), AccountDataStore())
    notifications = notifications or NotificationStore()
    if isinstance(position, GatedPosition):
        position.watch(notifications)
    return BulkPushEvaluator(database, rooms.stores, rules, notifications,
                             clock, server_name=SERVER, batch_size=batch_size,
                             position=position or PushPositionStore(),
                             delivery=delivery or pushes_for(database, clock))


async def snapshot(database: Database) -> dict[str, list[tuple[Any, ...]]]:
    return {name: [tuple(r) for r in await database.fetch(sql)] for name, sql in TABLES.items()}


async def reset(database: Database, position: int) -> None:
    """Forget every evaluation after `position` (the evaluator's own rows only)."""
    async with database.transaction() as conn:
        for table in TABLES:
            await conn.execute(f"DELETE FROM {table}")
        await conn.execute("UPDATE push_position SET evaluated_upto = $1", position)


async def send(rooms: RoomService, user: str, room_id: str, body: str, **extra: Any) -> str:
    send.txn += 1  # type: ignore[attr-defined]
    return await rooms.send.send_message(user, "DEV", room_id, "m.room.message",
                                         {"msgtype": "m.text", "body": body, **extra},
                                         f"t{send.txn}")  # type: ignore[attr-defined]


send.txn = 0  # type: ignore[attr-defined]


async def chat(rooms: RoomService, database: Database, clock: FakeClock, *,
               pusher: bool = True) -> tuple[str, int]:
    """A room of alice, bob and carol (carol with a rule of her own, bob with a pusher
    unless not `pusher`, and a display name, dave invited), and a stretch of conversation
    after the position."""
    room_id = await make_room(rooms, preset="public_chat")
    for user in (BOB, CAROL):
        await rooms.membership.join(user, room_id)
    rules = PushRules(database, PushRuleStore(), AccountDataStore())
    await rules.put_rule(CAROL, "content", "lunch", {
        "pattern": "lunch", "actions": ["notify", {"set_tweak": "highlight"}]})
    if pusher:
        async with database.transaction() as conn:
            await PusherStore().upsert(conn, PusherRow(BOB, "app", "key", "http", "App",
                                                       "Phone", None, "en", {"url": "https://x"},
                                                       None, 0))
    start = await current_position(database, "events")
    root = await send(rooms, ALICE, room_id, "hello all")
    await send(rooms, BOB, room_id, "hi alice")
    await rooms.send.set_state(BOB, room_id, "m.room.member", BOB,
                               {"membership": "join", "displayname": "Bobby Tables"})
    await send(rooms, CAROL, room_id, "in thread", **{
        "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    read = await send(rooms, ALICE, room_id, "is bobby tables here?")
    await send(rooms, ALICE, room_id, "lunch?")
    await send(rooms, BOB, room_id, "thread reply", **{
        "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    await send(rooms, CAROL, room_id, "@room look", **{"m.mentions": {"room": True}})
    await rooms.membership.invite(ALICE, room_id, DAVE)
    await send(rooms, ALICE, room_id, "bob, carol", **{"m.mentions": {"user_ids": [BOB]}})
    await send(rooms, BOB, room_id, "a notice", msgtype="m.notice")
    await send(rooms, ALICE, room_id, "in thread again", **{
        "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    await send(rooms, ALICE, room_id, "last call", **{"m.mentions": {"user_ids": [BOB, CAROL]}})
    # Carol's unthreaded receipt is ahead of the evaluator: what it covers is read.
    carol_read = await rooms.reader.event_position(room_id, read)
    assert carol_read is not None
    async with database.transaction() as conn:
        await NotificationStore().mark_read(conn, CAROL, room_id, None, carol_read)
    return room_id, start


class OneByOne(BulkPushEvaluator):
    """How events were recorded before batches: each in its own transaction, with one
    store call after another (`add`, `enqueue` per notification, `mark_read`)."""

    async def _write(self, upto: int, outcomes: Sequence[Outcome]) -> bool:
        position = upto
        for o in outcomes:
            async with self._db.transaction() as conn:
                if not await self._position.advance(conn, position, o.stream_ordering):
                    return False
                await NotificationStore().add(conn, o.notifications)
                for n in o.notifications:
                    await PushQueueStore().enqueue(conn, n.user_id, n.event_id, n.room_id,
                                                   n.stream_ordering, n.actions, n.ts)
                if o.read_by is not None:
                    await NotificationStore().mark_read(conn, o.read_by, o.room_id, o.thread,
                                                        o.stream_ordering)
            position = o.stream_ordering
        return True


@pytest.mark.parametrize("pusher", [True, False])
async def test_batches_record_exactly_what_one_at_a_time_records(
        rooms: RoomService, database: Database, clock: FakeClock, pusher: bool) -> None:
    # Without pushers, a batch's rows are written with its position in one statement on
    # PostgreSQL (unless carol's receipt ahead of the position is in the batch's rooms).
    _, start = await chat(rooms, database, clock, pusher=pusher)
    await reset(database, start)
    rules = PushRules(database, PushRuleStore(), AccountDataStore())
    reference = OneByOne(database, rooms.stores, rules, NotificationStore(), clock,
                         server_name=SERVER, batch_size=1)
    assert await reference.catch_up() > 1
    one_by_one = await snapshot(database)
    assert all(v or (t == "push_queue" and not pusher)  # notifications, counts, pushes
               for t, v in one_by_one.items())
    assert any(r[4] for r in one_by_one["notification_counts"])  # highlights
    for batch_size in (200, 3, 1):
        await reset(database, start)
        position = GatedPosition()
        await evaluator(rooms, database, clock, batch_size=batch_size,
                        position=position).catch_up()
        assert await snapshot(database) == one_by_one
        events = await current_position(database, "events") - start
        assert len(position.moves) == -(-events // batch_size)


async def test_events_arriving_during_a_pass_are_recorded_in_one_transaction(
        rooms: RoomService, database: Database, clock: FakeClock) -> None:
    room_id = await make_room(rooms, preset="public_chat")
    await rooms.membership.join(BOB, room_id)
    position = GatedPosition()
    push = evaluator(rooms, database, clock, position=position)
    await push.catch_up()
    position.moves.clear()
    position.gate.clear()
    rooms.add_event_listener(push.on_event_persisted)
    # The first send starts a pass, which waits at the gate while four more commit.
    for i in range(5):
        await send(rooms, ALICE, room_id, f"burst {i}")
    await position.arrived.wait()
    position.gate.set()
    await push.drained()
    assert len(position.moves) == 1
    assert position.moves[0][1] == await current_position(database, "events")
    counts = await NotificationStore().counts(database, BOB)
    assert counts == {room_id: {"main": (5, 0)}}
    # An idle evaluator takes a lone event at once, in a pass of its own.
    await send(rooms, ALICE, room_id, "lone")
    await push.drained()
    assert len(position.moves) == 2
    assert await NotificationStore().counts(database, BOB) == {room_id: {"main": (6, 0)}}
    await push.close()


@pytest.mark.parametrize("crash", ["between passes", "inside a transaction"])
async def test_a_crash_loses_nothing_and_counts_nothing_twice(
        rooms: RoomService, database: Database, clock: FakeClock, crash: str) -> None:
    _, start = await chat(rooms, database, clock)
    await reset(database, start)
    await evaluator(rooms, database, clock, batch_size=1).catch_up()
    reference = await snapshot(database)

    await reset(database, start)
    position = GatedPosition()
    if crash == "between passes":
        position.crash_on_read = 2  # two passes of 4 commit, the third never starts
        first = evaluator(rooms, database, clock, batch_size=4, position=position)
    else:
        first = evaluator(rooms, database, clock, batch_size=4, position=position,
                          notifications=CrashingStore(after=2))
    with pytest.raises(Crash):
        await first.catch_up()
    # Two passes committed (inside a transaction, a third moved and rolled back).
    assert await PushPositionStore().evaluated_upto(database) == position.moves[1][1] == start + 8
    partial = await snapshot(database)
    assert partial != reference and partial["notifications"]
    # The next process picks up after the last committed pass.
    await evaluator(rooms, database, clock).catch_up()
    assert await snapshot(database) == reference


class CrashingStore(NotificationStore):
    """Dies while writing the pass after `after` passes, its rows already sent."""

    def __init__(self, after: int):
        self.after = after

    async def advance_and_record(self, conn: Connection, after: int, upto: int,
                                 steps: Sequence[Step], *, pushes: bool) -> Started | None:
        started = await super().advance_and_record(conn, after, upto, steps, pushes=pushes)
        self.after -= 1
        if self.after < 0 and started is not None:
            batch = started.batch
            if batch is None:
                raise Crash()  # written in that one statement
            finish = batch.finish

            async def finish_then_die() -> None:
                await finish()
                raise Crash()
            batch.finish = finish_then_die  # type: ignore[method-assign]
        return started


class FailingDelivery:
    """Queueing fails for one event: its batch cannot be recorded."""

    def __init__(self, inner: PushSender, bad_event: str):
        self.inner = inner
        self.bad_event = bad_event

    async def users_with_pushers(self, conn: Connection, user_ids: Any) -> set[str]:
        return await self.inner.users_with_pushers(conn, user_ids)

    async def enqueue(self, conn: Connection, notifications: Sequence[NewNotification]) -> bool:
        if any(n.event_id == self.bad_event for n in notifications):
            raise ValueError("cannot queue")
        return await self.inner.enqueue(conn, notifications)

    def wake(self) -> None:
        pass


async def test_a_bad_event_is_stepped_past_and_the_rest_recorded(
        rooms: RoomService, database: Database, clock: FakeClock) -> None:
    room_id = await make_room(rooms, preset="public_chat")
    await rooms.membership.join(BOB, room_id)
    async with database.transaction() as conn:
        await PusherStore().upsert(conn, PusherRow(BOB, "app", "key", "http", "App", "Phone",
                                                   None, "en", {"url": "https://x"}, None, 0))
    push = evaluator(rooms, database, clock)
    await push.catch_up()
    before, bad, after = [await send(rooms, ALICE, room_id, f"m{i}") for i in range(3)]
    failing = evaluator(rooms, database, clock,
                        delivery=FailingDelivery(pushes_for(database, clock), bad))
    assert await failing.catch_up() == 3
    notified = {r["event_id"] for r in await database.fetch(
        "SELECT event_id FROM notifications WHERE user_id = $1", BOB)}
    assert {before, after} <= notified and bad not in notified
    assert await NotificationStore().counts(database, BOB) == {room_id: {"main": (2, 0)}}
    assert await PushPositionStore().evaluated_upto(database) == \
        await current_position(database, "events")


async def test_a_cached_audience_follows_membership_changes(
        rooms: RoomService, database: Database, clock: FakeClock) -> None:
    """The room's audience is reused across passes only while its current state is the
    same: a member who joins (or leaves) is counted from the next event on."""
    room_id = await make_room(rooms, preset="public_chat")
    await rooms.membership.join(BOB, room_id)
    push = evaluator(rooms, database, clock)
    await send(rooms, ALICE, room_id, "before carol")
    await push.catch_up()
    await send(rooms, ALICE, room_id, "still before carol")  # same state: cached audience
    await push.catch_up()
    await rooms.membership.join(CAROL, room_id)
    await send(rooms, ALICE, room_id, "carol is here")
    await push.catch_up()
    await rooms.membership.leave(BOB, room_id)
    await send(rooms, ALICE, room_id, "bob has gone")
    await push.catch_up()
    rows = await database.fetch(
        "SELECT user_id, COUNT(*) AS n FROM notifications WHERE room_id = $1 GROUP BY user_id", room_id)
    # Bob: the first three messages (not the one after he left); Carol: the last two.
    assert {r["user_id"]: r["n"] for r in rows} == {BOB: 3, CAROL: 2}
