"""Device management.

Spec: https://spec.matrix.org/v1.19/client-server-api/#device-management
"""

from __future__ import annotations

from client_api.endpoint import Auth, ClientRequest, Endpoint, JsonDict, v3
from client_api.validation import optional, require
from homeserver.accounts.account import AccountManagement
from homeserver.accounts.devices import MAX_DISPLAY_NAME_LENGTH, Devices
from homeserver.errors import BadJson
from homeserver.storage.devices import DeviceRow


def device_json(device: DeviceRow) -> JsonDict:
    # Unset fields are sent as null rather than left out (the spec says "absent"): that is
    # what Synapse sends, and matrix-nio's response schema requires the keys, failing the
    # whole /devices call when they are missing.
    return {
        "device_id": device.device_id,
        "display_name": device.display_name,
        "last_seen_ip": device.last_seen_ip,
        "last_seen_ts": device.last_seen_ts,
    }


class DeviceManagement:
    def __init__(self, devices: Devices, accounts: AccountManagement):
        self._devices = devices
        self._accounts = accounts

    async def get_devices(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/devices"""
        devices = await self._devices.all_for_user(request.user.user_id)
        return {"devices": [device_json(d) for d in devices]}

    async def get_device(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/devices/{deviceId}"""
        device = await self._devices.get(request.user.user_id, request.path_params["deviceId"])
        return device_json(device)

    async def update_device(self, request: ClientRequest) -> JsonDict:
        """PUT /_matrix/client/v3/devices/{deviceId}"""
        name = optional(request.body, "display_name", str)
        if name is not None and len(name) > MAX_DISPLAY_NAME_LENGTH:
            raise BadJson(f"'display_name' is limited to {MAX_DISPLAY_NAME_LENGTH} characters")
        await self._devices.rename(request.user.user_id, request.path_params["deviceId"], name)
        return {}

    async def delete_device(self, request: ClientRequest) -> JsonDict:
        """DELETE /_matrix/client/v3/devices/{deviceId}"""
        await self._delete(request, [request.path_params["deviceId"]])
        return {}

    async def delete_devices(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/delete_devices"""
        device_ids = require(request.body, "devices", list)
        if not all(isinstance(d, str) for d in device_ids):
            raise BadJson("'devices' must be an array of strings")
        await self._delete(request, device_ids)
        return {}

    async def _delete(self, request: ClientRequest, device_ids: list[str]) -> None:
        user_id, result = await self._accounts.authenticate_user(
            request.user, optional(request.body, "auth", dict), operation="delete_devices",
            params=sorted(set(device_ids)))
        await self._devices.delete(user_id, device_ids, uiaa_result=result)

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("GET", v3("/devices"), self.get_devices, auth=Auth.GUEST_OK, rate_limit="default"),
            Endpoint("GET", v3("/devices/{deviceId}"), self.get_device, auth=Auth.GUEST_OK, rate_limit="default"),
            Endpoint("PUT", v3("/devices/{deviceId}"), self.update_device, auth=Auth.GUEST_OK, rate_limit="default"),
            Endpoint("DELETE", v3("/devices/{deviceId}"), self.delete_device,
                     rate_limit="default"),
            Endpoint("POST", v3("/delete_devices"), self.delete_devices,
                     rate_limit="default"),
        ]
