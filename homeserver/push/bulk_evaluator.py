"""Runs every local member's push rules on each new event, after commit and off the
request path.

Spec: https://spec.matrix.org/v1.19/client-server-api/#server-behaviour-1 . The rooms
service's after-commit listener only queues the event; one background task works the
queue, so a send is never slowed by a big room. Tests (and anything that needs the
counts settled) await `drained()`.

The queue only says "something was committed": the work itself is driven by the events
stream. Each run evaluates every event after `push_evaluated_upto`, in stream order, and
moves the position past an event in the transaction that records its notifications. So
an event committed just before a crash is not lost: `catch_up()` at startup evaluates it,
and no event is evaluated twice (the position and the notifications commit together).

Spec: "The updated notification count from a new event MUST appear in the same /sync
response as the event itself." So the sync wake-up for an event is one of the
`after_evaluation` callbacks: a waiting /sync or WebSocket sees the event and its counts
together.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

from homeserver.clock import Clock
from homeserver.events.pdu import Pdu
from homeserver.push.conditions import EventContext
from homeserver.push.evaluator import highlights, notifies
from homeserver.push.rules_service import PushRules
from homeserver.rooms.persistence import EventCallback, PersistedEvent
from homeserver.rooms.stores import RoomStores
from homeserver.state.power_levels import get_user_power_level
from homeserver.storage.database import Connection, Database
from homeserver.storage.events import StoredEvent
from homeserver.storage.notifications import NewNotification, NotificationStore
from homeserver.storage.push_position import PushPositionStore

logger = logging.getLogger(__name__)

MAIN_THREAD = "main"
BATCH_SIZE = 100


class PushDelivery(Protocol):
    """Where notifications go to reach devices (homeserver/push/sender.py)."""

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


class BulkPushEvaluator:
    def __init__(self, db: Database, stores: RoomStores, rules: PushRules,
                 notifications: NotificationStore, clock: Clock, *, server_name: str,
                 delivery: PushDelivery | None = None, position: PushPositionStore | None = None,
                 batch_size: int = BATCH_SIZE):
        self._db = db
        self._position = position or PushPositionStore()
        self._batch_size = batch_size
        # One run at a time in this process; the claim keeps runs in others harmless.
        self._lock = asyncio.Lock()
        self._delivery = delivery
        self._stores = stores
        self._rules = rules
        self._notifications = notifications
        self._clock = clock
        self._suffix = ":" + server_name
        self._queue: deque[PersistedEvent] = deque()
        self._idle = asyncio.Event()
        self._idle.set()
        self._worker: asyncio.Task[None] | None = None
        # Run for every event, evaluated or skipped, once its counts are written.
        self.after_evaluation: list[EventCallback] = []

    async def on_event_persisted(self, persisted: PersistedEvent) -> None:
        """The rooms service's after-commit listener: queue, never evaluate inline."""
        self._queue.append(persisted)
        self._idle.clear()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work())

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
                upto = await self._position.evaluated_upto(self._db)
                event_ids = await self._position.events_after(self._db, upto, self._batch_size)
                if event_ids:
                    async with self._db.connection() as conn:
                        stored = await self._stores.events.get_many(conn, event_ids)
                    # Each event in its own transaction, so a crash loses no finished work.
                    for event_id in event_ids:
                        await self._evaluate_one(stored[event_id])
                total += len(event_ids)
                if len(event_ids) < self._batch_size:
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
                for callback in self.after_evaluation:
                    try:
                        await callback(persisted)
                    except Exception:
                        logger.exception("after_evaluation callback failed for %s",
                                         persisted.event_id)
        self._idle.set()

    async def _evaluate_one(self, event: StoredEvent) -> None:
        ordering = event.stream_ordering
        assert ordering is not None  # events_after lists timeline events only
        try:
            found = (await self._notifications_for(event.pdu, ordering)
                     if event.pdu.rejected_reason is None else [])
            await self._record(event.pdu, ordering, found)
        except Exception:
            # One bad event must not stop notifications for everything after it: step
            # past it. If the database itself is failing this raises too, and the event
            # is retried by the next run.
            logger.exception("push evaluation failed for %s", event.event_id)
            async with self._db.transaction() as conn:
                await self._position.claim(conn, ordering)

    async def _notifications_for(self, pdu: Pdu, ordering: int) -> list[NewNotification]:
        async with self._db.connection() as conn:
            targets, ctx, names = await self._prepare(conn, pdu)
        found: list[NewNotification] = []
        thread = thread_of(pdu)
        now = self._clock.time_ms()
        for user_id in targets:
            actions = (await self._rules.compiled(user_id)).evaluate(ctx, names.get(user_id))
            if notifies(actions):
                assert actions is not None
                found.append(NewNotification(user_id, pdu.room_id, pdu.event_id, thread,
                                             ordering, actions, highlights(actions), now))
        return found

    async def _record(self, pdu: Pdu, ordering: int, found: list[NewNotification]) -> None:
        sender_is_local = pdu.rejected_reason is None and pdu.sender.endswith(self._suffix)
        queued = False
        async with self._db.transaction() as conn:
            if not await self._position.claim(conn, ordering):
                return  # another run evaluated it first
            await self._notifications.add(conn, found)
            # Queued with the notification itself, so a crash cannot keep one and lose
            # the other.
            if self._delivery is not None and found:
                queued = await self._delivery.enqueue(conn, found)
            if sender_is_local:
                # Spec: sending an event counts as reading up to it (in its thread).
                await self._notifications.mark_read(conn, pdu.sender, pdu.room_id,
                                                    thread_of(pdu), ordering)
        if queued and self._delivery is not None:
            self._delivery.wake()

    async def _prepare(self, conn: Connection,
                       pdu: Pdu) -> tuple[list[str], EventContext, dict[str, str | None]]:
        """The local users to evaluate for (never the sender), the shared context and
        each target's display name in the room."""
        stores = self._stores
        members = await stores.memberships.members(conn, pdu.room_id, ("join",))
        targets = [m.user_id for m in members
                   if m.user_id.endswith(self._suffix) and m.user_id != pdu.sender]
        if (pdu.type == "m.room.member" and pdu.membership == "invite"
                and pdu.state_key is not None and pdu.state_key.endswith(self._suffix)
                and pdu.state_key not in targets):
            targets.append(pdu.state_key)
        state = await stores.current_state.get_entries(
            conn, pdu.room_id, [("m.room.power_levels", ""), ("m.room.create", "")])
        member_ids = {m.user_id: m.event_id for m in members if m.user_id in targets}
        pdus = await stores.events.get_pdus(conn, [*state.values(), *member_ids.values()])
        power_levels = pdus.get(state.get(("m.room.power_levels", ""), ""))
        create = pdus.get(state.get(("m.room.create", ""), ""))
        levels: Any = power_levels.content.get("notifications") if power_levels else None
        ctx = EventContext(
            event=pdu.get_json(), member_count=len(members),
            sender_power=get_user_power_level(pdu.sender, power_levels, create),
            notification_levels=levels if isinstance(levels, dict) else {})
        names: dict[str, str | None] = {}
        for user_id, event_id in member_ids.items():
            member = pdus.get(event_id)
            name = member.content.get("displayname") if member is not None else None
            names[user_id] = name if isinstance(name, str) else None
        return targets, ctx, names
