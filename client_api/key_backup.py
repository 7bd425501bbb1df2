"""Server-side key backups.

Spec: https://spec.matrix.org/v1.19/client-server-api/#server-side-key-backups
"""

from __future__ import annotations

from client_api.endpoint import ClientRequest, Endpoint, JsonDict, v3
from client_api.validation import require
from homeserver.e2e.key_backup import KeyBackup, Sessions
from homeserver.errors import BadJson


def _sessions(body: JsonDict) -> dict[str, JsonDict]:
    sessions = require(body, "sessions", dict)
    return sessions


class KeyBackupApi:
    def __init__(self, backup: KeyBackup):
        self._backup = backup

    async def post_room_keys_version(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/room_keys/version"""
        body = request.body
        version = await self._backup.create_version(request.user.user_id, body.get("algorithm"),
                                                    body.get("auth_data"))
        return {"version": version}

    async def get_room_keys_version_current(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/room_keys/version"""
        return await self._backup.get_version(request.user.user_id, None)

    async def get_room_keys_version(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/room_keys/version/{version}"""
        return await self._backup.get_version(request.user.user_id,
                                              request.path_params["version"])

    async def put_room_keys_version(self, request: ClientRequest) -> JsonDict:
        """PUT /_matrix/client/v3/room_keys/version/{version}"""
        await self._backup.update_version(request.user.user_id, request.path_params["version"],
                                          request.body)
        return {}

    async def delete_room_keys_version(self, request: ClientRequest) -> JsonDict:
        """DELETE /_matrix/client/v3/room_keys/version/{version}"""
        await self._backup.delete_version(request.user.user_id, request.path_params["version"])
        return {}

    async def put_room_keys(self, request: ClientRequest) -> JsonDict:
        """PUT /_matrix/client/v3/room_keys/keys"""
        rooms = require(request.body, "rooms", dict)
        sessions: Sessions = {}
        for room_id, room in rooms.items():
            if not isinstance(room, dict):
                raise BadJson("Each room must be an object with 'sessions'")
            sessions[room_id] = _sessions(room)
        return await self._backup.put_keys(request.user.user_id, request.query.get("version"),
                                           sessions)

    async def put_room_keys_by_room_id(self, request: ClientRequest) -> JsonDict:
        """PUT /_matrix/client/v3/room_keys/keys/{roomId}"""
        sessions = {request.path_params["roomId"]: _sessions(request.body)}
        return await self._backup.put_keys(request.user.user_id, request.query.get("version"),
                                           sessions)

    async def put_room_key_by_session_id(self, request: ClientRequest) -> JsonDict:
        """PUT /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}"""
        p = request.path_params
        sessions = {p["roomId"]: {p["sessionId"]: request.body}}
        return await self._backup.put_keys(request.user.user_id, request.query.get("version"),
                                           sessions)

    async def get_room_keys(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/room_keys/keys"""
        return await self._backup.get_keys(request.user.user_id, request.query.get("version"))

    async def get_room_keys_by_room_id(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/room_keys/keys/{roomId}"""
        return await self._backup.get_keys(request.user.user_id, request.query.get("version"),
                                           room_id=request.path_params["roomId"])

    async def get_room_key_by_session_id(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}"""
        p = request.path_params
        return await self._backup.get_keys(request.user.user_id, request.query.get("version"),
                                           room_id=p["roomId"], session_id=p["sessionId"])

    async def delete_room_keys(self, request: ClientRequest) -> JsonDict:
        """DELETE /_matrix/client/v3/room_keys/keys"""
        return await self._backup.delete_keys(request.user.user_id, request.query.get("version"))

    async def delete_room_keys_by_room_id(self, request: ClientRequest) -> JsonDict:
        """DELETE /_matrix/client/v3/room_keys/keys/{roomId}"""
        return await self._backup.delete_keys(request.user.user_id, request.query.get("version"),
                                              room_id=request.path_params["roomId"])

    async def delete_room_key_by_session_id(self, request: ClientRequest) -> JsonDict:
        """DELETE /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}"""
        p = request.path_params
        return await self._backup.delete_keys(request.user.user_id, request.query.get("version"),
                                              room_id=p["roomId"], session_id=p["sessionId"])

    def endpoints(self) -> list[Endpoint]:
        version = v3("/room_keys/version", r0=False)
        one_version = v3("/room_keys/version/{version}", r0=False)
        keys = v3("/room_keys/keys", r0=False)
        room = v3("/room_keys/keys/{roomId}", r0=False)
        session = v3("/room_keys/keys/{roomId}/{sessionId}", r0=False)
        return [
            Endpoint("POST", version, self.post_room_keys_version, rate_limit="default"),
            Endpoint("GET", version, self.get_room_keys_version_current, rate_limit="default"),
            Endpoint("GET", one_version, self.get_room_keys_version, rate_limit="default"),
            Endpoint("PUT", one_version, self.put_room_keys_version, rate_limit="default"),
            Endpoint("DELETE", one_version, self.delete_room_keys_version, rate_limit="default"),
            Endpoint("PUT", keys, self.put_room_keys, rate_limit="default"),
            Endpoint("GET", keys, self.get_room_keys, rate_limit="default"),
            Endpoint("DELETE", keys, self.delete_room_keys, rate_limit="default"),
            Endpoint("PUT", room, self.put_room_keys_by_room_id, rate_limit="default"),
            Endpoint("GET", room, self.get_room_keys_by_room_id, rate_limit="default"),
            Endpoint("DELETE", room, self.delete_room_keys_by_room_id, rate_limit="default"),
            Endpoint("PUT", session, self.put_room_key_by_session_id, rate_limit="default"),
            Endpoint("GET", session, self.get_room_key_by_session_id, rate_limit="default"),
            Endpoint("DELETE", session, self.delete_room_key_by_session_id, rate_limit="default"),
        ]
