"""Which rooms a sync reports, in which section, and over which stream range.

Spec: https://spec.matrix.org/v1.19/client-server-api/#syncing . A room is planned from
the user's membership at the sync's events position:

- join: every joined room; from scratch (timeline of the newest events, all state up to
  it) on an initial sync or when the user (re)joined after `since`, as the client has
  nothing of the room then; otherwise incremental from `since`, `full_state` adding all
  the state.
- leave/ban: on an incremental sync when the user left after `since`; on an initial or
  `full_state` sync only with the filter's `include_leave`. The timeline stops at the
  leave. Forgotten rooms never appear.
- invite/knock: on an initial sync, or when the invite/knock came after `since`.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from homeserver.storage.memberships import Membership
from homeserver.sync.filters import RoomFilter

JOIN = "join"
LEAVE = "leave"
INVITE = "invite"
KNOCK = "knock"


@attrs.frozen
class RoomPlan:
    room_id: str
    section: str  # JOIN, LEAVE, INVITE or KNOCK
    membership: Membership
    # True: the client gets the room's whole state (it has nothing, or asked for all).
    full: bool
    # The timeline window (low, high] in the events stream; low is 0 when the client
    # has nothing of the room yet.
    low: int
    high: int

    @property
    def membership_position(self) -> int:
        return self.membership.stream_ordering or 0


def plan_rooms(memberships: Iterable[Membership], *, since: int | None, current: int,
               room_filter: RoomFilter, full_state: bool) -> list[RoomPlan]:
    """`since`/`current`: the events-stream positions of the sync's range."""
    plans = []
    for m in memberships:
        if not room_filter.matches_room(m.room_id):
            continue
        plan = _plan(m, since, current, room_filter.include_leave, full_state)
        if plan is not None:
            plans.append(plan)
    return plans


def _plan(m: Membership, since: int | None, current: int, include_leave: bool,
          full_state: bool) -> RoomPlan | None:
    position = m.stream_ordering or 0
    changed = since is None or position > since
    if m.membership == JOIN:
        # full_state sends all the state but keeps the timeline incremental (spec).
        fresh = since is None or position > since
        return RoomPlan(m.room_id, JOIN, m, fresh or full_state, 0 if fresh else since or 0,
                        current)
    if m.membership in (INVITE, KNOCK):
        if not changed:
            return None
        section = INVITE if m.membership == INVITE else KNOCK
        return RoomPlan(m.room_id, section, m, True, 0, position)
    if m.membership in ("leave", "ban"):
        if m.forgotten:
            return None
        newly_left = since is not None and position > since
        if not newly_left and not ((since is None or full_state) and include_leave):
            return None
        # The timeline stops at the leave: what came after is not theirs to see.
        return RoomPlan(m.room_id, LEAVE, m, since is None or full_state,
                        0 if since is None else since, min(position, current))
    return None
