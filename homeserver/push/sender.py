"""Delivery of notifications to `http` and `webpush` pushers from the persistent push
queue.

Spec: https://spec.matrix.org/v1.19/push-gateway-api/ ; web push: MSC4174, RFC 8030/8291/
8292 (a 404 or 410 from the push service means the subscription is gone). The evaluator queues one row per
pusher in the transaction that records the notification (`enqueue`) and wakes this
sender after commit. The sender posts each pusher's rows oldest first; on a failure it
holds that pusher back, doubling the delay from 1 s up to 10 min, and the timer comes
from the injected Scheduler so tests move time by hand. A 2xx or a permanent 4xx
removes the row; pushkeys a gateway rejects lose their pusher. Rows survive restarts:
`start` resumes whatever is due. Tests await `idle()`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

from homeserver.clock import Clock
from homeserver.push.gateway import (
    GatewayClient,
    GatewayUnreachable,
    notification_body,
    rejected_pushkeys,
)
from homeserver.push.pushers import is_private_host
from homeserver.push.vapid import VapidKey
from homeserver.push.webpush import b64url_decode, encrypt, webpush_message
from homeserver.storage.database import Connection, Database
from homeserver.storage.notifications import NewNotification
from homeserver.storage.push_queue import PushQueueStore, QueuedPush
from homeserver.storage.pushers import PusherStore
from homeserver.sync.timers import Scheduler, TimerHandle

logger = logging.getLogger(__name__)

FIRST_BACKOFF_MS = 1000
MAX_BACKOFF_MS = 10 * 60 * 1000
BATCH = 100
_DELIVERED, _DROP, _RETRY, _REJECTED = "delivered", "drop", "retry", "rejected"
# How long a push service keeps an undelivered message: a day-old notification is noise.
WEBPUSH_TTL_S = 24 * 60 * 60
_TARGET_KEY = {"http": "url", "webpush": "endpoint"}


class EventDescriber(Protocol):
    async def describe(self, user_id: str, room_id: str,
                       event_id: str) -> dict[str, Any] | None: ...


def backoff_ms(attempts: int) -> int:
    """Delay after the `attempts`-th consecutive failure (1-based)."""
    return min(FIRST_BACKOFF_MS << min(attempts - 1, 20), MAX_BACKOFF_MS)


class PushSender:
    def __init__(self, db: Database, queue: PushQueueStore, pushers: PusherStore,
                 gateway: GatewayClient, events: EventDescriber, clock: Clock,
                 scheduler: Scheduler, *, allow_private_addresses: bool = False,
                 vapid: VapidKey | None = None):
        self._db = db
        self._queue = queue
        self._pushers = pushers
        self._gateway = gateway
        self._events = events
        self._clock = clock
        self._scheduler = scheduler
        self._allow_private = allow_private_addresses
        self._vapid = vapid
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._timer: TimerHandle | None = None

    async def users_with_pushers(self, conn: Connection, user_ids: Collection[str]) -> set[str]:
        """In the evaluator's transaction: the users `enqueue` would queue anything for."""
        return await self._queue.users_with_pushers(conn, list(user_ids))

    async def enqueue(self, conn: Connection, notifications: Sequence[NewNotification]) -> bool:
        """In the evaluator's transaction, one row per pusher of each notification's user
        (none for a user without pushers: pass only those of `users_with_pushers`); True
        if anything may have been queued (then `wake` after commit)."""
        await self._queue.enqueue_many(conn, notifications)
        return bool(notifications)

    def wake(self) -> None:
        self._idle.clear()
        self._wake.set()

    def start(self) -> None:
        """Begin sending; rows left by a previous process are resumed."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
            self.wake()

    async def idle(self) -> None:
        """Returns once nothing is due: all sent, dropped, or waiting on a backoff timer."""
        await self._idle.wait()

    async def queued(self) -> int:
        """Rows waiting in the queue, due or backing off."""
        return await self._queue.size(self._db)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self._gateway.close()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                while await self._send_due():
                    pass
                await self._arm_timer()
            except Exception:
                # A database hiccup must not end delivery for good: try again later.
                logger.exception("push delivery pass failed")
                self._set_timer(FIRST_BACKOFF_MS)
            if not self._wake.is_set():
                self._idle.set()

    async def _send_due(self) -> bool:
        """One batch; True when there may be more due right now."""
        async with self._db.transaction() as conn:
            await self._queue.delete_orphans(conn)
        items = await self._queue.due(self._db, self._clock.time_ms(), BATCH)
        by_pusher: dict[tuple[str, str, str], list[QueuedPush]] = {}
        for item in items:
            by_pusher.setdefault((item.user_id, item.app_id, item.pushkey), []).append(item)
        # Pushers are independent: one slow gateway must not hold back the others.
        await asyncio.gather(*(self._send_pusher(rows) for rows in by_pusher.values()))
        return len(items) == BATCH

    async def _send_pusher(self, rows: list[QueuedPush]) -> None:
        for item in rows:
            outcome = await self._post(item)
            async with self._db.transaction() as conn:
                if outcome == _RETRY:
                    attempts = item.attempts + 1
                    await self._queue.back_off(conn, item, attempts,
                                               self._clock.time_ms() + backoff_ms(attempts))
                    return
                await self._queue.delete(conn, item)
                if outcome == _REJECTED:
                    await self._pushers.delete(conn, item.user_id, item.app_id, item.pushkey)
                    return
                if item.attempts:
                    await self._queue.reset_attempts(conn, item)

    async def _post(self, item: QueuedPush) -> str:
        target_key = _TARGET_KEY.get(item.kind)
        url = item.data.get(target_key) if target_key else None
        host = urlsplit(url).hostname if isinstance(url, str) else None
        if not isinstance(url, str) or not host:
            return _DROP
        if not self._allow_private and is_private_host(host):
            logger.warning("dropping push to private address %s", host)
            return _DROP
        event = None
        if item.data.get("format") != "event_id_only":
            event = await self._events.describe(item.user_id, item.room_id, item.event_id)
        try:
            if item.kind == "webpush":
                return await self._post_webpush(item, url, host, event)
            resp = await self._gateway.post_json(url, notification_body(item, event))
        except GatewayUnreachable as e:
            logger.info("push gateway %s unreachable: %s", host, e)
            return _RETRY
        if 200 <= resp.status < 300:
            return _REJECTED if item.pushkey in rejected_pushkeys(resp.body) else _DELIVERED
        return self._failure(host, resp.status)

    async def _post_webpush(self, item: QueuedPush, endpoint: str, host: str,
                            event: dict[str, Any] | None) -> str:
        if self._vapid is None:
            return _DROP
        message, prio = webpush_message(item, event)
        try:
            body = encrypt(b64url_decode(item.pushkey), b64url_decode(item.data["auth"]),
                           message)
        except (KeyError, TypeError, ValueError) as e:
            logger.warning("cannot encrypt web push for %s: %s", item.user_id, e)
            return _DROP
        headers = {"Content-Encoding": "aes128gcm", "Content-Type": "application/octet-stream",
                   "TTL": str(WEBPUSH_TTL_S), "Urgency": "high" if prio == "high" else "normal",
                   "Authorization": self._vapid.authorization(
                       endpoint, self._clock.time_ms() // 1000)}
        resp = await self._gateway.post_bytes(endpoint, body, headers)
        if 200 <= resp.status < 300:
            return _DELIVERED
        if resp.status in (404, 410):
            logger.info("web push subscription at %s is gone: HTTP %d", host, resp.status)
            return _REJECTED
        return self._failure(host, resp.status)

    @staticmethod
    def _failure(host: str, status: int) -> str:
        if status == 429 or status >= 500:
            return _RETRY
        logger.warning("push gateway %s refused a notification: HTTP %d", host, status)
        return _DROP

    async def _arm_timer(self) -> None:
        next_ts = await self._queue.next_attempt(self._db)
        if next_ts is not None:
            self._set_timer(next_ts - self._clock.time_ms())

    def _set_timer(self, delay_ms: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._scheduler.call_later(delay_ms, self.wake)
