"""Read receipts and read markers.

Spec: https://spec.matrix.org/v1.19/client-server-api/#receipts and #fully-read-markers

Receipts only move forward: a receipt for an event older than the user's current one
(same type and thread) is accepted and ignored, as is a fully-read marker that would
move back, because a client on a second device catching up must not rewind the first.
`m.read.private` receipts are shown to their owner only. The `m.fully_read` marker is
room account data (through the accounts engineer's AccountDataStore), not a receipt.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from homeserver.clock import Clock
from homeserver.errors import Forbidden, InvalidParam, NotFound
from homeserver.storage.account_data import STREAM as ACCOUNT_DATA_STREAM
from homeserver.storage.account_data import AccountDataStore
from homeserver.storage.database import Database
from homeserver.storage.receipts import Receipt, ReceiptStore
from homeserver.sync.notifier import Notifier
from homeserver.sync.ports import EventLocator, Membership
from homeserver.sync.tokens import RECEIPTS

READ = "m.read"
READ_PRIVATE = "m.read.private"
FULLY_READ = "m.fully_read"
RECEIPT_TYPES = (READ, READ_PRIVATE)
MAIN_THREAD = "main"
MAX_STREAM_POSITION = 2**63 - 1
# After a receipt is stored: (user_id, room_id, receipt_type, thread_id, event position),
# e.g. push resetting notification counts.
ReceiptListener = Callable[[str, str, str, "str | None", int], Awaitable[None]]


def validate_thread_id(receipt_type: str, thread_id: Any) -> str | None:
    """The request's thread_id, checked as the spec's 400 response lists."""
    if thread_id is None:
        return None
    if not isinstance(thread_id, str) or not thread_id:
        raise InvalidParam("thread_id field must be a non-empty string")
    if receipt_type not in RECEIPT_TYPES:
        raise InvalidParam(f"thread_id is not allowed for {receipt_type}")
    if thread_id != MAIN_THREAD and not thread_id.startswith("$"):
        raise InvalidParam("thread_id must be 'main' or an event ID")
    return thread_id


class ReceiptService:
    def __init__(self, db: Database, store: ReceiptStore, account_data: AccountDataStore,
                 notifier: Notifier, membership: Membership, events: EventLocator, clock: Clock):
        self._db = db
        self._store = store
        self._account_data = account_data
        self._notifier = notifier
        self._membership = membership
        self._events = events
        self._clock = clock
        self.on_receipt: list[ReceiptListener] = []

    async def post_receipt(self, user_id: str, room_id: str, receipt_type: str, event_id: str,
                           thread_id: str | None = None) -> None:
        """POST /rooms/{roomId}/receipt/{receiptType}/{eventId}"""
        if receipt_type == FULLY_READ:
            if thread_id is not None:
                raise InvalidParam("thread_id is not allowed for m.fully_read")
            await self.set_read_markers(user_id, room_id, fully_read=event_id)
            return
        if receipt_type not in RECEIPT_TYPES:
            raise InvalidParam(f"Unknown receipt type {receipt_type!r}")
        position = await self._check(user_id, room_id, event_id)
        await self._write_receipt(user_id, room_id, receipt_type, event_id, thread_id, position)

    async def set_read_markers(self, user_id: str, room_id: str, *, fully_read: str | None = None,
                               read: str | None = None, read_private: str | None = None) -> None:
        """POST /rooms/{roomId}/read_markers: any of the three, each moving forward only."""
        positions = {e: await self._check(user_id, room_id, e)
                     for e in (fully_read, read, read_private) if e is not None}
        if read is not None:
            await self._write_receipt(user_id, room_id, READ, read, None, positions[read])
        if read_private is not None:
            await self._write_receipt(user_id, room_id, READ_PRIVATE, read_private, None,
                                      positions[read_private])
        if fully_read is not None:
            await self._write_fully_read(user_id, room_id, fully_read, positions[fully_read])

    async def _check(self, user_id: str, room_id: str, event_id: str) -> int:
        if not await self._membership.is_joined(user_id, room_id):
            raise Forbidden("You are not in this room")
        position = await self._events.event_position(room_id, event_id)
        if position is None:
            raise NotFound("Unknown event in this room")
        return position

    async def _is_behind(self, room_id: str, current_event: str | None, new_position: int) -> bool:
        if current_event is None:
            return False
        current = await self._events.event_position(room_id, current_event)
        return current is not None and current >= new_position

    async def _write_receipt(self, user_id: str, room_id: str, receipt_type: str, event_id: str,
                             thread_id: str | None, position: int) -> None:
        # Read-then-write outside one transaction: the only race is between two of the
        # user's own devices, where either outcome is a valid receipt.
        current = await self._store.get_event_id(self._db, room_id, receipt_type, user_id, thread_id)
        if await self._is_behind(room_id, current, position):
            return
        async with self._db.transaction() as conn:
            stream_id = await self._store.upsert(conn, room_id, receipt_type, user_id, thread_id,
                                                 event_id, {"ts": self._clock.time_ms()})
        # Before the wake-up, so a sync woken by the receipt sees its effects (counts).
        for listener in self.on_receipt:
            await listener(user_id, room_id, receipt_type, thread_id, position)
        if receipt_type == READ_PRIVATE:
            self._notifier.notify(RECEIPTS, stream_id, users=(user_id,))
        else:
            self._notifier.notify(RECEIPTS, stream_id, rooms=(room_id,))

    async def _write_fully_read(self, user_id: str, room_id: str, event_id: str,
                                position: int) -> None:
        current = await self._account_data.get_room(self._db, user_id, room_id, FULLY_READ)
        current_event = current.get("event_id") if current else None
        if await self._is_behind(room_id, current_event if isinstance(current_event, str) else None,
                                 position):
            return
        async with self._db.transaction() as conn:
            stream_id = await self._account_data.put_room(conn, user_id, room_id, FULLY_READ,
                                                          {"event_id": event_id})
        self._notifier.notify(ACCOUNT_DATA_STREAM, stream_id, users=(user_id,))

    # --- for /sync ---------------------------------------------------------------------

    async def receipts_initial(self, user_id: str, rooms: Iterable[str],
                               up_to: int | None = None) -> dict[str, dict[str, Any]]:
        """room -> m.receipt event with every current receipt the user may see (written
        at or before `up_to`, the sync's receipts position, when given)."""
        limit = MAX_STREAM_POSITION if up_to is None else up_to
        async with self._db.connection() as conn:
            receipts = await self._store.for_rooms(conn, list(rooms), limit)
        return _by_room(user_id, receipts)

    async def receipts_since(self, user_id: str, rooms: Iterable[str], since: int,
                             up_to: int) -> dict[str, dict[str, Any]]:
        """room -> m.receipt event with the receipts written in (since, up_to]."""
        wanted = set(rooms)
        receipts = [r for r in await self._store.in_range(self._db, since, up_to)
                    if r.room_id in wanted]
        return _by_room(user_id, receipts)


def _by_room(viewer: str, receipts: list[Receipt]) -> dict[str, dict[str, Any]]:
    by_room: dict[str, list[Receipt]] = {}
    for receipt in receipts:
        by_room.setdefault(receipt.room_id, []).append(receipt)
    out: dict[str, dict[str, Any]] = {}
    for room_id, room_receipts in by_room.items():
        event = _receipt_event(viewer, room_receipts)
        if event is not None:
            out[room_id] = event
    return out


def _receipt_event(viewer: str, receipts: list[Receipt]) -> dict[str, Any] | None:
    content: dict[str, Any] = {}
    for r in receipts:
        if r.receipt_type == READ_PRIVATE and r.user_id != viewer:
            continue
        data = dict(r.data)
        if r.thread_id is not None:
            data["thread_id"] = r.thread_id
        content.setdefault(r.event_id, {}).setdefault(r.receipt_type, {})[r.user_id] = data
    return {"type": "m.receipt", "content": content} if content else None
