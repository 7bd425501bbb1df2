"""Presence: online / unavailable / offline, a status message and last activity.

Spec: https://spec.matrix.org/v1.19/client-server-api/#presence

A user who does something is online and "currently active"; after `idle_timeout_ms`
without activity they become unavailable. Idleness is detected by one timer per online
user, not by a sweeping loop: the timer is armed once and, when it fires, re-arms itself
for the remainder if the user was active meanwhile, so activity itself never touches it.
Activity is written at most once per `ACTIVITY_GRANULARITY_MS` per user, because it is
reported on every request and presence is not worth a write per request; the rows this
service wrote last are kept (bounded LRU), so activity within that interval costs no
read either. This service is presence's only writer, so they are what the database holds.

With `enabled=False` (the operator turned presence off) every write is a no-op and
everybody reads as offline.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Collection
from typing import Any

from homeserver.clock import Clock
from homeserver.errors import Forbidden
from homeserver.storage.database import Database
from homeserver.storage.presence import PresenceRow, PresenceStore
from homeserver.sync.notifier import Notifier
from homeserver.sync.ports import Membership
from homeserver.sync.timers import Scheduler, TimerHandle
from homeserver.sync.tokens import PRESENCE

logger = logging.getLogger(__name__)

ONLINE = "online"
UNAVAILABLE = "unavailable"
OFFLINE = "offline"
STATES = (ONLINE, UNAVAILABLE, OFFLINE)
ACTIVITY_GRANULARITY_MS = 60_000
DEFAULT_IDLE_TIMEOUT_MS = 5 * 60_000
WRITTEN_CACHE_SIZE = 50_000


def _recently_active(row: PresenceRow | None, now: int) -> bool:
    return (row is not None and row.state == ONLINE and row.currently_active
            and now - row.last_active_ts < ACTIVITY_GRANULARITY_MS)


class PresenceService:
    def __init__(self, db: Database, store: PresenceStore, notifier: Notifier,
                 membership: Membership, clock: Clock, scheduler: Scheduler, *,
                 enabled: bool = True, idle_timeout_ms: int = DEFAULT_IDLE_TIMEOUT_MS):
        self._db = db
        self._store = store
        self._notifier = notifier
        self._membership = membership
        self._clock = clock
        self._scheduler = scheduler
        self.enabled = enabled
        self._idle_ms = idle_timeout_ms
        self._idle_timers: dict[str, TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._written: OrderedDict[str, PresenceRow] = OrderedDict()

    async def set_presence(self, user_id: str, state: str, status_msg: str | None = None) -> None:
        """PUT /presence/{userId}/status (the caller is that user)."""
        if state not in STATES:
            raise ValueError(f"bad presence state {state!r}")
        if not self.enabled:
            return
        now = self._clock.time_ms()
        current = await self._store.get(self._db, user_id)
        last_active = now if state == ONLINE or current is None else current.last_active_ts
        await self._write(user_id, state, status_msg, last_active, state == ONLINE)

    async def user_active(self, user_id: str) -> None:
        """The user did something (sent an event, synced with set_presence=online)."""
        if not self.enabled:
            return
        now = self._clock.time_ms()
        if _recently_active(self._written.get(user_id), now):
            return
        current = await self._store.get(self._db, user_id)
        if _recently_active(current, now):
            return
        await self._write(user_id, ONLINE, current.status_msg if current else None, now, True)

    async def get_presence(self, viewer: str, user_id: str) -> dict[str, Any]:
        """GET /presence/{userId}/status: your own, or that of someone you share a room with."""
        if viewer != user_id:
            shared = (await self._membership.joined_rooms(viewer)) & (
                await self._membership.joined_rooms(user_id))
            if not shared:
                raise Forbidden("You are not allowed to see their presence")
        row = await self._store.get(self._db, user_id) if self.enabled else None
        if row is None:
            return {"presence": OFFLINE}
        return self._content(row)

    async def presence_since(self, since: int, up_to: int,
                             visible_users: Collection[str]) -> list[dict[str, Any]]:
        """m.presence events for the users among `visible_users` (those sharing a room
        with the syncing user, and the user) changed in (since, up_to]."""
        if not self.enabled:
            return []
        rows = await self._store.in_range(self._db, since, up_to)
        return [{"type": "m.presence", "sender": r.user_id, "content": self._content(r)}
                for r in rows if r.user_id in visible_users]

    def _content(self, row: PresenceRow) -> dict[str, Any]:
        content: dict[str, Any] = {
            "presence": row.state,
            "last_active_ago": max(0, self._clock.time_ms() - row.last_active_ts),
            "currently_active": row.currently_active and row.state == ONLINE,
        }
        if row.status_msg is not None:
            content["status_msg"] = row.status_msg
        return content

    async def _write(self, user_id: str, state: str, status_msg: str | None,
                     last_active_ts: int, currently_active: bool) -> None:
        async with self._db.transaction() as conn:
            stream_id = await self._store.upsert(conn, user_id, state, status_msg,
                                                 last_active_ts, currently_active)
        self._written[user_id] = PresenceRow(user_id, state, status_msg, last_active_ts,
                                             currently_active, stream_id)
        self._written.move_to_end(user_id)
        if len(self._written) > WRITTEN_CACHE_SIZE:
            self._written.popitem(last=False)
        rooms = await self._membership.joined_rooms(user_id)
        self._notifier.notify(PRESENCE, stream_id, users=(user_id,), rooms=rooms)
        if state == ONLINE:
            self._arm_idle_timer(user_id, self._idle_ms)
        else:
            handle = self._idle_timers.pop(user_id, None)
            if handle is not None:
                handle.cancel()

    def _arm_idle_timer(self, user_id: str, delay_ms: int) -> None:
        if user_id in self._idle_timers:
            return  # the armed timer re-checks the latest activity when it fires
        self._idle_timers[user_id] = self._scheduler.call_later(
            delay_ms, lambda: self._on_idle_timer(user_id))

    def _on_idle_timer(self, user_id: str) -> None:
        self._idle_timers.pop(user_id, None)
        task = asyncio.get_running_loop().create_task(self._check_idle(user_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _check_idle(self, user_id: str) -> None:
        try:
            row = await self._store.get(self._db, user_id)
            if row is None or row.state != ONLINE:
                return
            idle_for = self._clock.time_ms() - row.last_active_ts
            if idle_for < self._idle_ms:
                self._arm_idle_timer(user_id, self._idle_ms - idle_for)
                return
            await self._write(user_id, UNAVAILABLE, row.status_msg, row.last_active_ts, False)
        except Exception:  # a timer has nobody to report to; keep the service running
            logger.exception("presence idle check failed for %s", user_id)

    async def settle(self) -> None:
        """Wait for writes started by timers (shutdown; tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    def close(self) -> None:
        for handle in self._idle_timers.values():
            handle.cancel()
        self._idle_timers.clear()
