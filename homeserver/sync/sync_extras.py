"""The non-timeline parts of a sync: ephemeral events, account data and presence.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3sync . Each is
read for the sync's range (since, current] of its own stream; a room the client sees in
full (initial sync, newly joined) gets everything current instead: all receipts, who is
typing, all of its account data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from homeserver.storage.account_data import AccountDataChange, AccountDataStore
from homeserver.storage.database import Connection, Database
from homeserver.storage.sync_queries import SyncQueries
from homeserver.sync.filters import EventFilter
from homeserver.sync.presence import PresenceService
from homeserver.sync.receipts import ReceiptService
from homeserver.sync.room_plan import JOIN, LEAVE, RoomPlan
from homeserver.sync.sync_result import SyncRequest
from homeserver.sync.tokens import ACCOUNT_DATA, PRESENCE, RECEIPTS, TYPING, SyncToken
from homeserver.sync.typing import TypingService

JsonDict = dict[str, Any]
PRESENCE_TYPE = "m.presence"


@attrs.frozen
class Extras:
    ephemeral: dict[str, list[JsonDict]]
    room_account_data: dict[str, list[JsonDict]]
    global_account_data: list[JsonDict]
    presence: list[JsonDict]


def _apply(event_filter: EventFilter, events: list[JsonDict]) -> list[JsonDict]:
    kept = [e for e in events if event_filter.matches(e)]
    return kept if event_filter.limit is None else kept[:event_filter.limit_or(0)]


class SyncExtras:
    def __init__(self, account_data: AccountDataStore, typing: TypingService,
                 receipts: ReceiptService, presence: PresenceService,
                 queries: SyncQueries | None = None):
        self._account_data = account_data
        self._typing = typing
        self._receipts = receipts
        self._presence = presence
        self._queries = queries or SyncQueries()

    async def read(self, db: Database, request: SyncRequest, since: SyncToken | None,
                   current: SyncToken, by_section: Mapping[str, list[RoomPlan]]) -> Extras:
        """Takes one connection at a time and none while the receipt and presence
        services take theirs: holding one while waiting for another deadlocks once
        as many syncs do so at once as there are connections (two SQLite readers)."""
        global_data: list[JsonDict] = []
        room_data: dict[str, list[JsonDict]] = {}
        audience = None
        plans = by_section[JOIN] + by_section[LEAVE]
        if self._wants_account_data(since, current, plans) or self._wants_presence(request, since, current):
            async with db.connection() as conn:
                global_data, room_data = await self._account_data_changes(
                    conn, request, since, current, plans)
                audience = await self._presence_audience(conn, request, since, current)
        return Extras(
            ephemeral=await self._ephemeral(request, since, current, by_section[JOIN]),
            room_account_data=room_data,
            global_account_data=global_data,
            presence=await self._presence_events(audience, request, since, current))

    async def _ephemeral(self, request: SyncRequest, since: SyncToken | None,
                         current: SyncToken, plans: Sequence[RoomPlan]) -> dict[str, list[JsonDict]]:
        user_id = request.user_id
        full = [p.room_id for p in plans if p.full or since is None]
        rest = [p.room_id for p in plans if not (p.full or since is None)]
        typing = self._typing.changes_since(None, full)
        receipts = await self._receipts.receipts_initial(user_id, full, current[RECEIPTS]) if full else {}
        if rest and since is not None:
            typing.update(self._typing.changes_since(since[TYPING], rest))
            if current[RECEIPTS] > since[RECEIPTS]:
                receipts.update(await self._receipts.receipts_since(
                    user_id, rest, since[RECEIPTS], current[RECEIPTS]))
        ephemeral_filter = request.filter.room.ephemeral
        out: dict[str, list[JsonDict]] = {}
        for plan in plans:
            events = [e for e in (typing.get(plan.room_id), receipts.get(plan.room_id)) if e]
            if events and ephemeral_filter.matches_room(plan.room_id):
                kept = _apply(ephemeral_filter, events)
                if kept:
                    out[plan.room_id] = kept
        return out

    async def _account_data_changes(
            self, conn: Connection, request: SyncRequest, since: SyncToken | None,
            current: SyncToken, plans: Sequence[RoomPlan],
    ) -> tuple[list[JsonDict], dict[str, list[JsonDict]]]:
        user_id = request.user_id
        upper = current[ACCOUNT_DATA]
        start = 0 if since is None else since[ACCOUNT_DATA]
        changes: list[AccountDataChange] = []
        if start < upper:
            changes = await self._account_data.changes_since(conn, user_id, start)
        # A room the client now sees in full gets all its account data, however old.
        full_rooms = {p.room_id for p in plans if p.full} if since is not None else set()
        if full_rooms:
            seen = {(c.room_id, c.type) for c in changes}
            changes += [c for c in await self._account_data.changes_since(conn, user_id, 0)
                        if c.room_id in full_rooms and (c.room_id, c.type) not in seen]
        changes = [c for c in changes if c.stream_id <= upper]
        global_events = _apply(request.filter.account_data,
                               [{"type": c.type, "content": c.content}
                                for c in changes if c.room_id is None])
        room_filter = request.filter.room.account_data
        wanted = {p.room_id for p in plans}
        per_room: dict[str, list[JsonDict]] = {}
        for c in changes:
            if c.room_id is not None and c.room_id in wanted:
                per_room.setdefault(c.room_id, []).append(
                    {"type": c.type, "content": c.content, "room_id": c.room_id})
        rooms = {}
        for room_id, events in per_room.items():
            kept = [{"type": e["type"], "content": e["content"]} for e in _apply(room_filter, events)]
            if kept:
                rooms[room_id] = kept
        return global_events, rooms

    @staticmethod
    def _wants_account_data(since: SyncToken | None, current: SyncToken,
                            plans: Sequence[RoomPlan]) -> bool:
        """Whether the account-data stream moved, or a room is seen in full."""
        start = 0 if since is None else since[ACCOUNT_DATA]
        return start < current[ACCOUNT_DATA] or (since is not None and any(p.full for p in plans))

    @staticmethod
    def _wants_presence(request: SyncRequest, since: SyncToken | None, current: SyncToken) -> bool:
        """Whether the presence stream moved and the filter lets presence through."""
        start = 0 if since is None else since[PRESENCE]
        presence_filter = request.filter.presence
        return (start < current[PRESENCE] and presence_filter.limit != 0
                and presence_filter.matches_type(PRESENCE_TYPE))

    async def _presence_audience(self, conn: Connection, request: SyncRequest,
                                 since: SyncToken | None, current: SyncToken) -> set[str] | None:
        """The users whose presence this sync may show; None when it shows none."""
        if not self._wants_presence(request, since, current):
            return None
        return set(await self._queries.shared_room_users(conn, request.user_id)) | {request.user_id}

    async def _presence_events(self, audience: set[str] | None, request: SyncRequest,
                               since: SyncToken | None, current: SyncToken) -> list[JsonDict]:
        if audience is None:
            return []
        start = 0 if since is None else since[PRESENCE]
        events = await self._presence.presence_since(start, current[PRESENCE], audience)
        return _apply(request.filter.presence, events)
