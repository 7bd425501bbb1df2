"""The event fields of a full-format push notification, read from room storage.

Spec: https://spec.matrix.org/v1.19/push-gateway-api/#post_matrixpushv1notify (the
`notification` object: type, sender, content, sender_display_name, room_name, ...).
"""

from __future__ import annotations

from typing import Any

from homeserver.rooms.stores import RoomStores
from homeserver.storage.database import Database

JsonDict = dict[str, Any]


class EventDetails:
    def __init__(self, db: Database, stores: RoomStores):
        self._db = db
        self._stores = stores

    async def describe(self, user_id: str, room_id: str, event_id: str) -> JsonDict | None:
        """None when the event is gone (then only ids are sent)."""
        stores = self._stores
        async with self._db.connection() as conn:
            pdus = await stores.events.get_pdus(conn, [event_id])
            pdu = pdus.get(event_id)
            if pdu is None:
                return None
            state = await stores.current_state.get_entries(
                conn, room_id, [("m.room.name", ""), ("m.room.canonical_alias", ""),
                                ("m.room.member", pdu.sender)])
            state_pdus = await stores.events.get_pdus(conn, list(state.values()))
        out: JsonDict = {"type": pdu.type, "sender": pdu.sender, "content": pdu.content}
        picks = ((("m.room.member", pdu.sender), "displayname", "sender_display_name"),
                 (("m.room.name", ""), "name", "room_name"),
                 (("m.room.canonical_alias", ""), "alias", "room_alias"))
        for key, field, name in picks:
            source = state_pdus.get(state.get(key, ""))
            value = source.content.get(field) if source is not None else None
            if isinstance(value, str) and value:
                out[name] = value
        if pdu.type == "m.room.member":
            out["user_is_target"] = pdu.state_key == user_id
        return out
