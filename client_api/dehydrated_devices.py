"""Dehydrated devices (MSC3814), under its unstable prefix.

MSC: https://github.com/matrix-org/matrix-spec-proposals/pull/3814
The messages of the dehydrated device are served twice: by POST with `next_batch` in the
body, which matrix-js-sdk and matrix-rust-sdk send (an earlier draft of the MSC; its
response always carries next_batch, and the client stops at an empty batch), and by GET
with `?from=`, the current draft, whose response leaves next_batch out on the last batch.
"""

from __future__ import annotations

from client_api.endpoint import ClientRequest, Endpoint, JsonDict
from client_api.validation import optional, query_int, require
from homeserver.accounts.devices import MAX_DEVICE_ID_LENGTH, MAX_DISPLAY_NAME_LENGTH
from homeserver.e2e.dehydrated_devices import (
    DEFAULT_BATCH,
    MAX_BATCH,
    DehydratedDevices,
    parse_batch_token,
)
from homeserver.errors import BadJson, InvalidParam, MissingParam

PREFIX = "/unstable/org.matrix.msc3814.v1"


class DehydratedDevicesApi:
    def __init__(self, dehydrated: DehydratedDevices):
        self._dehydrated = dehydrated

    async def get_dehydrated_device(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device"""
        device = await self._dehydrated.get(request.user.user_id)
        return {"device_id": device.device_id, "device_data": device.device_data}

    async def put_dehydrated_device(self, request: ClientRequest) -> JsonDict:
        """PUT /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device"""
        body = request.body
        device_id = require(body, "device_id", str)
        if not 0 < len(device_id) <= MAX_DEVICE_ID_LENGTH:
            raise InvalidParam(f"'device_id' must be 1 to {MAX_DEVICE_ID_LENGTH} characters")
        device_data = require(body, "device_data", dict)
        if "algorithm" not in device_data:
            raise MissingParam("Missing 'device_data.algorithm'")
        if not isinstance(device_data["algorithm"], str):
            raise BadJson("'device_data.algorithm' must be a string")
        name = optional(body, "initial_device_display_name", str)
        if name is not None and len(name) > MAX_DISPLAY_NAME_LENGTH:
            raise BadJson("'initial_device_display_name' is limited to "
                          f"{MAX_DISPLAY_NAME_LENGTH} characters")
        # A dehydrated device without keys could never receive a room key (MSC3814).
        require(body, "device_keys", dict)
        keys: JsonDict = {k: body[k] for k in ("device_keys", "one_time_keys", "fallback_keys")
                          if k in body}
        await self._dehydrated.put(request.user.user_id, device_id, device_data, name, keys)
        return {"device_id": device_id}

    async def delete_dehydrated_device(self, request: ClientRequest) -> JsonDict:
        """DELETE /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device"""
        return {"device_id": await self._dehydrated.delete(request.user.user_id)}

    async def post_dehydrated_device_events(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device/{deviceId}/events"""
        raw = optional(request.body, "next_batch", str)
        batch = await self._dehydrated.events(
            request.user.user_id, request.path_params["deviceId"],
            0 if raw is None else parse_batch_token(raw), _limit(request))
        return {"events": batch.events, "next_batch": batch.next_batch}

    async def get_dehydrated_device_events(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device/{deviceId}/events"""
        raw = request.query.get("from")
        batch = await self._dehydrated.events(
            request.user.user_id, request.path_params["deviceId"],
            0 if raw is None else parse_batch_token(raw), _limit(request))
        body: JsonDict = {"events": batch.events}
        if batch.limited:
            body["next_batch"] = batch.next_batch
        return body

    def endpoints(self) -> list[Endpoint]:
        device = (f"{PREFIX}/dehydrated_device",)
        events = (f"{PREFIX}/dehydrated_device/{{deviceId}}/events",)
        return [
            Endpoint("GET", device, self.get_dehydrated_device, rate_limit="default"),
            Endpoint("PUT", device, self.put_dehydrated_device, rate_limit="default"),
            Endpoint("DELETE", device, self.delete_dehydrated_device, rate_limit="default"),
            Endpoint("POST", events, self.post_dehydrated_device_events, rate_limit="default"),
            Endpoint("GET", events, self.get_dehydrated_device_events, rate_limit="default"),
        ]


def _limit(request: ClientRequest) -> int:
    limit = query_int(request.query, "limit", DEFAULT_BATCH, minimum=1, maximum=MAX_BATCH)
    assert limit is not None
    return limit
