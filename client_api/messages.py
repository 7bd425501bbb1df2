"""Room history: paginating a room's timeline and the context around an event.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3roomsroomidmessages
and #get_matrixclientv3roomsroomidcontexteventid .
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from client_api.endpoint import Auth, ClientRequest, Endpoint, JsonDict, v3
from client_api.validation import query_int
from homeserver.errors import BadJson, InvalidParam, MissingParam, NotJson
from homeserver.rooms.history import MessagesQuery, RoomHistory
from homeserver.sync.filters import RoomEventFilter, parse_room_event_filter
from homeserver.types import RoomID


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def room_event_filter(query: Mapping[str, str]) -> RoomEventFilter:
    """The `filter` query parameter: a RoomEventFilter as JSON text (M_NOT_JSON when it
    is not JSON, M_BAD_JSON when it is not a valid filter, as for /sync's inline filters)."""
    raw = query.get("filter")
    if raw is None or raw == "":
        return RoomEventFilter()
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise NotJson("The filter parameter is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadJson("A filter must be a JSON object")
    return parse_room_event_filter(value, "filter")


def parse_direction(query: Mapping[str, str], default: str | None) -> bool:
    """True for `b` (backward)."""
    value = query.get("dir", default)
    if value is None:
        raise MissingParam("Missing 'dir'")
    if value not in ("b", "f"):
        raise InvalidParam("dir must be 'b' or 'f'")
    return value == "b"


class Messages:
    def __init__(self, history: RoomHistory):
        self._history = history

    async def get_room_events(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/rooms/{roomId}/messages"""
        q = request.query
        messages_query = MessagesQuery(
            backward=parse_direction(q, None), from_token=q.get("from") or None,
            to_token=q.get("to") or None, limit=query_int(q, "limit", minimum=0),
            event_filter=room_event_filter(q))
        room_id = str(RoomID.parse(request.path_params["roomId"]))
        return await self._history.messages(request.user.user_id, request.user.device_id,
                                            room_id, messages_query)

    async def get_event_context(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}"""
        q = request.query
        limit = query_int(q, "limit", minimum=0)
        event_filter = room_event_filter(q)
        room_id = str(RoomID.parse(request.path_params["roomId"]))
        return await self._history.context(request.user.user_id, request.user.device_id, room_id,
                                           request.path_params["eventId"], limit, event_filter)

    def endpoints(self) -> list[Endpoint]:
        # Guests may read history (spec #guest-access lists both).
        return [
            Endpoint("GET", v3("/rooms/{roomId}/messages"), self.get_room_events, auth=Auth.GUEST_OK),
            Endpoint("GET", v3("/rooms/{roomId}/context/{eventId}"), self.get_event_context,
                     auth=Auth.GUEST_OK),
        ]
