"""POST /rooms/{roomId}/upgrade: replace a room by a new one of another room version.

Spec: https://spec.matrix.org/v1.19/client-server-api/#room-upgrades . The new room gets
the old room's important state and a `predecessor`; the old room gets an
m.room.tombstone and power levels that stop ordinary members from talking in it.
"""

from __future__ import annotations

import copy
from typing import Any

from homeserver.errors import Forbidden
from homeserver.events.room_versions import RoomVersion
from homeserver.rooms.access import RoomAccess
from homeserver.rooms.creation import resolve_room_version
from homeserver.rooms.persistence import EventPersister
from homeserver.rooms.stores import RoomStores
from homeserver.storage.database import Database
from homeserver.types import UserID

JsonDict = dict[str, Any]

# State carried over to the replacement room (the spec's list plus what clients expect).
COPIED_STATE = (
    "m.room.server_acl", "m.room.encryption", "m.room.name", "m.room.avatar", "m.room.topic",
    "m.room.guest_access", "m.room.history_visibility", "m.room.join_rules",
    "m.room.canonical_alias",
)
RESTRICTED_LEVEL = 50


class RoomUpgrader:
    def __init__(self, db: Database, stores: RoomStores, persister: EventPersister,
                 access: RoomAccess):
        self._db = db
        self._stores = stores
        self._persister = persister
        self._access = access

    async def upgrade(self, user_id: str, room_id: str, new_version: str,
                      additional_creators: list[str] | None = None) -> str:
        """Returns the replacement room's ID."""
        room_version = resolve_room_version(new_version)
        extra = [str(UserID.parse(u)) for u in additional_creators or []]
        async with self._db.connection() as conn:
            await self._access.require_joined(conn, room_id, user_id)
            power = await self._access.power(conn, room_id)
            if power.level(user_id) < power.required("m.room.tombstone", True):
                raise Forbidden("You may not upgrade this room")
            old_state = {t: await self._access.current_content(conn, room_id, t) for t in COPIED_STATE}
            old_levels = power.power_levels.content if power.power_levels else None
            extremities = await self._stores.events.forward_extremities(conn, room_id)
            banned = await self._stores.memberships.members(conn, room_id, ("ban",))

        create_content: JsonDict = {"predecessor": {"room_id": room_id}}
        if extremities:
            create_content["predecessor"]["event_id"] = extremities[0]
        if room_version.privileged_creators:
            creators = [u for u in dict.fromkeys(extra) if u != user_id]
            if creators:
                create_content["additional_creators"] = creators
        else:
            create_content["creator"] = user_id
        created = await self._persister.create_room(room_version=room_version, sender=user_id,
                                                    content=create_content)
        new_room = created.room_id

        async def state(event_type: str, content: JsonDict, state_key: str = "") -> None:
            await self._persister.send({"type": event_type, "room_id": new_room, "sender": user_id,
                                        "state_key": state_key, "content": content})

        await state("m.room.member", {"membership": "join"}, user_id)
        levels, final_levels = _new_power_levels(room_version, user_id, extra, old_levels)
        await state("m.room.power_levels", levels)
        for event_type, content in old_state.items():
            if content is not None:
                await state(event_type, content)
        for ban in banned:
            await state("m.room.member", {"membership": "ban"}, ban.user_id)
        if final_levels is not None:
            await state("m.room.power_levels", final_levels)

        async with self._db.transaction() as conn:
            await self._stores.aliases.move(conn, room_id, new_room)
        await self._persister.send({"type": "m.room.tombstone", "room_id": room_id, "sender": user_id,
                                    "state_key": "", "content": {
                                        "body": "This room has been replaced",
                                        "replacement_room": new_room}})
        await self._restrict_old_room(user_id, room_id, old_levels)
        return new_room

    async def _restrict_old_room(self, user_id: str, room_id: str, levels: JsonDict | None) -> None:
        """Raise events_default and invite so the old room goes quiet (best effort: the
        upgrader may lack the power to change power levels)."""
        content = copy.deepcopy(levels) if levels is not None else {}
        needed = max(RESTRICTED_LEVEL, _int(content.get("users_default"), 0) + 1)
        changed = False
        for name in ("events_default", "invite"):
            if _int(content.get(name), 0) < needed:
                content[name] = needed
                changed = True
        if not changed:
            return
        try:
            await self._persister.send({"type": "m.room.power_levels", "room_id": room_id,
                                        "sender": user_id, "state_key": "", "content": content})
        except Forbidden:
            pass


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _new_power_levels(room_version: RoomVersion, user_id: str, extra_creators: list[str],
                      old: JsonDict | None) -> tuple[JsonDict, JsonDict | None]:
    """The replacement room's power levels: first a version that lets the upgrader send
    the copied state, then (if different) the old room's levels."""
    final = copy.deepcopy(old) if old is not None else {}
    listed = final.get("users")
    users: dict[str, Any] = listed if isinstance(listed, dict) else {}
    if room_version.privileged_creators:
        # v12 creators have infinite power and may not be listed.
        users = {u: v for u, v in users.items() if u != user_id and u not in extra_creators}
        final["users"] = users
        return final, None
    final["users"] = users
    if _int(users.get(user_id), 0) >= 100:
        return final, None
    first = copy.deepcopy(final)
    first["users"] = {**users, user_id: 100}
    return first, final
