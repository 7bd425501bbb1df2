"""Runs every local member's push rules on each new event, after commit and off the
request path.

Spec: https://spec.matrix.org/v1.19/client-server-api/#server-behaviour-1 . The rooms
service's after-commit listener only queues the event; one background task works the
queue in order, so a send is never slowed by a big room. Tests (and anything that needs
the counts settled) await `drained()`.

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
from homeserver.storage.notifications import NewNotification, NotificationStore

logger = logging.getLogger(__name__)

MAIN_THREAD = "main"


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
                 delivery: PushDelivery | None = None):
        self._db = db
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

    async def _work(self) -> None:
        while self._queue:
            persisted = self._queue.popleft()
            try:
                if not persisted.deduplicated and persisted.pdu.rejected_reason is None:
                    await self.evaluate(persisted)
            except Exception:
                # One bad event must not stop notifications for everything after it.
                logger.exception("push evaluation failed for %s", persisted.event_id)
            for callback in self.after_evaluation:
                try:
                    await callback(persisted)
                except Exception:
                    logger.exception("after_evaluation callback failed for %s",
                                     persisted.event_id)
        self._idle.set()

    async def evaluate(self, persisted: PersistedEvent) -> None:
        pdu = persisted.pdu
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
                                             persisted.stream_ordering, actions,
                                             highlights(actions), now))
        sender_is_local = pdu.sender.endswith(self._suffix)
        if not found and not sender_is_local:
            return
        queued = False
        async with self._db.transaction() as conn:
            await self._notifications.add(conn, found)
            # Queued with the notification itself, so a crash cannot keep one and lose
            # the other.
            if self._delivery is not None and found:
                queued = await self._delivery.enqueue(conn, found)
            if sender_is_local:
                # Spec: sending an event counts as reading up to it (in its thread).
                await self._notifications.mark_read(conn, pdu.sender, pdu.room_id, thread,
                                                    persisted.stream_ordering)
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
