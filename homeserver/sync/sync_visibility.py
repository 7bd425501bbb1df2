"""History visibility for sync timelines, decided for many events from two batched reads.

Spec: https://spec.matrix.org/v1.19/client-server-api/#history-visibility . The rooms
service's VisibilityFilter reads the state before each event (a few queries per event);
a sync would multiply that by every event of every room. Here the history visibility and
the user's membership before an event are taken from the changes that precede it in
stream order, read once per sync for all rooms. For a linear history, which every room
created on this server has, that is exactly the state before the event; across a
federated fork it can differ for events on the fork, where /messages (exact) disagrees
at worst about events around the fork point.

Sync only asks when it must: a room the user has been joined to since before the oldest
event of its timeline shows every event (see `needs_check`).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from homeserver.storage.events import StoredEvent
from homeserver.storage.sync_queries import MembershipChange

JOIN = "join"
INVITE = "invite"


def needs_check(membership: str, joined_at: int | None, oldest: int | None) -> bool:
    """Whether a room's timeline needs a visibility check: not when the user is joined
    and joined before its oldest event."""
    if oldest is None:
        return False
    return not (membership == JOIN and joined_at is not None and joined_at < oldest)


def _before(changes: Sequence[tuple[int, str]], position: int) -> str | None:
    """The value of the last change strictly before `position`."""
    i = bisect.bisect_left(changes, (position, ""))
    return changes[i - 1][1] if i else None


def visible_events(user_id: str, events: Sequence[StoredEvent],
                   memberships: Sequence[MembershipChange],
                   visibility_changes: Sequence[tuple[int, str]]) -> list[StoredEvent]:
    """The events of one room (ascending) the user may see."""
    own = sorted((m.stream_ordering, m.membership) for m in memberships)
    joins = [pos for pos, membership in own if membership == JOIN]
    history = sorted(visibility_changes)
    out = []
    for event in events:
        pdu = event.pdu
        position = event.stream_ordering
        if position is None:
            continue
        if pdu.type == "m.room.member" and pdu.state_key == user_id:
            out.append(event)  # users always see their own membership changes
            continue
        visibility = _before(history, position) or "shared"
        membership = _before(own, position)
        if (visibility == "world_readable" or membership == JOIN
                or (visibility == "invited" and membership == INVITE)
                # shared: visible to anyone who joins at any point after the event
                or (visibility == "shared" and joins and joins[-1] > position)):
            out.append(event)
    return out
