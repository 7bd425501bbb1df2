"""Which rooms' members may have changed after an events position: what lets an
incremental sync leave out a RoomSummary nothing has changed, without reading it.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3sync (RoomSummary:
`m.heroes` "may be omitted" with no change since the last sync; the member counts "may be
omitted" if unchanged, "required otherwise"). The summary is a function of the room's
current member state. Every room event is observed after its commit (`observe`, from the
sync wake-up listener) with the room's current state snapshot after it, and:

- a snapshot that stayed the same: nothing changed (a plain message on a linear room);
- an m.room.member event: the members changed (`member_changed_after` too: a sync shows
  the room for it even when its filter hides the event, or the change would be lost);
- another state event built on the room's only forward extremity whose state is the
  current state (`tip`, known from the room's create event on): only that key changed;
- anything else (a state resolution, a state event of a room whose history this process
  did not see from its creation): not known from then on (`changed_after` None), and the
  summary is sent whenever the room is, as without this log.

The log is told late (behind push evaluation), so a sync may hold a token past an event
not yet observed: a change is marked at `max(position, handed_out + 1)`, `handed_out`
being the highest events position any sync has read as its `current`. Every token that
may have missed the change is below the mark, and its next sync sends the summary again.

A room first observed mid-history (after a restart, or once evicted from the bounded log)
counts as changed then, for showing too: a change before it may not have reached every
client. An events notification the log did not observe first (another process wrote the
event: `seen`) leaves the room not known.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

# Rooms remembered; one entry is a few integers and an event ID.
ROOM_STATE_LOG_SIZE = 50_000


class _Entry:
    __slots__ = ("snapshot", "observed", "changed", "members", "tip")

    def __init__(self, snapshot: int | None, observed: int, changed: int, tip: str | None):
        self.snapshot = snapshot
        self.observed = observed  # the newest position observed in the room
        # The members may have changed after any position below `changed` (None: not
        # known), and did change after any position below `members`.
        self.changed: int | None = changed
        self.members = changed
        # The room's only forward extremity, its state the current state (None: not known).
        self.tip = tip


class RoomStateLog:
    def __init__(self, size: int = ROOM_STATE_LOG_SIZE):
        self._size = size
        self._rooms: OrderedDict[str, _Entry] = OrderedDict()
        self._handed_out = 0

    def note_handed_out(self, position: int) -> None:
        """A sync is about to use `position` as the end of its events range."""
        if position > self._handed_out:
            self._handed_out = position

    def observe(self, room_id: str, position: int, snapshot: int | None, *, event_id: str,
                prev_events: Sequence[str], state: bool, member: bool) -> None:
        """The event at `position` was committed: `snapshot` is the room's current state
        snapshot after it (None: not known); `state`: a state event, `member`: an
        m.room.member event."""
        entry = self._rooms.get(room_id)
        if entry is None:
            # The create event starts the room's only chain; anything else comes mid-history.
            tip = event_id if not prev_events and state else None
            self._rooms[room_id] = _Entry(snapshot, position, self._mark(position), tip)
            if len(self._rooms) > self._size:
                self._rooms.popitem(last=False)
            return
        self._rooms.move_to_end(room_id)
        # Out of order (not expected: a room's events are observed in stream order) is
        # not reasoned about.
        in_order = position > entry.observed
        linear = in_order and entry.tip is not None and list(prev_events) == [entry.tip]
        entry.tip = event_id if linear else None
        if member:
            entry.members = self._mark(position)
            if entry.changed is not None:
                entry.changed = entry.members
        elif not ((in_order and snapshot is not None and snapshot == entry.snapshot)
                  or (linear and state)):
            entry.changed = None
        entry.snapshot = snapshot
        entry.observed = max(entry.observed, position)

    def seen(self, room_id: str, position: int) -> None:
        """An events notification for the room at `position`: one that was not observed
        first (another process wrote the event) leaves the room not known here."""
        entry = self._rooms.get(room_id)
        if entry is not None and entry.observed < position:
            entry.changed = entry.tip = None

    def changed_after(self, room_id: str, since: int) -> bool | None:
        """Whether the room's members may have changed after `since`: True, False, or
        None when that is not known (send the summary, but nothing says it changed)."""
        entry = self._rooms.get(room_id)
        if entry is None or entry.changed is None:
            return None
        return entry.changed > since

    def member_changed_after(self, room_id: str, since: int) -> bool:
        """Whether the room's members changed after `since` (a sync must send the
        summary even if nothing else of the room)."""
        entry = self._rooms.get(room_id)
        return entry is not None and entry.members > since

    def _mark(self, position: int) -> int:
        return max(position, self._handed_out + 1)
