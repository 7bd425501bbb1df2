"""Filtering: uploading and downloading filters.

Spec: https://spec.matrix.org/v1.19/client-server-api/#filtering
"""

from __future__ import annotations

from client_api.endpoint import Auth, ClientRequest, Endpoint, JsonDict, v3
from homeserver.errors import Forbidden
from homeserver.sync.filter_service import FilterService


def _own_user(request: ClientRequest) -> str:
    user_id = request.path_params["userId"]
    if user_id != request.user.user_id:
        raise Forbidden("Cannot use filters of other users")
    return user_id


class Filters:
    def __init__(self, filters: FilterService):
        self._filters = filters

    async def define_filter(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/user/{userId}/filter"""
        user_id = _own_user(request)
        return {"filter_id": await self._filters.create(user_id, request.body)}

    async def get_filter(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/user/{userId}/filter/{filterId}"""
        user_id = _own_user(request)
        return await self._filters.get_json(user_id, request.path_params["filterId"])

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("POST", v3("/user/{userId}/filter"), self.define_filter, auth=Auth.GUEST_OK),
            Endpoint("GET", v3("/user/{userId}/filter/{filterId}"), self.get_filter, auth=Auth.GUEST_OK),
        ]
