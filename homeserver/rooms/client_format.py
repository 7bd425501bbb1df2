"""PDU → client event: the format of /sync, /messages, /event and friends.

Spec: https://spec.matrix.org/v1.19/client-server-api/#room-event-format . Pure code, so
sync and every room endpoint format events the same way.
"""

from __future__ import annotations

from typing import Any

from homeserver.events.pdu import Pdu
from homeserver.events.redaction import redact

JsonDict = dict[str, Any]


def format_client_event(
    pdu: Pdu,
    *,
    now_ms: int,
    redacted_by: Pdu | None = None,
    transaction_id: str | None = None,
    replaces_state: str | None = None,
    prev_content: JsonDict | None = None,
    include_room_id: bool = True,
) -> JsonDict:
    """The client view of a PDU.

    `redacted_by`: the redaction that applies (content stripped, `unsigned.redacted_because`).
    `transaction_id`: only for the device that sent the event.
    `replaces_state`/`prev_content`: the state event this one replaced.
    `include_room_id`: False for /sync's per-room timelines (the room is the map key).
    """
    source = pdu.get_json() if redacted_by is None else redact(pdu.get_json(), pdu.room_version)
    event: JsonDict = {
        "event_id": pdu.event_id,
        "type": pdu.type,
        "content": source.get("content", {}),
        "sender": pdu.sender,
        "origin_server_ts": pdu.origin_server_ts,
    }
    if include_room_id:
        event["room_id"] = pdu.room_id
    if pdu.is_state():
        event["state_key"] = pdu.state_key
    redacts = pdu.redacts
    if pdu.type == "m.room.redaction" and redacts is not None:
        # Clients of every room version read the top-level key; v11+ also keep it in content.
        event["redacts"] = redacts
    unsigned: JsonDict = {"age": max(0, now_ms - pdu.origin_server_ts)}
    if transaction_id is not None:
        unsigned["transaction_id"] = transaction_id
    if redacted_by is not None:
        unsigned["redacted_because"] = format_client_event(
            redacted_by, now_ms=now_ms, include_room_id=include_room_id)
    if replaces_state is not None:
        unsigned["replaces_state"] = replaces_state
        if prev_content is not None:
            unsigned["prev_content"] = prev_content
    event["unsigned"] = unsigned
    return event
