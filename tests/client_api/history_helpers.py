"""Helpers for the room history and relations endpoint tests: users, rooms and events
made through the real endpoints."""

from __future__ import annotations

import itertools
import json
from typing import Any
from urllib.parse import quote

from aiohttp.test_utils import TestClient

from tests.client_api.conftest import bearer, register

C = "/_matrix/client/v3"
V1 = "/_matrix/client/v1"
_txn = itertools.count()


async def users(client: TestClient, *names: str) -> list[dict[str, str]]:
    return [bearer((await register(client, name))["access_token"]) for name in names]


async def ok(resp: Any) -> Any:
    body = await resp.json()
    assert resp.status == 200, body
    return body


async def create_room(client: TestClient, headers: dict[str, str], **body: Any) -> str:
    return (await ok(await client.post(f"{C}/createRoom", headers=headers, json=body)))["room_id"]  # type: ignore[no-any-return]


async def join(client: TestClient, headers: dict[str, str], room_id: str) -> None:
    await ok(await client.post(f"{C}/rooms/{room_id}/join", headers=headers, json={}))


async def send(client: TestClient, headers: dict[str, str], room_id: str, content: dict[str, Any],
               event_type: str = "m.room.message") -> str:
    resp = await client.put(f"{C}/rooms/{room_id}/send/{event_type}/t{next(_txn)}",
                            headers=headers, json=content)
    return (await ok(resp))["event_id"]  # type: ignore[no-any-return]


async def text(client: TestClient, headers: dict[str, str], room_id: str, body: str,
               **extra: Any) -> str:
    return await send(client, headers, room_id, {"msgtype": "m.text", "body": body, **extra})


async def set_state(client: TestClient, headers: dict[str, str], room_id: str, event_type: str,
                    content: dict[str, Any]) -> str:
    resp = await client.put(f"{C}/rooms/{room_id}/state/{event_type}", headers=headers, json=content)
    return (await ok(resp))["event_id"]  # type: ignore[no-any-return]


async def redact(client: TestClient, headers: dict[str, str], room_id: str, event_id: str) -> str:
    resp = await client.put(f"{C}/rooms/{room_id}/redact/{event_id}/r{next(_txn)}",
                            headers=headers, json={})
    return (await ok(resp))["event_id"]  # type: ignore[no-any-return]


def query(**params: Any) -> str:
    """A query string; dicts become JSON (the `filter` parameter)."""
    parts = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, dict):
            value = json.dumps(value)
        parts.append(f"{key}={quote(str(value), safe='')}")
    return "?" + "&".join(parts)


def bodies(events: list[dict[str, Any]]) -> list[str]:
    return [e["content"].get("body") for e in events]
