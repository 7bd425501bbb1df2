"""What a push gateway receives: POST /_matrix/push/v1/notify.

Spec: https://spec.matrix.org/v1.19/push-gateway-api/#post_matrixpushv1notify . The
HTTP client is a port (`GatewayClient`) so the core never imports aiohttp; server.py
wires an adapter (homeserver/push/gateway_http.py).
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs

from homeserver.storage.push_queue import QueuedPush

JsonDict = dict[str, Any]


class GatewayUnreachable(Exception):
    """No HTTP answer at all (refused, reset, timed out): always worth retrying."""


@attrs.frozen
class GatewayResponse:
    status: int
    body: Any


class GatewayClient(Protocol):
    async def post_json(self, url: str, body: JsonDict) -> GatewayResponse: ...

    async def post_bytes(self, url: str, body: bytes,
                         headers: dict[str, str]) -> GatewayResponse:
        """An opaque body (web push ciphertext) with the caller's headers."""
        ...

    async def close(self) -> None: ...


def tweaks_of(actions: list[Any]) -> JsonDict:
    tweaks: JsonDict = {}
    for action in actions:
        if isinstance(action, dict) and isinstance(action.get("set_tweak"), str):
            # Spec: a highlight tweak without a value means true.
            tweaks[action["set_tweak"]] = action.get("value", True)
    return tweaks


def prio_of(tweaks: JsonDict) -> str:
    """'high' for what should wake a phone: a highlight or an audible notification (the
    default rules give one-to-one rooms and calls a sound)."""
    return "high" if tweaks.get("highlight") is True or "sound" in tweaks else "low"


def notification_body(item: QueuedPush, event: JsonDict | None) -> JsonDict:
    """The request body for one queued notification. `event` holds the full-format
    fields (type, sender, content, room name, ...); None for `format: event_id_only`."""
    tweaks = tweaks_of(item.actions)
    device: JsonDict = {
        "app_id": item.app_id, "pushkey": item.pushkey,
        "pushkey_ts": item.pushkey_ts_ms // 1000,
        # Spec: data minus url and format, which are for the homeserver only.
        "data": {k: v for k, v in item.data.items() if k not in ("url", "format")},
    }
    if tweaks:
        device["tweaks"] = tweaks
    notification: JsonDict = {"event_id": item.event_id, "room_id": item.room_id,
                              "prio": prio_of(tweaks), "counts": {"unread": item.unread},
                              "devices": [device]}
    if event is not None:
        notification.update(event)
    return {"notification": notification}


def rejected_pushkeys(body: Any) -> list[str]:
    rejected = body.get("rejected") if isinstance(body, dict) else None
    if not isinstance(rejected, list):
        return []
    return [k for k in rejected if isinstance(k, str)]
