"""POST /search, category room_events: full-text search over the rooms a user is in.

Spec: https://spec.matrix.org/v1.19/client-server-api/#server-side-search . Only rooms
the user is joined to now are searched, and only events they could see (history
visibility at each event); filters and visibility are applied after the index query,
so a page is filled from as many index batches as it takes (bounded, after which the
page is returned short with a `next_batch`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs

from homeserver.rooms.event_loader import ClientEventLoader
from homeserver.rooms.stores import RoomStores
from homeserver.rooms.visibility import VisibilityFilter
from homeserver.search.context import ContextLoader
from homeserver.search.criteria import Cursor, RoomEventsCriteria, parse_next_batch, search_words
from homeserver.storage.database import Connection, Database
from homeserver.storage.events import StoredEvent
from homeserver.storage.search import SearchHit, SearchStore

JsonDict = dict[str, Any]
# Index rows read per round, and rounds per request, when filters reject many hits.
MIN_BATCH = 20
MAX_ROUNDS = 10
_END = 2**62


@attrs.frozen
class Hit:
    event: StoredEvent
    rank: float


class RoomEventSearch:
    def __init__(self, db: Database, store: SearchStore, stores: RoomStores,
                 loader: ClientEventLoader, visibility: VisibilityFilter, context: ContextLoader,
                 index_ready: Callable[[], Awaitable[None]] | None = None):
        self._db = db
        # The indexer runs in the background: waiting for it lets a user find what they
        # just sent (SearchIndexer.caught_up).
        self._index_ready = index_ready
        self._store = store
        self._stores = stores
        self._loader = loader
        self._visibility = visibility
        self._context = context

    async def search(self, user_id: str, device_id: str | None, criteria: RoomEventsCriteria,
                     next_batch: str | None = None) -> JsonDict:
        """POST /search (room_events)"""
        cursor = (parse_next_batch(next_batch, criteria.order_by) if next_batch is not None
                  else Cursor(criteria.order_by, 0 if criteria.order_by == "rank" else _END))
        terms = search_words(criteria.search_term)
        if self._index_ready is not None:
            await self._index_ready()
        async with self._db.connection() as conn:
            joined = await self._stores.memberships.rooms_for_user(conn, user_id, ("join",))
            rooms = [m.room_id for m in joined if criteria.filter.matches_room(m.room_id)]
            if not terms or not rooms:
                return {"results": [], "count": 0, "highlights": terms}
            hits, cursor_after = await self._collect(conn, user_id, rooms, terms, criteria, cursor)
            count = await self._store.count(conn, rooms, terms, criteria.keys)
            body = await self._format(conn, user_id, device_id, criteria, hits)
        body["count"] = count
        body["highlights"] = highlights(terms, [h.event for h in hits], criteria.keys)
        if cursor_after is not None:
            body["next_batch"] = cursor_after.token()
        return body

    async def _collect(self, conn: Connection, user_id: str, rooms: list[str], terms: list[str],
                       criteria: RoomEventsCriteria, cursor: Cursor) -> tuple[list[Hit], Cursor | None]:
        """Up to `limit` visible hits from `cursor` on, and the cursor after the last
        index row examined (None when the index has no more rows)."""
        limit = criteria.limit
        batch = max(MIN_BATCH, limit * 2)
        found: list[Hit] = []
        for _ in range(MAX_ROUNDS):
            rows = await self._fetch(conn, rooms, terms, criteria, cursor, batch)
            accepted = await self._accept(conn, user_id, criteria, rows)
            for row in rows:
                cursor = (Cursor("rank", cursor.value + 1) if cursor.order_by == "rank"
                          else Cursor("recent", row.stream_ordering))
                if row.event_id in accepted:
                    found.append(Hit(accepted[row.event_id], row.rank))
                    if len(found) == limit:
                        more = row is not rows[-1] or len(rows) == batch
                        return found, cursor if more else None
            if len(rows) < batch:
                return found, None
        return found, cursor

    async def _fetch(self, conn: Connection, rooms: list[str], terms: list[str],
                     criteria: RoomEventsCriteria, cursor: Cursor, batch: int) -> list[SearchHit]:
        if cursor.order_by == "rank":
            return await self._store.search_by_rank(conn, rooms, terms, criteria.keys,
                                                    offset=cursor.value, limit=batch)
        return await self._store.search_by_recent(conn, rooms, terms, criteria.keys,
                                                  before=cursor.value, limit=batch)

    async def _accept(self, conn: Connection, user_id: str, criteria: RoomEventsCriteria,
                      rows: Sequence[SearchHit]) -> dict[str, StoredEvent]:
        """The rows' events that pass the filter, are not redacted and are visible."""
        stored = await self._stores.events.get_many(conn, [r.event_id for r in rows])
        candidates = [stored[r.event_id] for r in rows if r.event_id in stored
                      and criteria.filter.matches(_filter_view(stored[r.event_id]))]
        # The indexer removes redacted events; this covers a redaction it has not seen yet.
        redacted = await self._loader.applied_redactions(conn, [e.pdu for e in candidates])
        candidates = [e for e in candidates if e.event_id not in redacted]
        visible = await self._visibility.filter(conn, user_id, candidates)
        return {e.event_id: e for e in visible}

    async def _format(self, conn: Connection, user_id: str, device_id: str | None,
                      criteria: RoomEventsCriteria, hits: list[Hit]) -> JsonDict:
        events = await self._loader.format(conn, [h.event for h in hits], user_id=user_id,
                                           device_id=device_id)
        results = []
        for hit, event in zip(hits, events, strict=True):
            result: JsonDict = {"rank": hit.rank, "result": event}
            if criteria.event_context is not None:
                result["context"] = await self._context.context(
                    conn, user_id, device_id, hit.event, criteria.event_context)
            results.append(result)
        body: JsonDict = {"results": results}
        if criteria.group_by:
            body["groups"] = groups(criteria.group_by, [h.event for h in hits])
        if criteria.include_state:
            rooms = list(dict.fromkeys(h.event.pdu.room_id for h in hits))
            body["state"] = {r: await self._context.current_state(conn, user_id, r) for r in rooms}
        return body


def _filter_view(event: StoredEvent) -> JsonDict:
    pdu = event.pdu
    return {"type": pdu.type, "sender": pdu.sender, "room_id": pdu.room_id, "content": pdu.content}


def groups(group_by: Sequence[str], events: Sequence[StoredEvent]) -> JsonDict:
    """`groups` of the response: result event IDs per room or sender, in result order."""
    out: JsonDict = {}
    for key in group_by:
        by_value: dict[str, JsonDict] = {}
        for event in events:
            value = event.pdu.room_id if key == "room_id" else event.pdu.sender
            group = by_value.setdefault(value, {"results": [], "order": len(by_value) + 1})
            group["results"].append(event.event_id)
        out[key] = by_value
    return out


def highlights(terms: list[str], events: Sequence[StoredEvent], keys: Sequence[str]) -> list[str]:
    """The search words plus the words of the results they matched as prefixes (so a
    client highlights "Martians" for "martian")."""
    found = dict.fromkeys(terms)
    for event in events:
        for key in keys:
            value = event.pdu.content.get(key.removeprefix("content."))
            if isinstance(value, str):
                for word in search_words(value):
                    if any(word.startswith(t) for t in terms):
                        found[word] = None
    return list(found)
