"""Typing notifications: in memory, per room, each entry expiring on its own timer.

Spec: https://spec.matrix.org/v1.19/client-server-api/#typing-notifications

Typing state is never persisted (it is meaningless after a few seconds), so the "typing"
stream lives here. Its position starts at the wall clock in ms and each change moves it
to max(position + 1, now): positions keep growing across restarts, so a token minted
before a restart is never "from the future" after it. Tokens older than this process's
start get the full typing state of every room asked for, which also clears indicators
that were showing when the server stopped.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from homeserver.clock import Clock
from homeserver.errors import Forbidden
from homeserver.sync.notifier import Notifier
from homeserver.sync.ports import Membership
from homeserver.sync.timers import Scheduler, TimerHandle
from homeserver.sync.tokens import TYPING

DEFAULT_TIMEOUT_MS = 30_000
# Clients send 30 s and refresh; a longer claim would leave a ghost indicator behind a
# crashed client.
MAX_TIMEOUT_MS = 120_000


class TypingService:
    def __init__(self, notifier: Notifier, membership: Membership, clock: Clock,
                 scheduler: Scheduler, *, max_tracked_rooms: int = 100_000):
        self._notifier = notifier
        self._membership = membership
        self._clock = clock
        self._scheduler = scheduler
        self._position = clock.time_ms()
        # room -> user -> expiry timer; a room with nobody typing has no entry.
        self._typing: dict[str, dict[str, TimerHandle]] = {}
        # room -> position of its last change, LRU-bounded. Positions at or below
        # _floor are unknown: a token that old gets the full state.
        self._changed_at: OrderedDict[str, int] = OrderedDict()
        self._floor = self._position
        self._max_rooms = max_tracked_rooms

    @property
    def position(self) -> int:
        return self._position

    async def set_typing(self, user_id: str, room_id: str, typing: bool,
                         timeout_ms: int | None = None) -> None:
        """PUT /rooms/{roomId}/typing/{userId} for a local user (already authorised as
        that user); Forbidden unless joined to the room."""
        if not await self._membership.is_joined(user_id, room_id):
            raise Forbidden("You are not in this room")
        if typing:
            self.started(user_id, room_id, timeout_ms or DEFAULT_TIMEOUT_MS)
        else:
            self.stopped(user_id, room_id)

    def started(self, user_id: str, room_id: str, timeout_ms: int) -> None:
        """Mark typing without a membership check (federation has checked already)."""
        timeout_ms = min(max(timeout_ms, 0), MAX_TIMEOUT_MS)
        users = self._typing.setdefault(room_id, {})
        previous = users.get(user_id)
        if previous is not None:
            previous.cancel()
        handle: TimerHandle | None = None

        def expire() -> None:
            # Only the timer of the current entry may remove it.
            if self._typing.get(room_id, {}).get(user_id) is handle:
                self.stopped(user_id, room_id)

        handle = self._scheduler.call_later(timeout_ms, expire)
        users[user_id] = handle
        if previous is None:  # a refresh changes nothing a client can see
            self._changed(room_id)

    def stopped(self, user_id: str, room_id: str) -> None:
        users = self._typing.get(room_id)
        if users is None or user_id not in users:
            return
        users.pop(user_id).cancel()
        if not users:
            del self._typing[room_id]
        self._changed(room_id)

    def typing_users(self, room_id: str) -> list[str]:
        return sorted(self._typing.get(room_id, ()))

    def typing_event(self, room_id: str) -> dict[str, Any]:
        """The `m.typing` ephemeral event of a room, as /sync shows it."""
        return {"type": "m.typing", "content": {"user_ids": self.typing_users(room_id)}}

    def changes_since(self, since: int | None, rooms: Iterable[str]) -> dict[str, dict[str, Any]]:
        """room -> m.typing event, for the rooms among `rooms` whose typing state changed
        after `since` (every room that has someone typing when `since` is None)."""
        if since is None:
            return {r: self.typing_event(r) for r in rooms if r in self._typing}
        if since < self._floor:
            return {r: self.typing_event(r) for r in rooms}
        return {r: self.typing_event(r) for r in rooms
                if self._changed_at.get(r, 0) > since}

    def _changed(self, room_id: str) -> None:
        self._position = max(self._position + 1, self._clock.time_ms())
        self._changed_at[room_id] = self._position
        self._changed_at.move_to_end(room_id)
        while len(self._changed_at) > self._max_rooms:
            _, dropped = self._changed_at.popitem(last=False)
            self._floor = max(self._floor, dropped)
        self._notifier.notify(TYPING, self._position, rooms=(room_id,))
