"""Spaces: the space hierarchy.

Spec: https://spec.matrix.org/v1.19/client-server-api/#spaces
"""

from __future__ import annotations

from client_api.endpoint import Auth, ClientRequest, Endpoint, JsonDict
from client_api.validation import query_bool, query_int
from homeserver.rooms.hierarchy import HierarchyQuery, SpaceHierarchy
from homeserver.types import RoomID


class Spaces:
    def __init__(self, hierarchy: SpaceHierarchy):
        self._hierarchy = hierarchy

    async def get_space_hierarchy(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v1/rooms/{roomId}/hierarchy"""
        q = request.query
        query = HierarchyQuery(
            room_id=str(RoomID.parse(request.path_params["roomId"])),
            suggested_only=query_bool(q, "suggested_only"),
            limit=query_int(q, "limit", minimum=1),
            max_depth=query_int(q, "max_depth", minimum=0),
            from_token=q.get("from"))
        return await self._hierarchy.get_hierarchy(request.user.user_id, query)

    def endpoints(self) -> list[Endpoint]:
        return [Endpoint("GET", ("/v1/rooms/{roomId}/hierarchy",), self.get_space_hierarchy,
                         auth=Auth.GUEST_OK)]
