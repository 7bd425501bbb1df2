"""Event relationships and threads.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1roomsroomidrelationseventid
(and the /{relType} and /{relType}/{eventType} forms) and
#get_matrixclientv1roomsroomidthreads .
"""

from __future__ import annotations

from client_api.endpoint import ClientRequest, Endpoint, JsonDict
from client_api.messages import parse_direction
from client_api.validation import query_bool, query_int
from homeserver.rooms.relations_reader import RelationsQuery, RelationsReader
from homeserver.types import RoomID


class Relations:
    def __init__(self, relations: RelationsReader):
        self._relations = relations

    async def get_relating_events(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]"""
        q = request.query
        params = request.path_params
        query = RelationsQuery(
            rel_type=params.get("relType"), event_type=params.get("eventType"),
            from_token=q.get("from") or None, to_token=q.get("to") or None,
            limit=query_int(q, "limit", minimum=1), backward=parse_direction(q, "b"),
            recurse=query_bool(q, "recurse") if "recurse" in q else None)
        room_id = str(RoomID.parse(params["roomId"]))
        return await self._relations.relations(request.user.user_id, request.user.device_id,
                                               room_id, params["eventId"], query)

    async def get_thread_roots(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v1/rooms/{roomId}/threads"""
        q = request.query
        room_id = str(RoomID.parse(request.path_params["roomId"]))
        return await self._relations.threads(
            request.user.user_id, request.user.device_id, room_id,
            include=q.get("include", "all"), from_token=q.get("from") or None,
            limit=query_int(q, "limit", minimum=1))

    def endpoints(self) -> list[Endpoint]:
        base = "/v1/rooms/{roomId}/relations/{eventId}"
        return [
            Endpoint("GET", (base,), self.get_relating_events),
            Endpoint("GET", (base + "/{relType}",), self.get_relating_events),
            Endpoint("GET", (base + "/{relType}/{eventType}",), self.get_relating_events),
            Endpoint("GET", ("/v1/rooms/{roomId}/threads",), self.get_thread_roots),
        ]
