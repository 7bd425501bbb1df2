"""Send-to-device messaging between local devices.

Spec: https://spec.matrix.org/v1.19/client-server-api/#send-to-device-messaging
Messages are stored per target device on the stream "to_device" and handed to /sync in
stream order. A message is deleted only once the device syncs with a `since` token past
it: until then a lost /sync response is simply sent again (spec: the server "should
retain" messages until the client acknowledges them this way).

Each device's inbox is bounded. When a send would overflow it the whole request is
refused, atomically, with 429 M_LIMIT_EXCEEDED and a retry delay: the condition is
transient (it clears as soon as that device syncs), and clients already back off and
retry on 429. M_RESOURCE_LIMIT_EXCEEDED would be wrong: it means a server-wide limit
(e.g. monthly active users), makes clients show a "contact your server administrator"
notice, and is not retried.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.clock import Clock
from homeserver.e2e.signed_json import JsonDict, StreamNotifier, canonical, loads
from homeserver.errors import LimitExceeded
from homeserver.storage.database import Connection, Database
from homeserver.storage.streams import current_position, next_position
from homeserver.storage.to_device import NewMessage, ToDeviceStore
from homeserver.types import UserID

TO_DEVICE = "to_device"
MAX_PENDING_PER_DEVICE = 10_000
RETRY_AFTER_MS = 60_000


class ToDevice:
    def __init__(self, db: Database, store: ToDeviceStore, notifier: StreamNotifier, clock: Clock,
                 *, server_name: str, max_pending_per_device: int = MAX_PENDING_PER_DEVICE):
        self._db = db
        self._store = store
        self._notifier = notifier
        self._clock = clock
        self._server_name = server_name
        self.max_pending_per_device = max_pending_per_device

    async def send(self, sender: str, sender_device: str | None, event_type: str, txn_id: str,
                   messages: Mapping[str, Mapping[str, JsonDict]]) -> None:
        """PUT /sendToDevice/{eventType}/{txnId}; `messages` is user -> device (or `*`) ->
        content. A repeated transaction ID from the same device is a no-op."""
        async with self._db.transaction() as conn:
            if sender_device is not None and not await self._store.claim_txn(
                    conn, sender, sender_device, txn_id, self._clock.time_ms()):
                return
            new = await self._messages(conn, sender, event_type, messages)
            await self._store.add(conn, new)
        latest: dict[str, int] = {}
        for m in new:
            latest[m.user_id] = max(latest.get(m.user_id, 0), m.stream_id)
        for user_id, position in latest.items():
            self._notifier.notify(TO_DEVICE, position, users=(user_id,))

    async def _messages(self, conn: Connection, sender: str, event_type: str,
                        messages: Mapping[str, Mapping[str, JsonDict]]) -> list[NewMessage]:
        new: list[NewMessage] = []
        for user_id, by_device in messages.items():
            if UserID.parse(user_id).server_name != self._server_name:
                continue  # federation (m.direct_to_device EDUs) is not wired yet
            targets: list[tuple[str, JsonDict]] = []
            for device_id, content in by_device.items():
                if device_id == "*":
                    targets += [(d, content) for d in await self._store.device_ids(conn, user_id)]
                elif await self._store.device_exists(conn, user_id, device_id):
                    targets.append((device_id, content))
            counts: dict[str, int] = {}
            for device_id, content in targets:
                if device_id not in counts:
                    counts[device_id] = await self._store.pending_count(conn, user_id, device_id)
                counts[device_id] += 1
                if counts[device_id] > self.max_pending_per_device:
                    if await self._store.is_dehydrated(conn, user_id, device_id):
                        # A dehydrated device (MSC3814) is drained only when a client
                        # rehydrates it, which may be never: refusing the send would
                        # block room keys to every other device of the user. Its missed
                        # keys can come from key backup instead.
                        continue
                    raise LimitExceeded(RETRY_AFTER_MS, error=(
                        f"Device {device_id} of {user_id} has {self.max_pending_per_device} "
                        "undelivered to-device messages; retry once it has synced"))
                position = await next_position(conn, TO_DEVICE)
                new.append(NewMessage(user_id, device_id, position, sender, event_type,
                                      canonical(content)))
        return new

    async def to_device_since(self, user_id: str, device_id: str, since_pos: int, limit: int,
                              to_pos: int | None = None) -> tuple[list[JsonDict], int]:
        """Messages for the device after `since_pos` (up to `to_pos`, default: now), at most
        `limit`; returns them and the position to put in the next sync token: the last
        message's when the limit cut the list short, else `to_pos`."""
        up_to = to_pos if to_pos is not None else await current_position(self._db, TO_DEVICE)
        rows = await self._store.pending(self._db, user_id, device_id, after=since_pos,
                                         up_to=up_to, limit=limit)
        events: list[dict[str, Any]] = [
            {"sender": r.sender, "type": r.type, "content": loads(r.content)} for r in rows]
        if rows and len(rows) >= limit:
            return events, rows[-1].stream_id
        return events, max(up_to, since_pos)

    async def ack_to_device(self, user_id: str, device_id: str, up_to_pos: int) -> int:
        """The device synced with a token at `up_to_pos`: it has everything up to there,
        which can go. Returns the number of messages deleted."""
        async with self._db.transaction() as conn:
            return await self._store.delete_up_to(conn, user_id, device_id, up_to_pos)
