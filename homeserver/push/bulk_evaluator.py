"""Runs every local member's push rules on each new event, after commit and off the
request path.

Spec: https://spec.matrix.org/v1.19/client-server-api/#server-behaviour-1 . The rooms
service's after-commit listener only queues the event; one background task works the
queue, so a send is never slowed by a big room. Tests (and anything that needs the
counts settled) await `drained()`.

The queue only says "something was committed": the work itself is driven by the events
stream. Each pass reads the events after `push_evaluated_upto` (at most `batch_size`),
evaluates them in stream order and records all their notifications, counts and queued
pushes in ONE transaction that also moves the position past them (a compare-and-set from
where the pass read it). So an event committed just before a crash is not lost:
`catch_up()` at startup evaluates it, and no event is evaluated twice. Events committed
while a pass runs make up the next pass, so under load one commit (one fsync on SQLite)
covers many events, while an idle server still evaluates a lone event at once. If a
batch cannot be recorded, its events are recorded one at a time, and one that still
fails is stepped past, so a bad event cannot hold up the ones after it.

Per pass, each room's members, power levels and the members' rule sets are read once
(push/audience.py), and users whose rules are the server defaults are evaluated through
one `DefaultPlan` per event (push/default_plan.py) instead of their whole rule list.

Spec: "The updated notification count from a new event MUST appear in the same /sync
response as the event itself." So the sync wake-up for an event is one of the
`after_evaluation` callbacks: a waiting /sync or WebSocket sees the event and its counts
together.

In the common case none of the above runs: `record_in_transaction` is a batch writer of
the persistence path (rooms/persistence.py) and evaluates the new events inside their
own transaction, from the PDUs in memory, moving the position with them. Their counts
then commit with the events, and the sync wake-up follows the commit directly, with no
second transaction (and fsync) on the delivery path and no re-reading of the events.
It only does so when the position is right behind the batch; otherwise (an earlier
event is still waiting for a pass, or recording failed and was rolled back) the events
take the background path above, which is also what `catch_up()` runs at startup.

On PostgreSQL a batch of plain messages is recorded one step earlier still: the
persister asks `timeline_rows` for the records before it writes the events, and the
statement that writes them records them too (storage/room_batch.py,
WRITE_TIMELINE_PUSH_PG), one round trip less per batch. The positions the events will
take are not known then, so they are evaluated on a guess (right after the position
this process last saw committed), which the statement checks along with the usual
compare-and-set. It records them only if it can record them whole (no notified user
has a pusher, the counts could be netted): if not, it writes the events alone, and the
batch writer evaluates them again the usual way, in its savepoint.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Protocol

import attrs

from homeserver.clock import Clock
from homeserver.events.pdu import Pdu
from homeserver.push.audience import AudienceCache, DisplayNames, RoomAudience
from homeserver.push.default_plan import DefaultPlan
from homeserver.push.evaluator import CompiledRuleset, highlights, notifies
from homeserver.push.rules_service import PushRules
from homeserver.rooms.persistence import EventCallback, PersistedEvent, ReadNeeded
from homeserver.rooms.stores import RoomStores
from homeserver.storage.database import Connection, Database
from homeserver.storage.notifications import (
    NewNotification,
    NotificationStore,
    Step,
    ThreadRead,
)
from homeserver.storage.push_position import PushPositionStore
from homeserver.storage.room_batch import PushRows

logger = logging.getLogger(__name__)

MAIN_THREAD = "main"
BATCH_SIZE = 200


class PushDelivery(Protocol):
    """Where notifications go to reach devices (homeserver/push/sender.py). The users it
    queues for are those with a row in `pushers`: for fresh events the evaluator learns
    them from that table in the statement that records the events (storage/notifications.py,
    `advance_and_record`), not from `users_with_pushers`."""

    async def users_with_pushers(self, conn: Connection, user_ids: Collection[str]) -> set[str]: ...

    async def enqueue(self, conn: Connection,
                      notifications: Sequence[NewNotification]) -> bool: ...

    def wake(self) -> None: ...


def thread_of(pdu: Pdu) -> str:
    """The thread an event belongs to: its m.thread root, else the main timeline."""
    relates = pdu.content.get("m.relates_to")
    if isinstance(relates, dict) and relates.get("rel_type") == "m.thread":
        root = relates.get("event_id")
        if isinstance(root, str):
            return root
    return MAIN_THREAD


@attrs.frozen
class Outcome:
    """What evaluating one event decided, ready to record."""

    event_id: str
    room_id: str
    stream_ordering: int
    thread: str
    notifications: list[NewNotification]
    # The local sender: sending counts as reading up to the event (in its thread).
    read_by: str | None

    def thread_read(self) -> ThreadRead | None:
        if self.read_by is None:
            return None
        return ThreadRead(self.read_by, self.room_id, self.thread, self.stream_ordering)


class BulkPushEvaluator:
    def __init__(self, db: Database, stores: RoomStores, rules: PushRules,
                 notifications: NotificationStore, clock: Clock, *, server_name: str,
                 delivery: PushDelivery | None = None, position: PushPositionStore | None = None,
                 batch_size: int = BATCH_SIZE):
        self._db = db
        self._position = position or PushPositionStore()
        self._batch_size = batch_size
        # One pass at a time in this process; the compare-and-set on the position keeps
        # passes in others harmless.
        self._lock = asyncio.Lock()
        self._delivery = delivery
        self._stores = stores
        self._rules = rules
        self._notifications = notifications
        self._names = DisplayNames(stores)
        self._audiences = AudienceCache()
        self._clock = clock
        self._suffix = ":" + server_name
        self._queue: deque[PersistedEvent] = deque()
        # Events recorded by record_in_transaction whose commit has not been announced
        # yet. A rolled-back batch leaves its IDs behind: bounded, and losing one only
        # sends that event the slow way.
        self._recorded_inline: set[str] = set()
        self._wake_delivery = False
        # The position as of the last commit this process announced: usually the next
        # batch's expected position, so it need not be read (the compare-and-set checks it).
        self._known_position: int | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._worker: asyncio.Task[None] | None = None
        # Run for every event, evaluated or skipped, once its counts are written.
        self.after_evaluation: list[EventCallback] = []

    async def on_event_persisted(self, persisted: PersistedEvent) -> None:
        """The rooms service's after-commit listener: an event recorded with its commit
        goes straight to the `after_evaluation` callbacks (unless events before it are
        still queued: callbacks keep stream order); others are queued for a pass."""
        if self._wake_delivery and self._delivery is not None:
            self._wake_delivery = False
            self._delivery.wake()
        recorded = persisted.event_id in self._recorded_inline
        self._recorded_inline.discard(persisted.event_id)
        self._known_position = persisted.stream_ordering if recorded else None
        if recorded and not self._queue and (self._worker is None or self._worker.done()):
            await self._after_evaluation(persisted)
            return
        self._queue.append(persisted)
        self._idle.clear()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work())

    async def timeline_rows(self, conn: Connection, pdus: Sequence[Pdu],
                            snapshot_id: int) -> PushRows | None:
        """The persister's `timeline_push` hook: the records of a batch's new events (of
        one room, whose current state snapshot is `snapshot_id`), for the statement
        that writes them, evaluated on the guess that they follow the position this
        process last saw committed (the statement checks it, and writes the records only if
        it can write all of them; otherwise the batch writer evaluates the events again).
        None when that position is not known.
        `conn` is the persister's memory-only one: its ReadNeeded goes through."""
        after = self._known_position
        if after is None or not pdus:
            return None
        outcomes = await self._evaluate(
            conn, [(pdu, after + 1 + i) for i, pdu in enumerate(pdus)],
            {pdus[0].room_id: snapshot_id})
        return PushRows(after, [Step(o.notifications, o.thread_read()) for o in outcomes],
                        pushes=self._delivery is not None)

    async def record_in_transaction(self, conn: Connection, events: Sequence[PersistedEvent],
                                    ) -> Callable[[], None] | None:
        """Batch writer (rooms/persistence.py): evaluate and record `events`, the ones a
        persist transaction just wrote in stream order, inside that transaction, if the
        position is right behind them; else leave them to the after-commit pass. If the
        statement that wrote them recorded them too (`timeline_rows`), what it left."""
        if not events:
            return None
        upto = events[0].stream_ordering - 1
        if all(e.push for e in events):
            queued: bool | None = False  # the statement that wrote them recorded them all
        else:
            if self._known_position != upto and await self._position.evaluated_upto(conn) != upto:
                return None
            # The room's snapshot after the batch, as the persister left it (saves a read).
            snapshots = {e.room_id: e.current_snapshot_id for e in events
                         if e.current_snapshot_id is not None}
            outcomes = await self._evaluate(conn, [(e.pdu, e.stream_ordering) for e in events],
                                            snapshots)
            queued = await self._record(conn, upto, outcomes, fresh=True)
        if queued is None:  # the position was not where we remembered it: nothing written
            self._known_position = None
            return None

        def recorded() -> None:
            if len(self._recorded_inline) > 4096:
                self._recorded_inline.clear()
            self._recorded_inline.update(e.event_id for e in events)
            self._wake_delivery |= queued
        return recorded

    async def drained(self) -> None:
        """Returns once every event queued so far has been evaluated."""
        await self._idle.wait()

    async def close(self) -> None:
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass

    async def catch_up(self) -> int:
        """Evaluate every timeline event after the position; returns how many were read."""
        async with self._lock:
            total = 0
            while True:
                read = await self._pass()
                if read is None:
                    continue  # another evaluator recorded them first: read on from there
                total += read
                if read < self._batch_size:
                    return total

    async def _work(self) -> None:
        while self._queue:
            # Everything queued so far is committed, so one catch-up covers all of it.
            batch = list(self._queue)
            self._queue.clear()
            try:
                await self.catch_up()
            except Exception:
                # The position did not move past the failure: the next run retries it.
                logger.exception("push evaluation failed")
            for persisted in batch:
                await self._after_evaluation(persisted)
        self._idle.set()

    async def _after_evaluation(self, persisted: PersistedEvent) -> None:
        for callback in self.after_evaluation:
            try:
                await callback(persisted)
            except Exception:
                logger.exception("after_evaluation callback failed for %s", persisted.event_id)

    async def _pass(self) -> int | None:
        """Evaluate and record the next batch; the number of events read, or None if
        another evaluator moved the position meanwhile."""
        upto = await self._position.evaluated_upto(self._db)
        async with self._db.connection() as conn:
            event_ids = await self._position.events_after(conn, upto, self._batch_size)
            if not event_ids:
                return 0
            stored = await self._stores.events.get_many(conn, event_ids)
            events = []
            for e in event_ids:
                ordering = stored[e].stream_ordering
                assert ordering is not None  # events_after lists timeline events only
                events.append((stored[e].pdu, ordering))
            outcomes = await self._evaluate(conn, events)
        if len(outcomes) > 1:
            try:
                recorded = await self._write(upto, outcomes)
            except Exception:
                logger.exception("recording push evaluation of %d events failed; "
                                 "recording them one at a time", len(outcomes))
            else:
                return len(event_ids) if recorded else None
        return len(event_ids) if await self._write_each(upto, outcomes) else None

    async def _evaluate(self, conn: Connection, events: Sequence[tuple[Pdu, int]],
                        snapshots: Mapping[str, int] | None = None) -> list[Outcome]:
        """Outcomes for `(pdu, stream_ordering)` pairs, in the order given; `snapshots`:
        rooms' current state snapshots where the caller knows them."""
        rooms = {pdu.room_id for pdu, _ in events if pdu.rejected_reason is None}
        audiences: dict[str, RoomAudience] = {}
        for room_id in sorted(rooms):
            try:
                audiences[room_id] = await RoomAudience.load(
                    conn, self._stores, room_id, self._suffix, self._audiences,
                    (snapshots or {}).get(room_id))
            except ReadNeeded:
                raise  # evaluating from memory only (timeline_rows): not a failure
            except Exception:
                # Its events fail below and are stepped past, like any bad event.
                logger.exception("push evaluation could not read room %s", room_id)
        targets = {pdu.event_id: audiences[pdu.room_id].targets(pdu, self._suffix)
                   for pdu, _ in events if pdu.room_id in audiences
                   and pdu.rejected_reason is None}
        rulesets = await self._rules.compiled_many(conn, {u for t in targets.values() for u in t})
        outcomes = []
        for pdu, ordering in events:
            found: list[NewNotification] = []
            read_by = None
            if pdu.rejected_reason is None:
                try:
                    found = await self._notifications_for(
                        conn, pdu, ordering, audiences[pdu.room_id], targets[pdu.event_id],
                        rulesets)
                    read_by = pdu.sender if pdu.sender.endswith(self._suffix) else None
                except ReadNeeded:
                    raise
                except Exception:
                    logger.exception("push evaluation failed for %s", pdu.event_id)
            outcomes.append(Outcome(pdu.event_id, pdu.room_id, ordering, thread_of(pdu),
                                    found, read_by))
        return outcomes

    async def _notifications_for(self, conn: Connection, pdu: Pdu, ordering: int,
                                 audience: RoomAudience, targets: list[str],
                                 rulesets: dict[str, CompiledRuleset]) -> list[NewNotification]:
        ctx = audience.context(pdu)
        plan = DefaultPlan(ctx)
        names: dict[str, str | None] = {}
        if plan.needs_display_name or not all(rulesets[u].default_only for u in targets):
            names = await audience.display_names(conn, self._names)
        found: list[NewNotification] = []
        thread = thread_of(pdu)
        now = self._clock.time_ms()
        for user_id in targets:
            ruleset = rulesets[user_id]
            name = names.get(user_id)
            actions = (plan.evaluate(ruleset, name) if ruleset.default_only
                       else ruleset.evaluate(ctx, name))
            if notifies(actions):
                assert actions is not None
                found.append(NewNotification(user_id, pdu.room_id, pdu.event_id, thread,
                                             ordering, actions, highlights(actions), now))
        return found

    async def _write(self, upto: int, outcomes: Sequence[Outcome]) -> bool:
        """Record `outcomes` (the events right after `upto`) and move the position past
        them, in one transaction; False if the position is no longer at `upto`."""
        async with self._db.transaction() as conn:
            queued = await self._record(conn, upto, outcomes, fresh=True)
        if queued is None:
            return False
        if queued and self._delivery is not None:
            self._delivery.wake()
        return True

    async def _record(self, conn: Connection, upto: int, outcomes: Sequence[Outcome], *,
                      fresh: bool = False) -> bool | None:
        """`_write`'s statements in the caller's transaction: None if the position is no
        longer at `upto` (nothing written), else whether pushes were queued. `fresh`: the
        events were persisted by this very transaction (so have no notifications yet)."""
        last = outcomes[-1].stream_ordering
        delivery = self._delivery
        if fresh:
            # The position moves with the rows: on PostgreSQL, unless a notified user has
            # a pusher, that one statement writes them all.
            started = await self._notifications.advance_and_record(
                conn, upto, last, [Step(o.notifications, o.thread_read()) for o in outcomes],
                pushes=delivery is not None)
            if started is None:
                return None
            if started.batch is None:
                return False
            batch, pushable = started.batch, started.pushable
        else:
            if not await self._position.advance(conn, upto, last):
                return None
            users = {n.user_id for o in outcomes for n in o.notifications}
            rooms = {o.room_id for o in outcomes if o.notifications}
            batch = await self._notifications.batch(conn, users, rooms, upto, last)
            pushable = frozenset(await delivery.users_with_pushers(conn, users)
                                 if delivery is not None and users else ())
        queued = False
        for o in outcomes:
            added = batch.add(o.notifications)
            # Only new rows are pushed: a catch-up re-reading recorded events pushes nothing.
            pushes = [n for n in added if n.user_id in pushable]
            if pushes:
                assert delivery is not None
                # The queued unread totals include this event's counts.
                await batch.flush()
                queued |= await delivery.enqueue(conn, pushes)
            if o.read_by is not None:
                batch.mark_read(o.read_by, o.room_id, o.thread, o.stream_ordering)
        await batch.finish()
        return queued

    async def _write_each(self, upto: int, outcomes: Sequence[Outcome]) -> bool:
        """`_write` one event at a time; an event that cannot be recorded is stepped past
        (logged), unless the database cannot even do that, which raises."""
        position = upto
        for outcome in outcomes:
            try:
                recorded = await self._write(position, [outcome])
            except Exception:
                logger.exception("push evaluation failed for %s", outcome.event_id)
                async with self._db.transaction() as conn:
                    recorded = await self._position.advance(conn, position,
                                                            outcome.stream_ordering)
            if not recorded:
                return False
            position = outcome.stream_ordering
        return True
