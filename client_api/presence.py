"""Presence.

Spec: https://spec.matrix.org/v1.19/client-server-api/#presence
"""

from __future__ import annotations

from client_api.endpoint import Auth, ClientRequest, Endpoint, JsonDict, v3
from client_api.validation import optional, require
from homeserver.errors import BadJson, Forbidden
from homeserver.sync.presence import STATES, PresenceService
from homeserver.types import UserID

MAX_STATUS_MSG_LENGTH = 2048


class Presence:
    def __init__(self, presence: PresenceService):
        self._presence = presence

    async def set_presence(self, request: ClientRequest) -> JsonDict:
        """PUT /_matrix/client/v3/presence/{userId}/status"""
        if request.path_params["userId"] != request.user.user_id:
            raise Forbidden("Cannot set the presence of another user")
        state = require(request.body, "presence", str)
        if state not in STATES:
            raise BadJson(f"'presence' must be one of {', '.join(STATES)}")
        status_msg = optional(request.body, "status_msg", str)
        if status_msg is not None and len(status_msg) > MAX_STATUS_MSG_LENGTH:
            raise BadJson(f"'status_msg' is longer than {MAX_STATUS_MSG_LENGTH} characters")
        await self._presence.set_presence(request.user.user_id, state, status_msg)
        return {}

    async def get_presence(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/presence/{userId}/status"""
        user_id = str(UserID.parse(request.path_params["userId"]))
        return await self._presence.get_presence(request.user.user_id, user_id)

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("PUT", v3("/presence/{userId}/status"), self.set_presence, auth=Auth.GUEST_OK),
            Endpoint("GET", v3("/presence/{userId}/status"), self.get_presence, auth=Auth.GUEST_OK),
        ]
