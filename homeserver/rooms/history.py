"""Room history for clients: paginating the timeline and the context around an event.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3roomsroomidmessages
and #get_matrixclientv3roomsroomidcontexteventid . Tokens are room-events stream
positions (homeserver/rooms/tokens.py), so /sync's `prev_batch` and these endpoints'
`start`/`end` are interchangeable. History visibility applies to every event returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from homeserver.errors import NotFound
from homeserver.rooms.access import RoomAccess
from homeserver.rooms.event_loader import ClientEventLoader
from homeserver.rooms.stores import RoomStores
from homeserver.rooms.timeline_scan import END_POSITION, TimelineScanner, filter_view
from homeserver.rooms.tokens import parse_stream_position, stream_token
from homeserver.rooms.visibility import VisibilityFilter
from homeserver.storage import streams
from homeserver.storage.database import Connection, Database
from homeserver.storage.events import StoredEvent
from homeserver.sync.filters import MAX_LIMIT, RoomEventFilter

JsonDict = dict[str, Any]
DEFAULT_LIMIT = 10
MEMBER = "m.room.member"


@attrs.frozen
class MessagesQuery:
    backward: bool
    from_token: str | None = None
    to_token: str | None = None
    # None: the filter's limit, else DEFAULT_LIMIT.
    limit: int | None = None
    event_filter: RoomEventFilter = RoomEventFilter()


def _limit(requested: int | None, event_filter: RoomEventFilter) -> int:
    if requested is not None:
        return min(requested, MAX_LIMIT)
    return event_filter.limit_or(DEFAULT_LIMIT)


class RoomHistory:
    def __init__(self, db: Database, stores: RoomStores, access: RoomAccess,
                 loader: ClientEventLoader, visibility: VisibilityFilter):
        self._db = db
        self._stores = stores
        self._access = access
        self._loader = loader
        self._visibility = visibility
        self._scanner = TimelineScanner(stores, visibility)

    async def messages(self, user_id: str, device_id: str | None, room_id: str,
                       query: MessagesQuery) -> JsonDict:
        """GET /rooms/{roomId}/messages — 403 unless the user may read the room."""
        # Tokens first: a garbage token is a 400 whatever the room.
        start = parse_stream_position(query.from_token) if query.from_token else None
        bound = parse_stream_position(query.to_token) if query.to_token else None
        async with self._db.connection() as conn:
            await self._access.visible_state_snapshot(conn, room_id, user_id)
            if start is None:
                start = await self._default_start(conn, room_id, user_id) if query.backward else 0
            if bound is None:
                bound = 0 if query.backward else END_POSITION
            event_filter = query.event_filter
            result = await self._scanner.scan(
                conn, user_id, room_id, backward=query.backward, start=start, bound=bound,
                limit=_limit(query.limit, event_filter), event_filter=event_filter)
            body: JsonDict = {
                "chunk": await self._loader.format(conn, result.events, user_id=user_id,
                                                   device_id=device_id),
                "start": query.from_token or stream_token(start),
            }
            if not result.exhausted:
                body["end"] = stream_token(result.position)
            if event_filter.lazy_load_members:
                body["state"] = await self._member_state(conn, user_id, device_id, result.events)
        return body

    async def context(self, user_id: str, device_id: str | None, room_id: str, event_id: str,
                      limit: int | None, event_filter: RoomEventFilter) -> JsonDict:
        """GET /rooms/{roomId}/context/{eventId} — 404 for an unknown or invisible event.
        The limit is shared between the events before and after (spec); the filter
        applies to them and to `state`, not to the event itself."""
        total = _limit(limit, event_filter)
        async with self._db.connection() as conn:
            event = await self._visible_event(conn, user_id, room_id, event_id)
            assert event.stream_ordering is not None
            position = event.stream_ordering
            before = await self._scanner.scan(
                conn, user_id, room_id, backward=True, start=position - 1, bound=0,
                limit=total // 2, event_filter=event_filter)
            after = await self._scanner.scan(
                conn, user_id, room_id, backward=False, start=position, bound=END_POSITION,
                limit=total - total // 2, event_filter=event_filter)
            last = after.events[-1] if after.events else event
            formatted = await self._loader.format(
                conn, [event, *before.events, *after.events], user_id=user_id, device_id=device_id)
            senders = {e.pdu.sender for e in (event, *before.events, *after.events)}
            state = await self._state_at(conn, user_id, device_id, last, event_filter, senders)
        n_before = len(before.events)
        return {
            "event": formatted[0],
            "events_before": formatted[1:1 + n_before],
            "events_after": formatted[1 + n_before:],
            "start": stream_token(before.position),
            "end": stream_token(after.position),
            "state": state,
        }

    async def _visible_event(self, conn: Connection, user_id: str, room_id: str,
                             event_id: str) -> StoredEvent:
        stored = await self._stores.events.get(conn, event_id)
        if (stored is None or stored.pdu.room_id != room_id or stored.outlier
                or stored.stream_ordering is None or stored.pdu.rejected_reason is not None
                or not await self._visibility.filter(conn, user_id, [stored])):
            raise NotFound("Event not found")
        return stored

    async def _default_start(self, conn: Connection, room_id: str, user_id: str) -> int:
        """Backward pagination without `from` starts at the newest event the user may
        see: the room's end, or their departure unless the room is world-readable."""
        position = await streams.current_position(conn, "events")
        membership = await self._access.membership(conn, room_id, user_id)
        if (membership is not None and membership.membership in ("leave", "ban")
                and membership.stream_ordering is not None):
            visibility = await self._access.current_content(conn, room_id, "m.room.history_visibility")
            if not visibility or visibility.get("history_visibility") != "world_readable":
                position = min(position, membership.stream_ordering)
        return position

    async def _member_state(self, conn: Connection, user_id: str, device_id: str | None,
                            events: Sequence[StoredEvent]) -> list[JsonDict]:
        """Lazy-loading members: the senders' m.room.member events, as of the newest
        event of the page (every sender has a membership entry by then)."""
        if not events:
            return []
        newest = max(events, key=lambda e: e.stream_ordering or 0)
        event_state = await self._stores.state.get_event_state(conn, newest.event_id)
        if event_state is None:
            return []
        # One query for all members beats one per sender, even in large rooms.
        members = await self._stores.state.get_state_of_type(conn, event_state.after, MEMBER)
        senders = sorted({e.pdu.sender for e in events})
        return await self._load(conn, user_id, device_id, [members[s] for s in senders if s in members])

    async def _state_at(self, conn: Connection, user_id: str, device_id: str | None,
                        event: StoredEvent, event_filter: RoomEventFilter,
                        senders: set[str]) -> list[JsonDict]:
        """The filtered room state after `event`; with lazy loading only the senders'
        memberships among the member events."""
        event_state = await self._stores.state.get_event_state(conn, event.event_id)
        if event_state is None:
            return []
        state = await self._stores.state.get_state(conn, event_state.after)
        lazy = event_filter.lazy_load_members
        wanted = [eid for (etype, key), eid in sorted(state.items())
                  if event_filter.matches_type(etype) and not (lazy and etype == MEMBER and key not in senders)]
        stored = await self._stores.events.get_many(conn, wanted)
        kept = [stored[e] for e in wanted if e in stored and event_filter.matches(filter_view(stored[e]))]
        return await self._loader.format(conn, kept, user_id=user_id, device_id=device_id)

    async def _load(self, conn: Connection, user_id: str, device_id: str | None,
                    event_ids: list[str]) -> list[JsonDict]:
        stored = await self._stores.events.get_many(conn, event_ids)
        return await self._loader.format(conn, [stored[e] for e in event_ids if e in stored],
                                         user_id=user_id, device_id=device_id)
