"""The room directory's alias half: PUT/GET/DELETE /directory/room/{roomAlias}.

Spec: https://spec.matrix.org/v1.19/client-server-api/#room-aliases . Only aliases of
this server can be created or deleted here; other servers' aliases need federation.
"""

from __future__ import annotations

from homeserver.clock import Clock
from homeserver.errors import Conflict, Forbidden, InvalidParam, NotFound
from homeserver.rooms.access import RoomAccess
from homeserver.rooms.stores import RoomStores
from homeserver.storage.database import Database
from homeserver.types import RoomAlias


class AliasService:
    def __init__(self, db: Database, stores: RoomStores, access: RoomAccess, *,
                 server_name: str, clock: Clock):
        self._db = db
        self._stores = stores
        self._access = access
        self._server_name = server_name
        self._clock = clock

    def _local(self, alias: str) -> str:
        parsed = RoomAlias.parse(alias)
        if parsed.server_name != self._server_name:
            raise InvalidParam("Room alias must be on this server")
        return str(parsed)

    async def create_alias(self, user_id: str, alias: str, room_id: str) -> None:
        """PUT /directory/room/{roomAlias}"""
        alias = self._local(alias)
        async with self._db.transaction() as conn:
            if await self._stores.rooms.get(conn, room_id) is None:
                raise NotFound("Unknown room")
            if not await self._stores.aliases.create(conn, alias, room_id, user_id, self._clock.time_ms()):
                raise Conflict(f"Room alias {alias} already exists")

    async def resolve(self, alias: str) -> dict[str, object]:
        """GET /directory/room/{roomAlias}"""
        parsed = str(RoomAlias.parse(alias))
        async with self._db.connection() as conn:
            row = await self._stores.aliases.get(conn, parsed)
        if row is None:
            raise NotFound(f"Room alias {parsed} not found")
        return {"room_id": row.room_id, "servers": [self._server_name]}

    async def delete_alias(self, user_id: str, alias: str, *, is_admin: bool = False) -> None:
        """DELETE /directory/room/{roomAlias} — by its creator, a server admin, or a room
        member allowed to change m.room.canonical_alias."""
        alias = self._local(alias)
        async with self._db.transaction() as conn:
            row = await self._stores.aliases.get(conn, alias)
            if row is None:
                raise NotFound(f"Room alias {alias} not found")
            if row.creator != user_id and not is_admin:
                member = await self._access.membership(conn, row.room_id, user_id)
                power = await self._access.power(conn, row.room_id)
                allowed = (member is not None and member.membership == "join"
                           and power.level(user_id) >= power.required("m.room.canonical_alias", True))
                if not allowed:
                    raise Forbidden("You may not delete this alias")
            await self._stores.aliases.delete(conn, alias)

    async def room_aliases(self, user_id: str, room_id: str) -> list[str]:
        """GET /rooms/{roomId}/aliases (members, or anyone for world-readable rooms)."""
        async with self._db.connection() as conn:
            await self._access.visible_state_snapshot(conn, room_id, user_id)
            return await self._stores.aliases.for_room(conn, room_id)
