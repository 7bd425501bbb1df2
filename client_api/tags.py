"""Room tagging.

Spec: https://spec.matrix.org/v1.19/client-server-api/#room-tagging
"""

from __future__ import annotations

from client_api.endpoint import ClientRequest, Endpoint, JsonDict, v3
from homeserver.accounts.tags import RoomTags


class Tags:
    def __init__(self, tags: RoomTags):
        self._tags = tags

    async def get_room_tags(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags"""
        p = request.path_params
        return {"tags": await self._tags.get_tags(request.user, p["userId"], p["roomId"])}

    async def set_room_tag(self, request: ClientRequest) -> JsonDict:
        """PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}"""
        p = request.path_params
        await self._tags.set_tag(request.user, p["userId"], p["roomId"], p["tag"], request.body)
        return {}

    async def delete_room_tag(self, request: ClientRequest) -> JsonDict:
        """DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}"""
        p = request.path_params
        await self._tags.delete_tag(request.user, p["userId"], p["roomId"], p["tag"])
        return {}

    def endpoints(self) -> list[Endpoint]:
        tags = "/user/{userId}/rooms/{roomId}/tags"
        return [
            Endpoint("GET", v3(tags), self.get_room_tags),
            Endpoint("PUT", v3(tags + "/{tag}"), self.set_room_tag, rate_limit="default"),
            Endpoint("DELETE", v3(tags + "/{tag}"), self.delete_room_tag, rate_limit="default"),
        ]
