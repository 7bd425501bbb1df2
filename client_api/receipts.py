"""Receipts and read markers.

Spec: https://spec.matrix.org/v1.19/client-server-api/#receipts and #fully-read-markers
"""

from __future__ import annotations

from client_api.endpoint import Auth, ClientRequest, Endpoint, JsonDict, v3
from client_api.validation import optional
from homeserver.errors import InvalidParam
from homeserver.sync.receipts import FULLY_READ, RECEIPT_TYPES, ReceiptService, validate_thread_id
from homeserver.types import EventID, RoomID


class Receipts:
    def __init__(self, receipts: ReceiptService):
        self._receipts = receipts

    async def post_receipt(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}"""
        room_id = str(RoomID.parse(request.path_params["roomId"]))
        event_id = str(EventID.parse(request.path_params["eventId"]))
        receipt_type = request.path_params["receiptType"]
        if receipt_type not in (*RECEIPT_TYPES, FULLY_READ):
            raise InvalidParam(f"Receipt type must be one of {', '.join((*RECEIPT_TYPES, FULLY_READ))}")
        thread_id = validate_thread_id(receipt_type, request.body.get("thread_id"))
        await self._receipts.post_receipt(request.user.user_id, room_id, receipt_type,
                                          event_id, thread_id)
        return {}

    async def set_read_marker(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/read_markers"""
        room_id = str(RoomID.parse(request.path_params["roomId"]))
        ids = {}
        for key in (FULLY_READ, "m.read", "m.read.private"):
            value = optional(request.body, key, str)
            ids[key] = None if value is None else str(EventID.parse(value))
        await self._receipts.set_read_markers(
            request.user.user_id, room_id, fully_read=ids[FULLY_READ], read=ids["m.read"],
            read_private=ids["m.read.private"])
        return {}

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("POST", v3("/rooms/{roomId}/receipt/{receiptType}/{eventId}"),
                     self.post_receipt, auth=Auth.GUEST_OK),
            Endpoint("POST", v3("/rooms/{roomId}/read_markers"), self.set_read_marker,
                     auth=Auth.GUEST_OK),
        ]
