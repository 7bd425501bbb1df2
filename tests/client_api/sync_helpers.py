"""A small client for /sync tests: users, rooms, messages, and syncs whose bodies are
checked against the spec's OpenAPI schema."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable
from typing import Any

from aiohttp.test_utils import TestClient

from homeserver.sync.notifier import Notifier
from tests.client_api.conftest import bearer, register
from tests.spec_schemas import validate_response

C = "/_matrix/client/v3"
_txn = itertools.count()


async def ok(resp: Any) -> Any:
    body = await resp.json()
    assert resp.status == 200, body
    return body


class User:
    def __init__(self, client: TestClient, user_id: str, token: str):
        self.client = client
        self.user_id = user_id
        self.token = token
        self.headers = bearer(token)

    @classmethod
    async def register(cls, client: TestClient, name: str) -> User:
        body = await register(client, name)
        return cls(client, body["user_id"], body["access_token"])

    async def create_room(self, **body: Any) -> str:
        resp = await self.client.post(f"{C}/createRoom", headers=self.headers, json=body)
        return (await ok(resp))["room_id"]  # type: ignore[no-any-return]

    async def join(self, room_id: str) -> None:
        await ok(await self.client.post(f"{C}/join/{room_id}", headers=self.headers, json={}))

    async def leave(self, room_id: str) -> None:
        await ok(await self.client.post(f"{C}/rooms/{room_id}/leave", headers=self.headers,
                                        json={}))

    async def invite(self, room_id: str, user_id: str) -> None:
        await ok(await self.client.post(f"{C}/rooms/{room_id}/invite", headers=self.headers,
                                        json={"user_id": user_id}))

    async def send(self, room_id: str, body: str) -> str:
        resp = await self.client.put(f"{C}/rooms/{room_id}/send/m.room.message/t{next(_txn)}",
                                     headers=self.headers, json={"msgtype": "m.text", "body": body})
        return (await ok(resp))["event_id"]  # type: ignore[no-any-return]

    async def set_state(self, room_id: str, event_type: str, content: dict[str, Any],
                        state_key: str = "") -> str:
        resp = await self.client.put(f"{C}/rooms/{room_id}/state/{event_type}/{state_key}",
                                     headers=self.headers, json=content)
        return (await ok(resp))["event_id"]  # type: ignore[no-any-return]

    async def sync(self, *, since: str | None = None, timeout_ms: int = 0,
                   filter: dict[str, Any] | str | None = None, presence: str = "offline",
                   **params: str) -> dict[str, Any]:
        """A /sync that must succeed and match the spec's schema."""
        query: dict[str, str] = {"timeout": str(timeout_ms), "set_presence": presence, **params}
        if since is not None:
            query["since"] = since
        if filter is not None:
            query["filter"] = filter if isinstance(filter, str) else json.dumps(filter)
        body = await ok(await self.client.get(f"{C}/sync", headers=self.headers, params=query))
        validate_response("sync.yaml", "/sync", "get", body)
        return body  # type: ignore[no-any-return]


def timeline(body: dict[str, Any], room_id: str, section: str = "join") -> list[dict[str, Any]]:
    return body["rooms"][section][room_id]["timeline"]["events"]  # type: ignore[no-any-return]


def bodies(events: list[dict[str, Any]]) -> list[str]:
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]


def state_keys(body: dict[str, Any], room_id: str, section: str = "join") -> set[tuple[str, str]]:
    events = body["rooms"][section][room_id]["state"]["events"]
    return {(e["type"], e["state_key"]) for e in events}


async def woken_by(notifier: Notifier, polls: list[Awaitable[dict[str, Any]]],
                   wake: Awaitable[Any]) -> list[dict[str, Any]]:
    """Start the long-polls, and once all of them wait on the notifier, `wake` them."""
    tasks = [asyncio.ensure_future(p) for p in polls]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while notifier.waiter_count() < len(tasks):
        assert loop.time() < deadline, "the syncs never started waiting"
        await asyncio.sleep(0.001)
    await wake
    return list(await asyncio.gather(*tasks))
