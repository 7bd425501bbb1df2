"""Published room directory: listing rooms and publishing them.

Spec: https://spec.matrix.org/v1.19/client-server-api/#published-room-directory .
(The alias half of /directory lives with the room endpoints in rooms.py.)
"""

from __future__ import annotations

from client_api.endpoint import Auth, ClientRequest, Endpoint, JsonDict, v3
from client_api.validation import optional, query_int
from homeserver.errors import BadJson, InvalidParam
from homeserver.rooms.directory import PublicRoomsQuery, RoomDirectory
from homeserver.types import RoomID

VISIBILITIES = ("public", "private")


def _room_id(request: ClientRequest) -> str:
    return str(RoomID.parse(request.path_params["roomId"]))


def parse_public_rooms_body(body: JsonDict, server: str | None) -> PublicRoomsQuery:
    limit = optional(body, "limit", int)
    if limit is not None and limit < 1:
        raise InvalidParam("'limit' must be at least 1")
    filter_ = optional(body, "filter", dict, {})
    room_types = optional(filter_, "room_types", list)
    if room_types is not None and not all(t is None or isinstance(t, str) for t in room_types):
        raise BadJson("'filter.room_types' must contain only strings and null")
    return PublicRoomsQuery(
        limit=limit, since=optional(body, "since", str),
        search_term=optional(filter_, "generic_search_term", str),
        room_types=None if room_types is None else tuple(room_types), server=server)


class RoomDirectoryApi:
    def __init__(self, directory: RoomDirectory):
        self._directory = directory

    async def get_public_rooms(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/publicRooms"""
        q = request.query
        return await self._directory.list_public_rooms(PublicRoomsQuery(
            limit=query_int(q, "limit", minimum=1), since=q.get("since"), server=q.get("server")))

    async def query_public_rooms(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/publicRooms"""
        return await self._directory.list_public_rooms(
            parse_public_rooms_body(request.body, request.query.get("server")))

    async def get_room_visibility_on_directory(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/directory/list/room/{roomId}"""
        return {"visibility": await self._directory.get_visibility(_room_id(request))}

    async def set_room_visibility_on_directory(self, request: ClientRequest) -> JsonDict:
        """PUT /_matrix/client/v3/directory/list/room/{roomId}"""
        visibility = optional(request.body, "visibility", str, "public")
        if visibility not in VISIBILITIES:
            raise InvalidParam("'visibility' must be 'public' or 'private'")
        await self._directory.set_visibility(request.user.user_id, _room_id(request), visibility,
                                             is_admin=request.user.is_admin)
        return {}

    def endpoints(self) -> list[Endpoint]:
        room = "/directory/list/room/{roomId}"
        return [
            # The spec lists no security for the GETs: anyone may browse the directory.
            Endpoint("GET", v3("/publicRooms"), self.get_public_rooms, auth=Auth.OPTIONAL),
            Endpoint("POST", v3("/publicRooms"), self.query_public_rooms, auth=Auth.GUEST_OK,
                     rate_limit="default"),
            Endpoint("GET", v3(room), self.get_room_visibility_on_directory, auth=Auth.NONE),
            Endpoint("PUT", v3(room), self.set_room_visibility_on_directory, rate_limit="default"),
        ]
