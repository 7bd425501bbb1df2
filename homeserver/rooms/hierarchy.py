"""GET /rooms/{roomId}/hierarchy: a depth-first walk over the space tree of local rooms.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1roomsroomidhierarchy .
Pagination is stateless: `next_batch` holds the walk's parameters and how many rooms were
already returned, and the next page walks again and skips those. The server keeps no
sessions, and a tree that changes between pages at worst shifts a room by a page. Rooms
this server has no state for are left out (they need federation to summarise).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import attrs

from homeserver.errors import Forbidden, InvalidParam
from homeserver.rooms.space_summary import RoomSummary, SpaceChild, SpaceSummaries
from homeserver.storage.database import Connection, Database

JsonDict = dict[str, Any]
DEFAULT_LIMIT = 50
MAX_LIMIT = 50
MAX_DEPTH = 50
# Rooms one request may visit (returned or skipped), so a huge or deep tree costs a
# bounded amount of work per page; the walk stops there without a next_batch.
MAX_ROOMS_VISITED = 2000


@attrs.frozen
class HierarchyQuery:
    room_id: str
    suggested_only: bool = False
    limit: int | None = None
    max_depth: int | None = None
    from_token: str | None = None


@attrs.frozen
class _Visit:
    summary: RoomSummary
    children: list[SpaceChild]


def encode_token(query: HierarchyQuery, offset: int) -> str:
    raw = json.dumps([query.room_id, query.suggested_only, query.max_depth, offset],
                     separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(query: HierarchyQuery) -> int:
    """The number of rooms to skip; the token must come from the same walk."""
    if query.from_token is None:
        return 0
    token = query.from_token
    try:
        room_id, suggested_only, max_depth, offset = json.loads(
            base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise ValueError(token)
    except (ValueError, TypeError, binascii.Error):
        raise InvalidParam("Unknown 'from' token") from None
    if room_id != query.room_id:
        raise InvalidParam("The 'from' token belongs to another room's hierarchy")
    if suggested_only != query.suggested_only or max_depth != query.max_depth:
        raise InvalidParam("suggested_only and max_depth cannot change on paginated requests")
    return offset


class SpaceHierarchy:
    def __init__(self, db: Database, summaries: SpaceSummaries):
        self._db = db
        self._summaries = summaries

    async def get_hierarchy(self, user_id: str, query: HierarchyQuery) -> JsonDict:
        """GET /_matrix/client/v1/rooms/{roomId}/hierarchy"""
        if query.limit is not None and query.limit < 1:
            raise InvalidParam("'limit' must be at least 1")
        if query.max_depth is not None and query.max_depth < 0:
            raise InvalidParam("'max_depth' must not be negative")
        skip = decode_token(query)
        limit = min(query.limit or DEFAULT_LIMIT, MAX_LIMIT)
        rooms: list[JsonDict] = []
        more = False
        async with self._db.connection() as conn:
            index = 0
            walk = aclosing(self._walk(conn, user_id, query))
            async with walk as visits:
                async for visit in visits:
                    if index >= skip + limit:
                        more = True
                        break
                    if index >= skip:
                        num_joined = await self._summaries.num_joined(conn, visit.summary.room_id)
                        rooms.append(visit.summary.to_json(num_joined, visit.children))
                    index += 1
        body: JsonDict = {"rooms": rooms}
        if more:
            body["next_batch"] = encode_token(query, skip + len(rooms))
        return body

    async def _walk(self, conn: Connection, user_id: str,
                    query: HierarchyQuery) -> AsyncGenerator[_Visit, None]:
        """The rooms the user may see, depth first, children in the space's order; each
        room once, so a cycle of spaces ends."""
        max_depth = MAX_DEPTH if query.max_depth is None else min(query.max_depth, MAX_DEPTH)
        stack: list[tuple[str, int]] = [(query.room_id, 0)]
        seen: set[str] = set()
        while stack and len(seen) < MAX_ROOMS_VISITED:
            room_id, depth = stack.pop()
            if room_id in seen:
                continue
            seen.add(room_id)
            summary = await self._summaries.summary(conn, room_id, user_id)
            if summary is None or not await self._summaries.may_see(conn, summary, user_id):
                if depth == 0:
                    # Also for unknown rooms, so the answer does not reveal which exist.
                    raise Forbidden("You are not allowed to view this room")
                continue
            children = [c for c in summary.children if c.suggested or not query.suggested_only]
            yield _Visit(summary, children)
            if depth < max_depth:
                stack.extend((c.room_id, depth + 1) for c in reversed(children))
