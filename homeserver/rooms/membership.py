"""Membership changes of local users in rooms this server knows: join, invite, leave,
forget, kick, ban, unban, knock.

Spec: https://spec.matrix.org/v1.19/client-server-api/#room-membership . The auth rules
(run by the persistence path) have the final say; the checks here exist to give clients
the precise error the spec names. Joining rooms known only to other servers needs
federation and is added there.
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import BadRequest, Forbidden, NotFound
from homeserver.rooms.access import NOT_IN_ROOM, RoomAccess
from homeserver.rooms.creation import ProfileLookup, member_content
from homeserver.rooms.persistence import EventPersister
from homeserver.rooms.stores import RoomStores
from homeserver.storage.database import Connection, Database
from homeserver.types import RoomAlias, UserID

JsonDict = dict[str, Any]


class MembershipService:
    def __init__(self, db: Database, stores: RoomStores, persister: EventPersister,
                 access: RoomAccess, *, server_name: str,
                 profile_lookup: ProfileLookup | None = None):
        self._db = db
        self._stores = stores
        self._persister = persister
        self._access = access
        self._server_name = server_name
        self._profile_lookup = profile_lookup

    async def resolve_room(self, room_id_or_alias: str) -> str:
        """A room ID, or the room a local alias points to (404 otherwise)."""
        if room_id_or_alias.startswith("#"):
            alias = str(RoomAlias.parse(room_id_or_alias))
            async with self._db.connection() as conn:
                row = await self._stores.aliases.get(conn, alias)
            if row is None:
                raise NotFound("Room alias not found")
            return row.room_id
        async with self._db.connection() as conn:
            if await self._stores.rooms.get(conn, room_id_or_alias) is None:
                raise NotFound("Unknown room")
        return room_id_or_alias

    async def join(self, user_id: str, room_id_or_alias: str, *, reason: str | None = None) -> str:
        """POST /join/{roomIdOrAlias} and /rooms/{roomId}/join — returns the room ID."""
        room_id = await self.resolve_room(room_id_or_alias)
        async with self._db.connection() as conn:
            current = await self._access.membership(conn, room_id, user_id)
            if current is not None and current.membership == "ban":
                raise Forbidden("You are banned from this room")
            if current is not None and current.membership == "join":
                return room_id
            authoriser = await self._restricted_authoriser(conn, room_id, user_id, current)
        # Outside the connection block: the profile lookup takes its own connection.
        content = await self._content(user_id, "join", reason)
        if authoriser is not None:
            content["join_authorised_via_users_server"] = authoriser
        await self._send(room_id, user_id, user_id, content)
        return room_id

    async def knock(self, user_id: str, room_id_or_alias: str, *, reason: str | None = None) -> str:
        """POST /knock/{roomIdOrAlias} — returns the room ID."""
        room_id = await self.resolve_room(room_id_or_alias)
        async with self._db.connection() as conn:
            current = await self._access.membership(conn, room_id, user_id)
        if current is not None and current.membership in ("join", "ban"):
            raise Forbidden(f"You cannot knock: you are {current.membership}")
        await self._send(room_id, user_id, user_id, await self._content(user_id, "knock", reason))
        return room_id

    async def invite(self, sender: str, room_id: str, target: str, *,
                     reason: str | None = None, is_direct: bool = False) -> None:
        """POST /rooms/{roomId}/invite"""
        target = str(UserID.parse(target))
        async with self._db.connection() as conn:
            await self._access.require_joined(conn, room_id, sender)
            current = await self._access.membership(conn, room_id, target)
        if current is not None and current.membership in ("join", "ban"):
            raise Forbidden(f"{target} is {'already in' if current.membership == 'join' else 'banned from'} the room")
        if UserID.parse(target).server_name != self._server_name:
            raise Forbidden("Inviting users of other servers needs federation, which is not enabled")
        if current is not None and current.membership == "invite":
            return
        content = await self._content(target, "invite", reason)
        if is_direct:
            content["is_direct"] = True
        await self._send(room_id, sender, target, content)

    async def leave(self, user_id: str, room_id: str, *, reason: str | None = None) -> None:
        """POST /rooms/{roomId}/leave (also rejects invites and rescinds knocks)."""
        async with self._db.connection() as conn:
            if await self._access.room(conn, room_id) is None:
                raise NotFound("Unknown room")
            current = await self._access.membership(conn, room_id, user_id)
        if current is None:
            raise Forbidden(NOT_IN_ROOM)
        if current.membership == "leave":
            return
        await self._send(room_id, user_id, user_id, self._reasoned({"membership": "leave"}, reason))

    async def forget(self, user_id: str, room_id: str) -> None:
        """POST /rooms/{roomId}/forget"""
        async with self._db.transaction() as conn:
            if await self._access.room(conn, room_id) is None:
                raise NotFound("Unknown room")
            current = await self._access.membership(conn, room_id, user_id)
            if current is None:
                raise NotFound("You have never been in this room")
            if current.membership in ("join", "invite", "knock"):
                raise BadRequest("Leave the room before forgetting it")
            await self._stores.memberships.forget(conn, room_id, user_id)

    async def kick(self, sender: str, room_id: str, target: str, *, reason: str | None = None) -> None:
        """POST /rooms/{roomId}/kick"""
        target = await self._target(sender, room_id, target, ("join", "invite", "knock"))
        await self._send(room_id, sender, target, self._reasoned({"membership": "leave"}, reason))

    async def ban(self, sender: str, room_id: str, target: str, *, reason: str | None = None) -> None:
        """POST /rooms/{roomId}/ban"""
        target = await self._target(sender, room_id, target, None)
        await self._send(room_id, sender, target, self._reasoned({"membership": "ban"}, reason))

    async def unban(self, sender: str, room_id: str, target: str, *, reason: str | None = None) -> None:
        """POST /rooms/{roomId}/unban"""
        target = await self._target(sender, room_id, target, ("ban",))
        await self._send(room_id, sender, target, self._reasoned({"membership": "leave"}, reason))

    async def _target(self, sender: str, room_id: str, target: str,
                      required: tuple[str, ...] | None) -> str:
        target = str(UserID.parse(target))
        async with self._db.connection() as conn:
            await self._access.require_joined(conn, room_id, sender)
            current = await self._access.membership(conn, room_id, target)
        if required is not None and (current is None or current.membership not in required):
            raise Forbidden(f"{target} is not {'/'.join(required)} in the room")
        return target

    async def _send(self, room_id: str, sender: str, target: str, content: JsonDict) -> None:
        await self._persister.send({"type": "m.room.member", "room_id": room_id, "sender": sender,
                                    "state_key": target, "content": content})

    async def _content(self, user_id: str, membership: str, reason: str | None) -> JsonDict:
        content = await member_content(self._profile_lookup, user_id, membership)
        return self._reasoned(content, reason)

    @staticmethod
    def _reasoned(content: JsonDict, reason: str | None) -> JsonDict:
        if reason is not None:
            content["reason"] = reason
        return content

    async def _restricted_authoriser(self, conn: Connection, room_id: str, user_id: str,
                                     current: Any) -> str | None:
        """For `restricted` join rules (v8+): a local member who may invite, when the
        user is joined to one of the rooms the rule allows. Spec: #restricted-rooms."""
        if current is not None and current.membership in ("join", "invite"):
            return None
        rules = await self._access.current_content(conn, room_id, "m.room.join_rules")
        if rules is None or rules.get("join_rule") not in ("restricted", "knock_restricted"):
            return None
        allowed = [a.get("room_id") for a in rules.get("allow", []) if isinstance(a, dict)
                   and a.get("type") == "m.room_membership"]
        for allowed_room in allowed:
            if not isinstance(allowed_room, str):
                continue
            member = await self._access.membership(conn, allowed_room, user_id)
            if member is not None and member.membership == "join":
                break
        else:
            return None
        power = await self._access.power(conn, room_id)
        invite_level = power.named("invite")
        for member in await self._stores.memberships.members(conn, room_id, ("join",)):
            local = UserID.parse(member.user_id).server_name == self._server_name
            if local and power.level(member.user_id) >= invite_level:
                return member.user_id
        return None
