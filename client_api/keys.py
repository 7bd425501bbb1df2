"""End-to-end encryption keys: upload, query, claim, changes, and cross-signing.

Spec: https://spec.matrix.org/v1.19/client-server-api/#key-management-api and
https://spec.matrix.org/v1.19/client-server-api/#cross-signing
"""

from __future__ import annotations

from typing import Any

from client_api.endpoint import Auth, ClientRequest, Endpoint, JsonDict, v3
from client_api.validation import optional, require
from homeserver.e2e.cross_signing import CrossSigning
from homeserver.e2e.device_keys import DeviceKeys
from homeserver.e2e.device_lists import DEVICE_LISTS, DeviceLists
from homeserver.e2e.key_query import MAX_QUERY_USERS, KeyQueries
from homeserver.errors import BadJson, MissingParam
from homeserver.sync.tokens import SyncToken
from homeserver.types import UserID


def _user_map(body: JsonDict, key: str) -> dict[str, Any]:
    """An object keyed by (validated) user IDs."""
    value = require(body, key, dict)
    if len(value) > MAX_QUERY_USERS:
        raise BadJson(f"'{key}' may name at most {MAX_QUERY_USERS} users")
    for user_id in value:
        UserID.parse(user_id)
    return value


class Keys:
    def __init__(self, device_keys: DeviceKeys, queries: KeyQueries, device_lists: DeviceLists,
                 cross_signing: CrossSigning):
        self._device_keys = device_keys
        self._queries = queries
        self._device_lists = device_lists
        self._cross_signing = cross_signing

    async def upload_keys(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/keys/upload"""
        user = request.user
        if user.device_id is None:
            raise BadJson("Keys can only be uploaded by a device")
        counts = await self._device_keys.upload(user.user_id, user.device_id, request.body)
        return {"one_time_key_counts": counts}

    async def query_keys(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/keys/query"""
        wanted = _user_map(request.body, "device_keys")
        for devices in wanted.values():
            if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
                raise BadJson("'device_keys' must map user IDs to arrays of device IDs")
        optional(request.body, "timeout", int)
        return await self._queries.query(request.user.user_id, wanted)

    async def claim_keys(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/keys/claim"""
        wanted = _user_map(request.body, "one_time_keys")
        for devices in wanted.values():
            if not isinstance(devices, dict) or not all(
                    isinstance(a, str) and a for a in devices.values()):
                raise BadJson("'one_time_keys' must map user IDs to device ID -> algorithm")
        optional(request.body, "timeout", int)
        return await self._queries.claim(wanted)

    async def get_keys_changes(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/keys/changes"""
        positions = []
        for name in ("from", "to"):
            raw = request.query.get(name)
            if raw is None:
                raise MissingParam(f"Missing '{name}' query parameter")
            positions.append(SyncToken.parse(raw)[DEVICE_LISTS])
        changed, left = await self._device_lists.device_list_changes(
            request.user.user_id, positions[0], positions[1])
        return {"changed": sorted(changed), "left": sorted(left)}

    async def upload_cross_signing_keys(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/keys/device_signing/upload"""
        await self._cross_signing.upload_keys(request.user, request.body)
        return {}

    async def upload_cross_signing_signatures(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/keys/signatures/upload"""
        for user_id in request.body:
            UserID.parse(user_id)
        return await self._cross_signing.upload_signatures(request.user.user_id, request.body)

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("POST", v3("/keys/upload"), self.upload_keys, auth=Auth.GUEST_OK,
                     rate_limit="default"),
            Endpoint("POST", v3("/keys/query"), self.query_keys, auth=Auth.GUEST_OK,
                     rate_limit="default"),
            Endpoint("POST", v3("/keys/claim"), self.claim_keys, auth=Auth.GUEST_OK,
                     rate_limit="default"),
            Endpoint("GET", v3("/keys/changes"), self.get_keys_changes, auth=Auth.GUEST_OK,
                     rate_limit="default"),
            Endpoint("POST", v3("/keys/device_signing/upload", r0=False),
                     self.upload_cross_signing_keys, rate_limit="default"),
            Endpoint("POST", v3("/keys/signatures/upload", r0=False),
                     self.upload_cross_signing_signatures, rate_limit="default"),
        ]
