"""Reading relationships: an event's children and a room's threads.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1roomsroomidrelationseventid
and #get_matrixclientv1roomsroomidthreads . Pagination tokens are room-events stream
positions, like /messages', so tokens from /messages and /sync work here too.
"""

from __future__ import annotations

from typing import Any

import attrs

from homeserver.errors import InvalidParam, NotFound
from homeserver.rooms.access import RoomAccess
from homeserver.rooms.event_loader import ClientEventLoader
from homeserver.rooms.stores import RoomStores
from homeserver.rooms.timeline_scan import END_POSITION
from homeserver.rooms.tokens import parse_stream_position, stream_token
from homeserver.rooms.visibility import VisibilityFilter
from homeserver.storage.database import Database

JsonDict = dict[str, Any]
# The spec asks for at least 3 levels when recursing; more buys little and costs a lot.
RECURSION_DEPTH = 3
DEFAULT_RELATIONS_LIMIT = 50
DEFAULT_THREADS_LIMIT = 20
MAX_LIMIT = 100
INCLUDE = ("all", "participated")


@attrs.frozen
class RelationsQuery:
    rel_type: str | None = None
    event_type: str | None = None
    from_token: str | None = None
    to_token: str | None = None
    limit: int | None = None
    backward: bool = True
    # None when the client did not send `recurse` (then `recursion_depth` is absent).
    recurse: bool | None = None


class RelationsReader:
    def __init__(self, db: Database, stores: RoomStores, access: RoomAccess,
                 loader: ClientEventLoader, visibility: VisibilityFilter):
        self._db = db
        self._stores = stores
        self._access = access
        self._loader = loader
        self._visibility = visibility

    async def relations(self, user_id: str, device_id: str | None, room_id: str, event_id: str,
                        query: RelationsQuery) -> JsonDict:
        """GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]] — 404 unless
        the parent exists in the room and the user may see it."""
        start = parse_stream_position(query.from_token) if query.from_token else None
        bound = parse_stream_position(query.to_token) if query.to_token else None
        backward = query.backward
        if start is None:
            start = END_POSITION if backward else 0
        if bound is None:
            bound = 0 if backward else END_POSITION
        limit = min(query.limit if query.limit is not None else DEFAULT_RELATIONS_LIMIT, MAX_LIMIT)
        depth = RECURSION_DEPTH if query.recurse else 1
        async with self._db.connection() as conn:
            parent = await self._stores.events.get(conn, event_id)
            if (parent is None or parent.pdu.room_id != room_id or parent.outlier
                    or parent.pdu.rejected_reason is not None
                    or not await self._visibility.filter(conn, user_id, [parent])):
                raise NotFound("Event not found")
            rows = await self._stores.relations.children(
                conn, event_id, room_id, rel_type=query.rel_type, event_type=query.event_type,
                depth=depth, forward=not backward, from_position=start, to_position=bound,
                limit=limit)
            stored = await self._stores.events.get_many(conn, [r[0] for r in rows])
            children = await self._visibility.filter(conn, user_id, [stored[r[0]] for r in rows if r[0] in stored])
            chunk = await self._loader.format(conn, children, user_id=user_id, device_id=device_id)
        body: JsonDict = {"chunk": chunk}
        if rows and len(rows) == limit:
            last = rows[-1][1]
            body["next_batch"] = stream_token(last - 1 if backward else last)
        if query.from_token:
            body["prev_batch"] = query.from_token
        if query.recurse is not None:
            body["recursion_depth"] = depth
        return body

    async def threads(self, user_id: str, device_id: str | None, room_id: str, *,
                      include: str = "all", from_token: str | None = None,
                      limit: int | None = None) -> JsonDict:
        """GET /rooms/{roomId}/threads — the thread roots by latest reply, newest first."""
        if include not in INCLUDE:
            raise InvalidParam("include must be 'all' or 'participated'")
        at = parse_stream_position(from_token) if from_token else END_POSITION
        limit = min(limit if limit is not None else DEFAULT_THREADS_LIMIT, MAX_LIMIT)
        async with self._db.connection() as conn:
            await self._access.visible_state_snapshot(conn, room_id, user_id)
            rows = await self._stores.relations.thread_roots(
                conn, room_id, at_or_before=at, limit=limit,
                participant=user_id if include == "participated" else None)
            stored = await self._stores.events.get_many(conn, [r.root_id for r in rows])
            roots = [stored[r.root_id] for r in rows if r.root_id in stored]
            roots = [r for r in roots if not r.outlier and r.pdu.rejected_reason is None]
            roots = await self._visibility.filter(conn, user_id, roots)
            chunk = await self._loader.format(conn, roots, user_id=user_id, device_id=device_id)
        body: JsonDict = {"chunk": chunk}
        if rows and len(rows) == limit:
            body["next_batch"] = stream_token(rows[-1].latest_stream_ordering - 1)
        return body
