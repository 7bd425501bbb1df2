"""Rooms: creation, membership, state, sending, redaction, upgrades, aliases.

Spec: https://spec.matrix.org/v1.19/client-server-api/#rooms and #room-membership,
#sending-events-to-a-room, #getting-events-for-a-room, #redactions, #room-upgrades,
#room-aliases.
"""

from __future__ import annotations

from typing import Any

from client_api.endpoint import Auth, ClientRequest, Endpoint, JsonDict, JsonResponse, v3
from client_api.validation import optional, require
from homeserver.errors import BadJson, InvalidParam
from homeserver.rooms.creation import CreateRoomRequest, StateEventSpec
from homeserver.rooms.service import RoomService
from homeserver.types import RoomID, UserID


def _room_id(request: ClientRequest) -> str:
    return str(RoomID.parse(request.path_params["roomId"]))


def _reason(request: ClientRequest) -> str | None:
    return optional(request.body, "reason", str)  # type: ignore[no-any-return]


def parse_create_room(body: JsonDict) -> CreateRoomRequest:
    visibility = optional(body, "visibility", str, "private")
    if visibility not in ("public", "private"):
        raise BadJson("visibility must be 'public' or 'private'")
    invite = optional(body, "invite", list, [])
    if not all(isinstance(u, str) for u in invite):
        raise BadJson("invite must be a list of user IDs")
    for u in invite:
        UserID.parse(u)
    initial = []
    for item in optional(body, "initial_state", list, []):
        if not isinstance(item, dict):
            raise BadJson("initial_state entries must be objects")
        initial.append(StateEventSpec(type=require(item, "type", str),
                                      state_key=optional(item, "state_key", str, ""),
                                      content=require(item, "content", dict)))
    return CreateRoomRequest(
        preset=optional(body, "preset", str),
        visibility=visibility,
        room_version=optional(body, "room_version", str),
        name=optional(body, "name", str),
        topic=optional(body, "topic", str),
        room_alias_name=optional(body, "room_alias_name", str),
        invite=tuple(invite),
        is_direct=optional(body, "is_direct", bool, False),
        creation_content=optional(body, "creation_content", dict, {}),
        initial_state=tuple(initial),
        power_level_content_override=optional(body, "power_level_content_override", dict),
    )


class Rooms:
    def __init__(self, rooms: RoomService):
        self._rooms = rooms

    # -- creation and membership -----------------------------------------------
    async def create_room(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/createRoom"""
        room_id = await self._rooms.creator.create_room(request.user.user_id,
                                                        parse_create_room(request.body))
        return {"room_id": room_id}

    async def join_room(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/join/{roomIdOrAlias}"""
        target = request.path_params["roomIdOrAlias"]
        if not target.startswith(("!", "#")):
            raise InvalidParam("Expected a room ID or alias")
        room_id = await self._rooms.membership.join(request.user.user_id, target,
                                                    reason=_reason(request))
        return {"room_id": room_id}

    async def join_room_by_id(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/join"""
        room_id = await self._rooms.membership.join(request.user.user_id, _room_id(request),
                                                    reason=_reason(request))
        return {"room_id": room_id}

    async def knock_room(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/knock/{roomIdOrAlias}"""
        target = request.path_params["roomIdOrAlias"]
        if not target.startswith(("!", "#")):
            raise InvalidParam("Expected a room ID or alias")
        room_id = await self._rooms.membership.knock(request.user.user_id, target,
                                                     reason=_reason(request))
        return {"room_id": room_id}

    async def invite_user(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/invite"""
        await self._rooms.membership.invite(
            request.user.user_id, _room_id(request), require(request.body, "user_id", str),
            reason=_reason(request))
        return {}

    async def leave_room(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/leave"""
        await self._rooms.membership.leave(request.user.user_id, _room_id(request),
                                           reason=_reason(request))
        return {}

    async def forget_room(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/forget"""
        await self._rooms.membership.forget(request.user.user_id, _room_id(request))
        return {}

    async def kick(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/kick"""
        await self._rooms.membership.kick(request.user.user_id, _room_id(request),
                                          require(request.body, "user_id", str), reason=_reason(request))
        return {}

    async def ban(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/ban"""
        await self._rooms.membership.ban(request.user.user_id, _room_id(request),
                                         require(request.body, "user_id", str), reason=_reason(request))
        return {}

    async def unban(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/unban"""
        await self._rooms.membership.unban(request.user.user_id, _room_id(request),
                                           require(request.body, "user_id", str), reason=_reason(request))
        return {}

    async def get_joined_rooms(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/joined_rooms"""
        return {"joined_rooms": await self._rooms.reader.joined_rooms(request.user.user_id)}

    # -- reading ------------------------------------------------------------------
    async def get_members(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/rooms/{roomId}/members"""
        q = request.query
        chunk = await self._rooms.reader.members(
            request.user.user_id, _room_id(request), at=q.get("at"),
            membership=q.get("membership"), not_membership=q.get("not_membership"))
        return {"chunk": chunk}

    async def get_joined_members(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/rooms/{roomId}/joined_members"""
        return await self._rooms.reader.joined_members(request.user.user_id, _room_id(request))

    async def get_room_state(self, request: ClientRequest) -> JsonResponse:
        """GET /_matrix/client/v3/rooms/{roomId}/state"""
        return JsonResponse(await self._rooms.reader.get_state(request.user.user_id, _room_id(request)))

    async def get_room_state_with_key(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}"""
        fmt = request.query.get("format", "content")
        if fmt not in ("content", "event"):
            raise InvalidParam("format must be 'content' or 'event'")
        event = await self._rooms.reader.get_state_event(
            request.user.user_id, _room_id(request), request.path_params["eventType"],
            request.path_params.get("stateKey", ""))
        return event if fmt == "event" else event["content"]  # type: ignore[no-any-return]

    async def get_one_room_event(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}"""
        return await self._rooms.reader.get_event(request.user.user_id, request.user.device_id,
                                                  _room_id(request), request.path_params["eventId"])

    # -- writing ------------------------------------------------------------------
    async def set_room_state_with_key(self, request: ClientRequest) -> JsonDict:
        """PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}"""
        event_id = await self._rooms.send.set_state(
            request.user.user_id, _room_id(request), request.path_params["eventType"],
            request.path_params.get("stateKey", ""), request.body)
        return {"event_id": event_id}

    async def send_message(self, request: ClientRequest) -> JsonDict:
        """PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}"""
        user = request.user
        event_id = await self._rooms.send.send_message(
            user.user_id, user.device_id, _room_id(request), request.path_params["eventType"],
            request.body, request.path_params["txnId"])
        return {"event_id": event_id}

    async def redact_event(self, request: ClientRequest) -> JsonDict:
        """PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}"""
        user = request.user
        event_id = await self._rooms.send.redact(
            user.user_id, user.device_id, _room_id(request), request.path_params["eventId"],
            _reason(request), request.path_params["txnId"])
        return {"event_id": event_id}

    async def upgrade_room(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/upgrade"""
        creators = optional(request.body, "additional_creators", list)
        if creators is not None and not all(isinstance(u, str) for u in creators):
            raise BadJson("additional_creators must be a list of user IDs")
        new_room = await self._rooms.upgrader.upgrade(
            request.user.user_id, _room_id(request), require(request.body, "new_version", str),
            creators)
        return {"replacement_room": new_room}

    # -- aliases and the directory ------------------------------------------------
    async def get_room_id_by_alias(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/directory/room/{roomAlias}"""
        return await self._rooms.aliases.resolve(request.path_params["roomAlias"])

    async def set_room_alias(self, request: ClientRequest) -> JsonDict:
        """PUT /_matrix/client/v3/directory/room/{roomAlias}"""
        room_id = str(RoomID.parse(require(request.body, "room_id", str)))
        await self._rooms.aliases.create_alias(request.user.user_id, request.path_params["roomAlias"], room_id)
        return {}

    async def delete_room_alias(self, request: ClientRequest) -> JsonDict:
        """DELETE /_matrix/client/v3/directory/room/{roomAlias}"""
        await self._rooms.aliases.delete_alias(request.user.user_id, request.path_params["roomAlias"],
                                               is_admin=request.user.is_admin)
        return {}

    async def get_local_aliases(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/rooms/{roomId}/aliases"""
        return {"aliases": await self._rooms.aliases.room_aliases(request.user.user_id, _room_id(request))}

    def endpoints(self) -> list[Endpoint]:
        room = "/rooms/{roomId}"
        state_key = room + "/state/{eventType}/{stateKey:.*}"
        state_type = room + "/state/{eventType}"
        eps: list[tuple[str, str, Any, str | None]] = [
            ("POST", "/createRoom", self.create_room, "default"),
            ("POST", "/join/{roomIdOrAlias}", self.join_room, "default"),
            ("POST", "/knock/{roomIdOrAlias}", self.knock_room, "default"),
            ("POST", room + "/join", self.join_room_by_id, "default"),
            ("POST", room + "/invite", self.invite_user, "default"),
            ("POST", room + "/leave", self.leave_room, "default"),
            ("POST", room + "/forget", self.forget_room, "default"),
            ("POST", room + "/kick", self.kick, "default"),
            ("POST", room + "/ban", self.ban, "default"),
            ("POST", room + "/unban", self.unban, "default"),
            ("GET", "/joined_rooms", self.get_joined_rooms, None),
            ("GET", room + "/members", self.get_members, None),
            ("GET", room + "/joined_members", self.get_joined_members, None),
            ("GET", room + "/state", self.get_room_state, None),
            ("GET", state_key, self.get_room_state_with_key, None),
            ("GET", state_type, self.get_room_state_with_key, None),
            ("PUT", state_key, self.set_room_state_with_key, "message"),
            ("PUT", state_type, self.set_room_state_with_key, "message"),
            ("GET", room + "/event/{eventId}", self.get_one_room_event, None),
            ("PUT", room + "/send/{eventType}/{txnId}", self.send_message, "message"),
            ("PUT", room + "/redact/{eventId}/{txnId}", self.redact_event, "message"),
            ("POST", room + "/upgrade", self.upgrade_room, "default"),
            ("GET", room + "/aliases", self.get_local_aliases, None),
            ("GET", "/directory/room/{roomAlias}", self.get_room_id_by_alias, None),
            ("PUT", "/directory/room/{roomAlias}", self.set_room_alias, "default"),
            ("DELETE", "/directory/room/{roomAlias}", self.delete_room_alias, "default"),
        ]
        # Spec: the endpoints guests may use (#guest-access).
        guest_ok = {self.join_room_by_id, self.leave_room, self.get_members, self.get_joined_members,
                    self.get_room_state, self.get_room_state_with_key, self.get_one_room_event,
                    self.send_message, self.get_joined_rooms}
        no_auth = {self.get_room_id_by_alias}

        def auth(handler: Any) -> Auth:
            if handler in no_auth:
                return Auth.NONE
            return Auth.GUEST_OK if handler in guest_ok else Auth.REQUIRED

        return [Endpoint(method, v3(path), handler, rate_limit=limit, auth=auth(handler))
                for method, path, handler, limit in eps]
