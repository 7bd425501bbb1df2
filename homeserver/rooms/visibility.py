"""Which events a user may see: history visibility and membership at each event.

Spec: https://spec.matrix.org/v1.19/client-server-api/#history-visibility . Both are read
from the state before the event; a user always sees their own membership events (so a
user who left still sees that they left).
"""

from __future__ import annotations

from collections.abc import Sequence

from homeserver.rooms.stores import RoomStores
from homeserver.storage.database import Connection
from homeserver.storage.events import StoredEvent
from homeserver.storage.memberships import Membership


class VisibilityFilter:
    def __init__(self, stores: RoomStores):
        self._stores = stores

    async def filter(self, conn: Connection, user_id: str,
                     events: Sequence[StoredEvent]) -> list[StoredEvent]:
        """The events the user may see, in the given order."""
        current: dict[str, Membership | None] = {}
        at_snapshot: dict[int, tuple[str, str | None]] = {}
        visible = []
        for event in events:
            room_id = event.pdu.room_id
            if room_id not in current:
                current[room_id] = await self._stores.memberships.get(conn, room_id, user_id)
            if await self._visible(conn, user_id, event, current[room_id], at_snapshot):
                visible.append(event)
        return visible

    async def _visible(self, conn: Connection, user_id: str, event: StoredEvent,
                       current: Membership | None,
                       at_snapshot: dict[int, tuple[str, str | None]]) -> bool:
        pdu = event.pdu
        if pdu.type == "m.room.member" and pdu.state_key == user_id:
            return True
        event_state = await self._stores.state.get_event_state(conn, pdu.event_id)
        if event_state is None:
            return False
        if event_state.before not in at_snapshot:
            at_snapshot[event_state.before] = await self._at(conn, event_state.before, user_id)
        history, membership = at_snapshot[event_state.before]
        if history == "world_readable" or membership == "join":
            return True
        if history == "invited" and membership == "invite":
            return True
        if history == "shared" and current is not None:
            if current.membership == "join":
                return True
            # Left since: shared history up to the leave stays readable.
            left_at = current.stream_ordering
            return (current.membership in ("leave", "ban") and left_at is not None
                    and event.stream_ordering is not None and event.stream_ordering < left_at
                    and await self._joined_before(conn, current))
        return False

    async def _at(self, conn: Connection, snapshot_id: int, user_id: str) -> tuple[str, str | None]:
        state = self._stores.state
        history = "shared"
        history_id = await state.get_entry(conn, snapshot_id, "m.room.history_visibility", "")
        if history_id is not None:
            stored = await self._stores.events.get(conn, history_id)
            value = stored.pdu.content.get("history_visibility") if stored else None
            if isinstance(value, str):
                history = value
        membership = None
        member_id = await state.get_entry(conn, snapshot_id, "m.room.member", user_id)
        if member_id is not None:
            row = await self._stores.memberships.by_event(conn, member_id)
            membership = row.membership if row else None
        return history, membership

    async def _joined_before(self, conn: Connection, leave: Membership) -> bool:
        event_state = await self._stores.state.get_event_state(conn, leave.event_id)
        if event_state is None:
            return False
        member_id = await self._stores.state.get_entry(conn, event_state.before, "m.room.member",
                                                       leave.user_id)
        row = await self._stores.memberships.by_event(conn, member_id) if member_id else None
        return row is not None and row.membership == "join"
