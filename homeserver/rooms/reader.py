"""Reading rooms: single events, state, members, joined rooms.

Spec: https://spec.matrix.org/v1.19/client-server-api/#getting-events-for-a-room .
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import Forbidden, InvalidParam, NotFound
from homeserver.rooms.access import NOT_IN_ROOM, RoomAccess
from homeserver.rooms.event_loader import ClientEventLoader
from homeserver.rooms.stores import RoomStores
from homeserver.rooms.tokens import parse_stream_position
from homeserver.rooms.visibility import VisibilityFilter
from homeserver.storage.database import Connection, Database

JsonDict = dict[str, Any]
MEMBERSHIPS = ("join", "invite", "leave", "ban", "knock")


class RoomReader:
    def __init__(self, db: Database, stores: RoomStores, access: RoomAccess,
                 loader: ClientEventLoader, visibility: VisibilityFilter):
        self._db = db
        self._stores = stores
        self._access = access
        self._loader = loader
        self._visibility = visibility

    async def get_event(self, user_id: str, device_id: str | None, room_id: str,
                        event_id: str) -> JsonDict:
        """GET /rooms/{roomId}/event/{eventId} — 404 unless it exists and is visible."""
        async with self._db.connection() as conn:
            stored = await self._stores.events.get(conn, event_id)
            if (stored is None or stored.pdu.room_id != room_id or stored.outlier
                    or stored.pdu.rejected_reason is not None):
                raise NotFound("Event not found")
            if not await self._visibility.filter(conn, user_id, [stored]):
                raise NotFound("Event not found")
            [event] = await self._loader.format(conn, [stored], user_id=user_id, device_id=device_id)
        return event

    async def get_state(self, user_id: str, room_id: str) -> list[JsonDict]:
        """GET /rooms/{roomId}/state"""
        async with self._db.connection() as conn:
            snapshot = await self._access.visible_state_snapshot(conn, room_id, user_id)
            state = await self._stores.state.get_state(conn, snapshot)
            return await self._events(conn, list(state.values()), user_id)

    async def get_state_event(self, user_id: str, room_id: str, event_type: str,
                              state_key: str) -> JsonDict:
        """GET /rooms/{roomId}/state/{eventType}/{stateKey} — the client event; the
        adapter returns its content unless `format=event`."""
        async with self._db.connection() as conn:
            snapshot = await self._access.visible_state_snapshot(conn, room_id, user_id)
            event_id = await self._stores.state.get_entry(conn, snapshot, event_type, state_key)
            if event_id is None:
                raise NotFound("Event not found")
            events = await self._events(conn, [event_id], user_id)
        if not events:
            raise NotFound("Event not found")
        return events[0]

    async def members(self, user_id: str, room_id: str, *, at: str | None = None,
                      membership: str | None = None,
                      not_membership: str | None = None) -> list[JsonDict]:
        """GET /rooms/{roomId}/members"""
        for name, value in (("membership", membership), ("not_membership", not_membership)):
            if value is not None and value not in MEMBERSHIPS:
                raise InvalidParam(f"Invalid {name}")
        async with self._db.connection() as conn:
            snapshot = await self._access.visible_state_snapshot(conn, room_id, user_id)
            if at is not None:
                snapshot = await self._snapshot_at(conn, room_id, user_id, parse_stream_position(at), snapshot)
            members = await self._stores.state.get_state_of_type(conn, snapshot, "m.room.member")
            events = await self._events(conn, list(members.values()), user_id)
        return [e for e in events
                if (membership is None or e["content"].get("membership") == membership)
                and (not_membership is None or e["content"].get("membership") != not_membership)]

    async def joined_members(self, user_id: str, room_id: str) -> JsonDict:
        """GET /rooms/{roomId}/joined_members"""
        async with self._db.connection() as conn:
            await self._access.visible_state_snapshot(conn, room_id, user_id)
            rows = await self._stores.memberships.members(conn, room_id, ("join",))
            pdus = await self._stores.events.get_pdus(conn, [m.event_id for m in rows])
        joined: JsonDict = {}
        for row in rows:
            content = pdus[row.event_id].content if row.event_id in pdus else {}
            # Both are optional strings in the spec: absent, not null, when unset.
            joined[row.user_id] = {
                key: content[source] for key, source in
                (("display_name", "displayname"), ("avatar_url", "avatar_url"))
                if isinstance(content.get(source), str)}
        return {"joined": joined}

    async def joined_rooms(self, user_id: str) -> list[str]:
        """GET /joined_rooms"""
        async with self._db.connection() as conn:
            rows = await self._stores.memberships.rooms_for_user(conn, user_id, ("join",))
        return [m.room_id for m in rows]

    async def is_joined(self, user_id: str, room_id: str) -> bool:
        async with self._db.connection() as conn:
            membership = await self._stores.memberships.get(conn, room_id, user_id)
        return membership is not None and membership.membership == "join"

    async def event_position(self, room_id: str, event_id: str) -> int | None:
        """The event's stream ordering if it is a timeline event of this room."""
        async with self._db.connection() as conn:
            stored = await self._stores.events.get(conn, event_id)
        if stored is None or stored.pdu.room_id != room_id:
            return None
        return stored.stream_ordering

    async def _snapshot_at(self, conn: Connection, room_id: str, user_id: str, position: int,
                           visible: int) -> int:
        """The state at a stream position, but never later than what the user may see."""
        current = await self._access.membership(conn, room_id, user_id)
        if current is not None and current.membership != "join" and current.stream_ordering is not None:
            position = min(position, current.stream_ordering)
        event_id = await self._stores.events.last_event_at(conn, room_id, position)
        if event_id is None:
            raise Forbidden(NOT_IN_ROOM)
        event_state = await self._stores.state.get_event_state(conn, event_id)
        return visible if event_state is None else event_state.after

    async def _events(self, conn: Connection, event_ids: list[str], user_id: str) -> list[JsonDict]:
        stored = await self._stores.events.get_many(conn, event_ids)
        ordered = [stored[e] for e in event_ids if e in stored]
        return await self._loader.format(conn, ordered, user_id=user_id, device_id=None)
