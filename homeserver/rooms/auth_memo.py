"""The auth events and verdict of a room's plain events, kept per sender and state.

Spec: https://spec.matrix.org/v1.19/rooms/v12/#authorization-rules . For an event that
is neither a state event nor a redaction, what the rules check is the create event, the
auth events chosen from the state before it (the sender's membership and the power
levels), its sender, its type and its room (state/auth_rules.py: rules 3-5, 6 and 9):
nothing of its content, prev events or depth. So every such event of one sender and
type built on one state snapshot gets the same auth events and the same verdict, and a
busy room's sends need not choose and check them one by one (rooms/persistence.py).

A snapshot never changes once committed; a rolled-back one's ID may be handed out again
on SQLite (storage/state.py), so the persister keeps entries only from committed
batches, as it does its state reads. Only verdicts that allowed the event are kept: a
refused send is checked again (and refused with its own reason) each time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import attrs

from homeserver.events.pdu import Pdu
from homeserver.rooms.room_state import StateKey

# (state snapshot, sender, event type, whether the sender had to be joined)
MemoKey = tuple[int, str, str, bool]
# One per room, sender and event type in use: a few hundred bytes each (the PDUs are
# shared with the other caches).
AUTH_MEMO_SIZE = 1024


@attrs.frozen
class AllowedAuth:
    """What building and checking one such event chose: its auth event IDs (in order),
    the same events by state key, the create event, and every event loaded for them."""

    auth_ids: tuple[str, ...]
    auth_map: Mapping[StateKey, Pdu]
    create: Pdu | None
    pdus: Mapping[str, Pdu]


def memo_key(fields: Mapping[str, object], snapshot_id: int,
             require_joined: bool) -> MemoKey | None:
    """The key an event's verdict is kept under, or None if it must be checked itself."""
    event_type = fields["type"]
    if fields.get("state_key") is not None or event_type == "m.room.redaction":
        return None
    sender = fields["sender"]
    assert isinstance(event_type, str) and isinstance(sender, str)
    return (snapshot_id, sender, event_type, require_joined)


class AuthMemo:
    """Committed batches' allowed verdicts (LRU)."""

    def __init__(self, size: int = AUTH_MEMO_SIZE):
        self._size = size
        self._entries: OrderedDict[MemoKey, AllowedAuth] = OrderedDict()

    def get(self, key: MemoKey) -> AllowedAuth | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def remember(self, entries: Mapping[MemoKey, AllowedAuth]) -> None:
        """A committed batch's verdicts."""
        for key, entry in entries.items():
            self._entries[key] = entry
            self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
