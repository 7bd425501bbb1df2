"""Walking a room's timeline in either direction, keeping the events a user may see and
a filter matches, until a page is full.

Positions are points between events in the room events stream (`s<N>` tokens): going
backward from N yields events at or before N, going forward from N events after N. The
returned position is just past the last event *examined*, not the last one kept, so the
next page resumes where this one stopped even when the filter skipped events.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from homeserver.rooms.stores import RoomStores
from homeserver.rooms.visibility import VisibilityFilter
from homeserver.storage.database import Connection
from homeserver.storage.events import StoredEvent
from homeserver.sync.filters import RoomEventFilter

# Beyond any stream position (the column is BIGINT).
END_POSITION = 2**62
# Rows examined per request before answering with what was found: a filter that matches
# nothing must not turn one request into a scan of the whole room.
MAX_EXAMINED = 1000


@attrs.frozen
class ScanResult:
    events: list[StoredEvent]
    # Where the next page in the same direction starts.
    position: int
    # True when no event remains between `position` and the bound.
    exhausted: bool


def filter_view(event: StoredEvent) -> Mapping[str, Any]:
    """What RoomEventFilter.matches reads, without formatting the event."""
    pdu = event.pdu
    return {"type": pdu.type, "sender": pdu.sender, "room_id": pdu.room_id, "content": pdu.content}


class TimelineScanner:
    def __init__(self, stores: RoomStores, visibility: VisibilityFilter):
        self._stores = stores
        self._visibility = visibility

    async def scan(self, conn: Connection, user_id: str, room_id: str, *, backward: bool,
                   start: int, bound: int, limit: int,
                   event_filter: RoomEventFilter) -> ScanResult:
        """Up to `limit` visible, matching events from `start` towards `bound` (exclusive
        going backward, inclusive going forward), in walking order."""
        kept: list[StoredEvent] = []
        position = start
        examined = 0
        size = limit
        while len(kept) < limit and examined < MAX_EXAMINED:
            rows = await self._fetch(conn, room_id, backward, position, bound, size)
            visible = {e.event_id for e in await self._visibility.filter(conn, user_id, rows)}
            consumed = 0
            for row in rows:
                consumed += 1
                assert row.stream_ordering is not None
                position = row.stream_ordering - 1 if backward else row.stream_ordering
                if row.event_id in visible and event_filter.matches(filter_view(row)):
                    kept.append(row)
                    if len(kept) == limit:
                        break
            examined += consumed
            if len(rows) < size and consumed == len(rows):
                return ScanResult(kept, position, True)
            # Filtered pages widen the next fetch, so sparse matches cost few queries.
            size = min(max(size * 2, limit - len(kept)), MAX_EXAMINED)
        return ScanResult(kept, position, False)

    async def _fetch(self, conn: Connection, room_id: str, backward: bool, position: int,
                     bound: int, size: int) -> list[StoredEvent]:
        events = self._stores.events
        if backward:
            return await events.room_events_backward(conn, room_id, position, bound, size)
        return await events.room_events_forward(conn, room_id, position, bound, size)
