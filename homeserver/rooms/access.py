"""Read-side questions every room operation asks: does the room exist, what is this user's
membership, what may they see, what power do they have."""

from __future__ import annotations

from typing import Any

import attrs

from homeserver.errors import Forbidden
from homeserver.events.pdu import Pdu
from homeserver.events.room_versions import RoomVersion, get_room_version
from homeserver.rooms.stores import RoomStores
from homeserver.state.power_levels import (
    get_creators,
    get_named_level,
    get_required_level,
    get_user_power_level,
)
from homeserver.storage.database import Connection, Database
from homeserver.storage.memberships import Membership
from homeserver.storage.rooms import RoomRow

NOT_IN_ROOM = "You are not in this room"


@attrs.frozen
class PowerView:
    """The room's m.room.power_levels and m.room.create, to answer power questions."""

    power_levels: Pdu | None
    create: Pdu | None

    def level(self, user_id: str) -> int | float:
        return get_user_power_level(user_id, self.power_levels, self.create)

    def named(self, name: str) -> int:
        return get_named_level(name, self.power_levels)

    def required(self, event_type: str, is_state: bool) -> int:
        return get_required_level(event_type, is_state, self.power_levels)

    def creators(self) -> set[str]:
        return get_creators(self.create)


class RoomAccess:
    def __init__(self, db: Database, stores: RoomStores):
        self._db = db
        self._stores = stores

    async def room(self, conn: Connection, room_id: str) -> RoomRow | None:
        return await self._stores.rooms.get(conn, room_id)

    async def room_version(self, conn: Connection, room_id: str) -> RoomVersion | None:
        room = await self._stores.rooms.get(conn, room_id)
        return None if room is None else get_room_version(room.room_version)

    async def membership(self, conn: Connection, room_id: str, user_id: str) -> Membership | None:
        return await self._stores.memberships.get(conn, room_id, user_id)

    async def require_joined(self, conn: Connection, room_id: str, user_id: str) -> RoomRow:
        """The room, if the user is joined to it; otherwise 403 (unknown rooms included,
        so the answer does not reveal which rooms exist)."""
        room = await self._stores.rooms.get(conn, room_id)
        membership = await self._stores.memberships.get(conn, room_id, user_id)
        if room is None or membership is None or membership.membership != "join":
            raise Forbidden(NOT_IN_ROOM)
        return room

    async def current_event(self, conn: Connection, room_id: str, event_type: str,
                            state_key: str = "") -> Pdu | None:
        event_id = await self._stores.current_state.get_entry(conn, room_id, event_type, state_key)
        if event_id is None:
            return None
        stored = await self._stores.events.get(conn, event_id)
        return None if stored is None else stored.pdu

    async def current_content(self, conn: Connection, room_id: str, event_type: str,
                              state_key: str = "") -> dict[str, Any] | None:
        pdu = await self.current_event(conn, room_id, event_type, state_key)
        return None if pdu is None else pdu.content

    async def power(self, conn: Connection, room_id: str) -> PowerView:
        return PowerView(await self.current_event(conn, room_id, "m.room.power_levels"),
                         await self.current_event(conn, room_id, "m.room.create"))

    async def visible_state_snapshot(self, conn: Connection, room_id: str, user_id: str) -> int:
        """The snapshot of room state this user may read: the current state while joined
        (or if the room is world-readable), the state when they left if they left or were
        banned. Spec: GET /rooms/{roomId}/state ("If the user has left the room then the
        state is taken from the state of the room when they left")."""
        room = await self._stores.rooms.get(conn, room_id)
        if room is None or room.current_snapshot_id is None:
            raise Forbidden(NOT_IN_ROOM)
        membership = await self._stores.memberships.get(conn, room_id, user_id)
        if membership is not None and membership.membership == "join":
            return room.current_snapshot_id
        visibility = await self.current_content(conn, room_id, "m.room.history_visibility")
        if visibility is not None and visibility.get("history_visibility") == "world_readable":
            return room.current_snapshot_id
        if membership is not None and membership.membership in ("leave", "ban"):
            event_state = await self._stores.state.get_event_state(conn, membership.event_id)
            if event_state is not None and await self._was_joined(conn, event_state.before, user_id):
                return event_state.after
        raise Forbidden(NOT_IN_ROOM)

    async def _was_joined(self, conn: Connection, snapshot_id: int, user_id: str) -> bool:
        event_id = await self._stores.state.get_entry(conn, snapshot_id, "m.room.member", user_id)
        if event_id is None:
            return False
        member = await self._stores.memberships.by_event(conn, event_id)
        return member is not None and member.membership == "join"
