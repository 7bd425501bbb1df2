"""Send-to-device messaging.

Spec: https://spec.matrix.org/v1.19/client-server-api/#send-to-device-messaging
"""

from __future__ import annotations

from client_api.endpoint import Auth, ClientRequest, Endpoint, JsonDict, v3
from client_api.validation import require
from homeserver.e2e.to_device import ToDevice
from homeserver.errors import BadJson, TooLarge
from homeserver.events.canonical_json import encode_canonical_json
from homeserver.types import UserID

MAX_TYPE_LENGTH = 255
# Per message content, as canonical JSON. A to-device message to another server travels
# in one EDU, and transactions must stay small enough for every server to accept; this
# is Synapse's limit (SOFT_MAX_EDU_SIZE), enforced for local targets too so that a client
# sending oversized messages finds out at once, not only when federating.
MAX_CONTENT_BYTES = 65536


class ToDeviceApi:
    def __init__(self, to_device: ToDevice):
        self._to_device = to_device

    async def send_to_device(self, request: ClientRequest) -> JsonDict:
        """PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}"""
        event_type = request.path_params["eventType"]
        if not event_type or len(event_type.encode()) > MAX_TYPE_LENGTH:
            raise BadJson(f"The event type must be 1 to {MAX_TYPE_LENGTH} bytes")
        messages = require(request.body, "messages", dict)
        for user_id, by_device in messages.items():
            UserID.parse(user_id)
            if not isinstance(by_device, dict) or not all(
                    isinstance(c, dict) for c in by_device.values()):
                raise BadJson("'messages' must map user IDs to device ID -> content object")
            for device_id, content in by_device.items():
                if len(encode_canonical_json(content)) > MAX_CONTENT_BYTES:
                    raise TooLarge(f"The message for {user_id} {device_id} is over "
                                   f"{MAX_CONTENT_BYTES} bytes")
        user = request.user
        await self._to_device.send(user.user_id, user.device_id, event_type,
                                   request.path_params["txnId"], messages)
        return {}

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("PUT", v3("/sendToDevice/{eventType}/{txnId}"), self.send_to_device,
                     auth=Auth.GUEST_OK, rate_limit="message"),
        ]
