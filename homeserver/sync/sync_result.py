"""What a /sync computes, before it becomes JSON: the request and the response sections.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3sync . The
same result is the body of a /sync response and of one WebSocket message, so it is built
here once and serialised by `to_json`.
"""

from __future__ import annotations

from typing import Any

import attrs

from homeserver.sync.filters import Filter
from homeserver.sync.tokens import SyncToken

JsonDict = dict[str, Any]

ONLINE = "online"
OFFLINE = "offline"
UNAVAILABLE = "unavailable"
SET_PRESENCE_VALUES = (ONLINE, OFFLINE, UNAVAILABLE)


@attrs.frozen
class SyncRequest:
    user_id: str
    device_id: str | None
    filter: Filter
    since: SyncToken | None = None
    full_state: bool = False
    timeout_ms: int = 0
    set_presence: str = ONLINE
    use_state_after: bool = False
    # Whether `since` proves the device processed the to-device messages before it. True
    # for /sync; the WebSocket stream sets it only for tokens the client sent itself.
    acknowledges_since: bool = True


@attrs.frozen
class Timeline:
    events: list[JsonDict]
    limited: bool
    prev_batch: str

    def to_json(self) -> JsonDict:
        return {"events": self.events, "limited": self.limited, "prev_batch": self.prev_batch}


@attrs.frozen
class RoomResult:
    """One room of `rooms.join` or `rooms.leave` (leave rooms carry no ephemeral,
    summary or counts)."""

    timeline: Timeline
    state: list[JsonDict]
    account_data: list[JsonDict] = attrs.field(factory=list)
    ephemeral: list[JsonDict] | None = None
    summary: JsonDict | None = None
    unread_notifications: JsonDict | None = None
    # thread root -> counts; None unless the filter asked for `unread_thread_notifications`.
    unread_thread_notifications: JsonDict | None = None
    # True: `state` is the spec's `state_after` (use_state_after was requested).
    state_after: bool = False

    def to_json(self) -> JsonDict:
        out: JsonDict = {
            "timeline": self.timeline.to_json(),
            "state_after" if self.state_after else "state": {"events": self.state},
            "account_data": {"events": self.account_data},
        }
        if self.ephemeral is not None:
            out["ephemeral"] = {"events": self.ephemeral}
        if self.summary is not None:
            out["summary"] = self.summary
        if self.unread_notifications is not None:
            out["unread_notifications"] = self.unread_notifications
        if self.unread_thread_notifications is not None:
            out["unread_thread_notifications"] = self.unread_thread_notifications
        return out


@attrs.frozen
class RoomCounts:
    """A joined room's unread counts. `unread` is every thread's total, or the main
    timeline's alone when `threads` (thread root -> counts) was asked for."""

    unread: JsonDict
    threads: JsonDict | None = None


@attrs.frozen
class E2eSection:
    """to_device, device_lists and the device's key counts (see sync/e2e_sync.py)."""

    to_device: list[JsonDict] = attrs.field(factory=list)
    changed: list[str] = attrs.field(factory=list)
    left: list[str] = attrs.field(factory=list)
    # None when the request has no device: there is nothing to count for.
    one_time_keys_count: dict[str, int] | None = None
    unused_fallback_key_types: list[str] | None = None

    def is_empty(self) -> bool:
        # Key counts are state, not news: they ride along but never end a long-poll.
        return not (self.to_device or self.changed or self.left)

    def to_json(self) -> JsonDict:
        out: JsonDict = {"to_device": {"events": self.to_device},
                         "device_lists": {"changed": self.changed, "left": self.left}}
        if self.one_time_keys_count is not None:
            out["device_one_time_keys_count"] = self.one_time_keys_count
        if self.unused_fallback_key_types is not None:
            out["device_unused_fallback_key_types"] = self.unused_fallback_key_types
        return out


@attrs.frozen
class SyncResult:
    next_batch: SyncToken
    join: dict[str, RoomResult] = attrs.field(factory=dict)
    leave: dict[str, RoomResult] = attrs.field(factory=dict)
    # room -> stripped state events
    invite: dict[str, list[JsonDict]] = attrs.field(factory=dict)
    knock: dict[str, list[JsonDict]] = attrs.field(factory=dict)
    presence: list[JsonDict] = attrs.field(factory=list)
    account_data: list[JsonDict] = attrs.field(factory=list)
    e2e: E2eSection = attrs.field(factory=E2eSection)

    def is_empty(self) -> bool:
        """Nothing a client needs to see: a long-poll keeps waiting."""
        return not (self.join or self.leave or self.invite or self.knock or self.presence
                    or self.account_data) and self.e2e.is_empty()

    def to_json(self) -> JsonDict:
        return {
            "next_batch": self.next_batch.serialize(),
            "rooms": {
                "join": {r: room.to_json() for r, room in self.join.items()},
                "invite": {r: {"invite_state": {"events": ev}} for r, ev in self.invite.items()},
                "knock": {r: {"knock_state": {"events": ev}} for r, ev in self.knock.items()},
                "leave": {r: room.to_json() for r, room in self.leave.items()},
            },
            "presence": {"events": self.presence},
            "account_data": {"events": self.account_data},
            **self.e2e.to_json(),
        }
