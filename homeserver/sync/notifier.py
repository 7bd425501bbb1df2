"""Wakes waiting /sync requests and WebSocket streams the moment a relevant stream moves.

Writers call `notify(stream, position, users=..., rooms=...)` after their transaction
commits; a waiter registered under one of those users or rooms, whose token is behind
`position` on that stream, is woken at once. There is no polling: each waiter is one
Future, found through per-user and per-room indexes.

The race between "the sync computed an empty result" and "the sync starts waiting" is
closed by remembering, per user and per room, the last position notified on each stream:
`wait_for` first compares those with the caller's token and returns at once if it is
already behind. That memory is a bounded LRU; when an entry is dropped its positions
raise a per-stream floor, and a token below the floor wakes at once. Such a wake may be
spurious (nothing for this user changed); callers must treat `True` as "recompute, and if
there is nothing to send, wait again for the rest of the timeout".

Several processes later: a PostgreSQL LISTEN/NOTIFY bridge will publish each local
`Notification` (see `add_publisher`) and feed notifications from other workers into
`deliver()`; the waiting side does not change.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable

import attrs

from homeserver.sync.room_states import RoomStateLog
from homeserver.sync.tokens import EVENTS, STREAMS, SyncToken

logger = logging.getLogger(__name__)


@attrs.frozen
class Notification:
    stream: str
    position: int
    users: frozenset[str] = frozenset()
    rooms: frozenset[str] = frozenset()
    # Every stream's position, all committed (none uncommitted at or below them), when
    # the writer knows them (a room batch of messages): see `Notifier.committed_token`.
    token: SyncToken | None = None


class _Waiter:
    __slots__ = ("since", "future", "keys")

    def __init__(self, since: SyncToken, future: asyncio.Future[bool], keys: list[str]):
        self.since = since
        self.future = future
        self.keys = keys


class _LastPositions:
    """key -> {stream: last notified position}, LRU-bounded with a conservative floor."""

    def __init__(self, max_keys: int):
        self._max = max_keys
        self._entries: OrderedDict[str, dict[str, int]] = OrderedDict()
        self.floor: dict[str, int] = {}

    def record(self, key: str, stream: str, position: int) -> None:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = {}
        else:
            self._entries.move_to_end(key)
        if position > entry.get(stream, 0):
            entry[stream] = position
        while len(self._entries) > self._max:
            _, dropped = self._entries.popitem(last=False)
            for s, p in dropped.items():
                if p > self.floor.get(s, 0):
                    self.floor[s] = p

    def behind(self, key: str, since: SyncToken) -> bool:
        entry = self._entries.get(key)
        return entry is not None and _ahead(entry, since)

    def below_floor(self, since: SyncToken) -> bool:
        return _ahead(self.floor, since)


def _ahead(positions: dict[str, int], since: SyncToken) -> bool:
    """Whether any of `positions` is past `since` (a loop: every long-poll asks)."""
    get = since.positions.get
    for stream, position in positions.items():
        if position > get(stream, 0):
            return True
    return False


def _expire(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(False)


class Notifier:
    """In-process fan-out from stream writers to waiting syncs.

    `max_waiters_per_user` bounds what one client can pin: beyond it, the oldest waiter
    of that user returns early (False), which a client sees as an empty sync.
    """

    def __init__(self, *, max_tracked_keys: int = 200_000, max_waiters_per_user: int = 50):
        self._last = _LastPositions(max_tracked_keys)
        self._waiters: dict[str, set[_Waiter]] = {}
        self._user_waiters: dict[str, list[_Waiter]] = {}
        self._max_per_user = max_waiters_per_user
        self._publishers: list[Callable[[Notification], None]] = []
        self._closed = False
        # The highest position notified on each stream, and the token carried by the
        # latest notification (None if it carried none): see committed_token.
        self._notified: dict[str, int] = {}
        self._latest_token: SyncToken | None = None
        # Room events are observed there before they are notified; every events
        # notification passes `deliver`, local or from another process, so the log hears
        # of those it did not observe (see room_states.py).
        self.room_states = RoomStateLog()

    def close(self) -> None:
        """Shutting down: every waiting sync returns now (empty) and none waits again, so
        the server stops at once instead of holding long-polls until their timeout."""
        self._closed = True
        for waiters in self._user_waiters.values():
            for waiter in waiters:
                if not waiter.future.done():
                    waiter.future.set_result(False)

    @property
    def closed(self) -> bool:
        return self._closed

    @staticmethod
    def _user_key(user_id: str) -> str:
        return "u" + user_id

    @staticmethod
    def _room_key(room_id: str) -> str:
        return "r" + room_id

    def add_publisher(self, publish: Callable[[Notification], None]) -> None:
        """Also hand every local notification to `publish` (the future cross-process bridge)."""
        self._publishers.append(publish)

    def notify(self, stream: str, position: int, *, users: Iterable[str] = (),
               rooms: Iterable[str] = (), token: SyncToken | None = None) -> None:
        """Stream `stream` reached `position`, touching these users and rooms. Call after
        the write has committed, never inside the transaction. `token`: every stream's
        position as the writer's transaction saw them, when it knows them."""
        notification = Notification(stream, position, frozenset(users), frozenset(rooms),
                                    token)
        for publish in self._publishers:
            try:
                publish(notification)
            except Exception:  # a broken bridge must not stop local wake-ups
                logger.exception("notification publisher failed")
        self.deliver(notification)

    def deliver(self, n: Notification) -> None:
        """Wake local waiters for a notification (local, or from another process)."""
        if n.stream not in STREAMS:
            raise ValueError(f"unknown stream {n.stream!r}")
        notified = self._notified.get(n.stream, 0)
        # A token behind what was already notified on its own stream was read before
        # that write committed, and says nothing of what else that write's transaction
        # did without notifying (see committed_token): SQLite's group commit can notify
        # a membership that joined a batch's transaction before the batch itself.
        token = n.token if n.token is None or n.token[n.stream] >= notified else None
        if n.position > notified:
            self._notified[n.stream] = n.position
        self._latest_token = token
        if n.stream == EVENTS:
            for room_id in n.rooms:
                self.room_states.seen(room_id, n.position)
        keys = [self._user_key(u) for u in n.users] + [self._room_key(r) for r in n.rooms]
        for key in keys:
            self._last.record(key, n.stream, n.position)
            waiters = self._waiters.get(key)
            if not waiters:
                continue
            for waiter in list(waiters):
                if n.position > waiter.since[n.stream] and not waiter.future.done():
                    waiter.future.set_result(True)

    def notify_room_event(self, room_id: str, position: int, *, member: str | None = None,
                          token: SyncToken | None = None) -> None:
        """A room event was persisted. `member` is the state_key of an m.room.member event:
        that user is woken directly because they may not be waiting on the room yet (an
        invite, or a join from another device)."""
        self.notify(EVENTS, position, rooms=(room_id,), users=() if member is None else (member,),
                    token=token)

    def committed_token(self) -> SyncToken | None:
        """A token with nothing uncommitted at or below it, and no older than what has
        been notified, without reading the database; None if it cannot be had that way.

        Known only while the latest notification carried a token (a room batch of
        messages, whose write saw every stream's position: room_batch.TimelineWritten).
        Merged with the highest position notified on each stream, it covers what was
        committed before that write and everything notified since, by the contract
        above (notify only once committed). What it can miss is a write committed after
        that write that never notifies: the one such writer, the device-list change a
        membership records, commits with a membership event, whose own notification
        carries no token (it is a state event), so the next read goes to the database.
        If that membership is notified first (on SQLite it may have joined the batch's
        transaction, group commit, and be answered first), the batch's token arrives
        behind the events position already notified and is not taken (`deliver`); and a
        membership committed while the PostgreSQL statement waited for the events stream
        makes the batch carry no token at all."""
        if self._latest_token is None:
            return None
        return self._latest_token.merge_max(SyncToken(dict(self._notified)))

    def has_update(self, user_id: str, since: SyncToken, rooms: Iterable[str]) -> bool:
        """Whether something relevant was notified after `since` (may be a false positive)."""
        last = self._last
        if last.below_floor(since) or last.behind(self._user_key(user_id), since):
            return True
        for room_id in rooms:
            if last.behind(self._room_key(room_id), since):
                return True
        return False

    async def wait_for(self, user_id: str, since: SyncToken, rooms: set[str] | frozenset[str],
                       timeout_ms: int) -> bool:
        """Wait until a stream relevant to `user_id` or `rooms` moves past `since`.

        True: something may have changed (recompute); False: the timeout passed, or this
        user has too many waiters and this one was the oldest. Safe to cancel.
        """
        if self.has_update(user_id, since, rooms):
            return True
        if timeout_ms <= 0 or self._closed:
            return False
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        keys = [self._user_key(user_id)] + [self._room_key(r) for r in rooms]
        waiter = _Waiter(since, future, keys)
        self._register(user_id, waiter)
        # A timer that answers False, lighter than asyncio.timeout's cancel-and-convert.
        timer = loop.call_later(timeout_ms / 1000, _expire, future)
        try:
            return await future
        finally:
            timer.cancel()
            self._unregister(user_id, waiter)

    def _register(self, user_id: str, waiter: _Waiter) -> None:
        for key in waiter.keys:
            self._waiters.setdefault(key, set()).add(waiter)
        mine = self._user_waiters.setdefault(user_id, [])
        mine.append(waiter)
        pending = [w for w in mine if not w.future.done()]
        if len(pending) > self._max_per_user:
            pending[0].future.set_result(False)

    def _unregister(self, user_id: str, waiter: _Waiter) -> None:
        for key in waiter.keys:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[key]
        mine = self._user_waiters.get(user_id)
        if mine is not None:
            mine.remove(waiter)
            if not mine:
                del self._user_waiters[user_id]

    def waiter_count(self) -> int:
        return sum(len(w) for w in self._user_waiters.values())
