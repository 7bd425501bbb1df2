"""The events of the latest batches sent here, for the syncs those batches wake.

A batch of sends (rooms/persistence.py, LocalBatch) took every stream ordering in
(since, upto], and as of `upto` nothing refers to its events. A sync woken by it from
`since` up to `upto` (an idle room's receivers, or busy ones keeping up) then has its
whole stream window here, with nothing to read; and the events' shared formats as of
`upto` have no redaction or relation to read either. Anything else (a sync further
behind, a position between other writers' events, a later position at which a reaction
or a redaction may exist) reads as before (sync/shared_reads.py).

Consecutive batches also tell when an older event's client format cannot have changed:
only a redaction or a relation changes how an event already in the room is formatted
(`unsigned.redacted_because`, `unsigned.m.relations`, or the `prev_content` of a state
event that replaced a redacted one). If every event between two positions is of kept
batches with neither (`inert_between`), a format read at the first holds at the second:
a woken sync need not read the lazily loaded sender's membership again after each
message (sync/shared_reads.py).

Kept: the last few batches, in memory; each is a handful of events that the rooms
service holds anyway until its callbacks are done.
"""

from __future__ import annotations

from collections import OrderedDict

from homeserver.events.pdu import Pdu
from homeserver.rooms.persistence import LocalBatch
from homeserver.rooms.relations import relation_of
from homeserver.storage.events import StoredEvent

# Syncs woken by a batch ask within a few turns of the loop; a busy room commits a
# batch every few milliseconds.
KEPT_BATCHES = 16


class LocalBatches:
    def __init__(self, kept: int = KEPT_BATCHES):
        self._kept = kept
        # (since, upto) -> the batch's events as a stream window reads them.
        self._windows: OrderedDict[tuple[int, int], list[StoredEvent]] = OrderedDict()
        # event -> the position as of which nothing refers to it (its batch's `upto`).
        self._unreferenced: dict[str, int] = {}
        # upto -> (since, inert) per kept batch; inert: none of its events redacts or
        # relates to any event.
        self._links: dict[int, tuple[int, bool]] = {}

    def note(self, batch: LocalBatch) -> None:
        """A committed batch (noted once per event of it: all but the first are no-ops)."""
        key = (batch.since, batch.upto)
        if key in self._windows:
            return
        self._windows[key] = [StoredEvent(pdu, ordering, outlier=False, replaces_state=None)
                              for pdu, ordering in batch.events]
        for pdu, _ in batch.events:
            self._unreferenced[pdu.event_id] = batch.upto
        self._links[batch.upto] = (batch.since, all(_inert(pdu) for pdu, _ in batch.events))
        while len(self._windows) > self._kept:
            (_, upto), events = self._windows.popitem(last=False)
            self._links.pop(upto, None)
            for event in events:
                self._unreferenced.pop(event.event_id, None)

    def window(self, since: int, upto: int) -> list[StoredEvent] | None:
        """Every timeline event with `since < stream_ordering <= upto`, oldest first, when
        that range is exactly one noted batch; else None (read it)."""
        events = self._windows.get((since, upto))
        return None if events is None else list(events)

    def unreferenced(self, event_id: str, upto: int) -> bool:
        """Whether, as of position `upto`, no event redacts or relates to this one."""
        return self._unreferenced.get(event_id) == upto

    def inert_between(self, since: int, upto: int) -> bool:
        """Whether every event with `since < stream_ordering <= upto` is of kept batches
        none of whose events redacts or relates to any event: then an event at or before
        `since` is formatted as of `upto` just as it was as of `since`."""
        position = upto
        while position > since:
            link = self._links.get(position)
            if link is None or not link[1]:
                return False
            position = link[0]
        return True


def _inert(pdu: Pdu) -> bool:
    return (pdu.type != "m.room.redaction" and pdu.redacts is None
            and relation_of(pdu.content) is None)
