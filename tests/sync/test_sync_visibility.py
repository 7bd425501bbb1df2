"""History visibility of sync timelines from batched membership and visibility changes."""

from __future__ import annotations

from typing import Any

from homeserver.events.pdu import Pdu
from homeserver.events.room_versions import get_room_version
from homeserver.storage.events import StoredEvent
from homeserver.storage.sync_queries import MembershipChange
from homeserver.sync.sync_visibility import needs_check, visible_events

USER = "@u:x"
V10 = get_room_version("10")


def _event(position: int, event_type: str = "m.room.message", **fields: Any) -> StoredEvent:
    assert V10 is not None
    pdu = Pdu({"type": event_type, "sender": "@other:x", "room_id": "!r", "content": {},
               **fields}, V10, f"$e{position}")
    return StoredEvent(pdu, position, False, None)


def _visible(events: list[StoredEvent], memberships: list[tuple[str, int]],
             visibility: list[tuple[int, str]]) -> list[int]:
    changes = [MembershipChange("!r", m, p) for m, p in memberships]
    return [e.stream_ordering or 0 for e in visible_events(USER, events, changes, visibility)]


def test_shared_history_is_visible_to_later_joiners_joined_history_is_not() -> None:
    events = [_event(p) for p in (1, 2, 5, 6)]
    assert _visible(events, [("join", 4)], []) == [1, 2, 5, 6]
    assert _visible(events, [("join", 4)], [(0, "joined")]) == [5, 6]
    assert _visible(events, [("join", 4)], [(0, "joined"), (3, "world_readable")]) == [5, 6]
    assert _visible(events, [("join", 4)], [(0, "joined"), (2, "world_readable")]) == [5, 6]
    assert _visible(events, [("join", 4)], [(0, "joined"), (1, "world_readable")]) == [2, 5, 6]


def test_invited_visibility_and_own_membership_events() -> None:
    events = [_event(1), _event(3), _event(5, "m.room.member", state_key=USER), _event(6)]
    assert _visible(events, [("invite", 2), ("leave", 5)], [(0, "invited")]) == [3, 5]
    assert _visible(events, [("invite", 2), ("leave", 5)], [(0, "joined")]) == [5]


def test_needs_check_only_when_the_user_was_not_joined_throughout() -> None:
    assert not needs_check("join", 3, 4)
    assert needs_check("join", 5, 4)
    assert needs_check("leave", None, 4)
    assert not needs_check("leave", None, None)
