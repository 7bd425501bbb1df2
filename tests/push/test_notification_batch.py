"""`NotificationBatch` (with the push queue's `enqueue_many`) has the effect of the store
calls one by one, on random runs of events over random starting rows: receipts ahead of
the events, threads seen before, rows recorded already, users with and without pushers."""

from __future__ import annotations

import random
from typing import Any

from homeserver.storage.database import Connection, Database
from homeserver.storage.notifications import (
    NewNotification,
    NotificationBatch,
    NotificationStore,
    Step,
    ThreadRead,
)
from homeserver.storage.push_position import PushPositionStore
from homeserver.storage.push_queue import PushQueueStore
from homeserver.storage.pushers import PusherRow, PusherStore

USERS = ["@a:x", "@b:x", "@c:x", "@d:x"]
ROOMS = ["!r1:x", "!r2:x"]
THREADS = ["main", "$root"]
AFTER = 100
TABLES = ["notifications", "notification_counts", "notification_room_read", "push_queue"]
Event = tuple[str, int, str, list[NewNotification], str | None]  # room, order, thread, found, reader


def _events(rng: random.Random) -> list[Event]:
    events = []
    for ordering in range(AFTER + 1, AFTER + rng.randint(2, 12)):
        room, thread = rng.choice(ROOMS), rng.choice(THREADS)
        sender = rng.choice([*USERS, "@remote:y"])
        found = [NewNotification(u, room, f"$e{ordering}", thread, ordering,
                                 ["notify", {"set_tweak": "highlight"}] if hl else ["notify"],
                                 hl, 7)
                 for u in USERS if u != sender and rng.random() < 0.6
                 for hl in [rng.random() < 0.3]]
        events.append((room, ordering, thread, found, sender if sender in USERS else None))
    return events


async def _start(conn: Connection, rng: random.Random, events: list[Event], *,
                 pushers: float = 0.5, ahead: int = 8, recorded: float = 0.3) -> None:
    """Rows from before the batch (receipts up to `ahead` past it, which only receipts
    can be; with probability `recorded`, one of the batch's notifications)."""
    store = NotificationStore()
    for user in USERS:
        if rng.random() < pushers:
            await PusherStore().upsert(conn, PusherRow(user, "app", "k", "http", "A", "P", None,
                                                       "en", {}, None, 0))
        for room in ROOMS:
            if rng.random() < 0.4:
                await store.mark_read(conn, user, room, None, rng.randint(50, AFTER + ahead))
            for thread in THREADS:
                if rng.random() < 0.4:
                    await store.add(conn, [NewNotification(user, room, f"$old{rng.random()}",
                                                           thread, rng.randint(1, AFTER), [],
                                                           False, 1)])
                if rng.random() < 0.3:
                    await store.mark_read(conn, user, room, thread,
                                          rng.randint(50, AFTER + ahead))
    found = [n for _, _, _, found, _ in events for n in found]
    if found and rng.random() < recorded:
        await store.add(conn, [rng.choice(found)])  # recorded by an earlier run


async def _one_by_one(conn: Connection, events: list[Event]) -> None:
    store, queue = NotificationStore(), PushQueueStore()
    for room, ordering, thread, found, reader in events:
        await store.add(conn, found)
        for n in found:
            await queue.enqueue(conn, n.user_id, n.event_id, n.room_id, n.stream_ordering,
                                n.actions, n.ts)
        if reader is not None:
            await store.mark_read(conn, reader, room, thread, ordering)


async def _batched(conn: Connection, events: list[Event]) -> None:
    """What BulkPushEvaluator._write does."""
    queue = PushQueueStore()
    users = {n.user_id for *_, found, _ in events for n in found}
    batch = await NotificationStore().batch(conn, users, ROOMS, AFTER, events[-1][1])
    pushable = await queue.users_with_pushers(conn, sorted(users))
    for room, ordering, thread, found, reader in events:
        batch.add(found)
        pushes = [n for n in found if n.user_id in pushable]
        if pushes:
            await batch.flush()
            await queue.enqueue_many(conn, pushes)
        if reader is not None:
            batch.mark_read(reader, room, thread, ordering)
    await batch.finish()


async def _rows(conn: Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {t: sorted(tuple(r) for r in await conn.fetch(f"SELECT * FROM {t}")) for t in TABLES}


async def test_a_batch_has_the_effect_of_the_calls_one_by_one(database: Database) -> None:
    for seed in range(40):
        rows = []
        for write in (_one_by_one, _batched):
            rng = random.Random(seed)
            events = _events(rng)
            async with database.transaction() as conn:
                for table in [*TABLES, "pushers"]:
                    await conn.execute(f"DELETE FROM {table}")
                await _start(conn, rng, events)
                await write(conn, events)
                rows.append(await _rows(conn))
        assert rows[0] == rows[1], f"seed {seed}"


async def _record_before(conn: Connection, events: list[Event]) -> bool | None:
    """What BulkPushEvaluator._record did for fresh events before advance_and_record:
    the compare-and-set, the batch, the pushers read, then the calls."""
    if not await PushPositionStore().advance(conn, AFTER, events[-1][1]):
        return None
    users = {n.user_id for *_, found, _ in events for n in found}
    rooms = {n.room_id for *_, found, _ in events for n in found}
    batch = await NotificationStore().batch(conn, users, rooms, AFTER, events[-1][1],
                                            fresh=True)
    pushable = await PushQueueStore().users_with_pushers(conn, sorted(users))
    return await _calls(conn, batch, events, frozenset(pushable))


async def _record_now(conn: Connection, events: list[Event]) -> bool | None:
    """What it does now: True when everything was written in advance_and_record."""
    started = await NotificationStore().advance_and_record(
        conn, AFTER, events[-1][1],
        [Step(found, ThreadRead(reader, room, thread, ordering) if reader else None)
         for room, ordering, thread, found, reader in events], pushes=True)
    if started is None:
        return None
    if started.batch is None:
        return True
    await _calls(conn, started.batch, events, started.pushable)
    return False


async def _calls(conn: Connection, batch: NotificationBatch, events: list[Event],
                 pushable: frozenset[str]) -> bool:
    for room, ordering, thread, found, reader in events:
        pushes = [n for n in batch.add(found) if n.user_id in pushable]
        if pushes:
            await batch.flush()
            await PushQueueStore().enqueue_many(conn, pushes)
        if reader is not None:
            batch.mark_read(reader, room, thread, ordering)
    await batch.finish()
    return False


async def _compare(database: Database, seed: int, **start: Any) -> list[bool | None]:
    """Each way's result and the rows it leaves, from the same start; asserts they agree."""
    rows, results = [], []
    for write in (_record_before, _record_now):
        rng = random.Random(seed)
        events = _events(rng)
        async with database.transaction() as conn:
            for table in [*TABLES, "pushers"]:
                await conn.execute(f"DELETE FROM {table}")
            await conn.execute("UPDATE push_position SET evaluated_upto = $1",
                               AFTER if rng.random() < 0.9 else AFTER - 1)
            await _start(conn, rng, events, **start)
            results.append(await write(conn, events))
            rows.append({**await _rows(conn), "push_position": [tuple(r) for r in await conn.fetch(
                "SELECT * FROM push_position")]})
    assert rows[0] == rows[1], f"seed {seed}"
    assert (results[0] is None) == (results[1] is None), f"seed {seed}"
    return results


async def test_advance_and_record_writes_what_the_calls_write(database: Database,
                                                              engine: str) -> None:
    """The fresh batch's own path (one statement on PostgreSQL when it can) leaves the
    rows the compare-and-set and the calls one by one leave, from any start: with
    pushers or none, receipts and recorded notifications past the position or not, the
    position elsewhere; several events per user and thread, senders' reads between."""
    written = 0
    for seed in range(120):
        fresh = seed % 3 != 0  # starts a just-written batch can meet (no pushers)
        results = await _compare(database, seed, pushers=0.0 if fresh else 0.5,
                                 ahead=0 if fresh else 8, recorded=0.0 if fresh else 0.3)
        written += results[1] is True
    if engine == "postgres":
        assert written >= 50
    else:
        assert written == 0  # SQLite keeps its statements
