"""Typing notifications.

Spec: https://spec.matrix.org/v1.19/client-server-api/#typing-notifications
"""

from __future__ import annotations

from client_api.endpoint import Auth, ClientRequest, Endpoint, JsonDict, v3
from client_api.validation import optional, require
from homeserver.errors import BadJson, Forbidden
from homeserver.sync.typing import TypingService
from homeserver.types import RoomID


class Typing:
    def __init__(self, typing: TypingService):
        self._typing = typing

    async def set_typing(self, request: ClientRequest) -> JsonDict:
        """PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}"""
        room_id = str(RoomID.parse(request.path_params["roomId"]))
        if request.path_params["userId"] != request.user.user_id:
            raise Forbidden("Cannot set the typing state of another user")
        typing = require(request.body, "typing", bool)
        timeout = optional(request.body, "timeout", int)
        if timeout is not None and timeout < 0:
            raise BadJson("'timeout' must not be negative")
        await self._typing.set_typing(request.user.user_id, room_id, typing, timeout)
        return {}

    def endpoints(self) -> list[Endpoint]:
        return [Endpoint("PUT", v3("/rooms/{roomId}/typing/{userId}"), self.set_typing,
                         auth=Auth.GUEST_OK)]
