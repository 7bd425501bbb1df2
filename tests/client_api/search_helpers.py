"""Small client helpers for the directory and search endpoint tests."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.client_api.conftest import bearer, register

V3 = "/_matrix/client/v3"


class User:
    def __init__(self, client: TestClient, user_id: str, token: str):
        self.client = client
        self.user_id = user_id
        self.headers = bearer(token)
        self._txn = 0

    async def call(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        resp = await self.client.request(method, V3 + path, headers=self.headers, json=body)
        result = await resp.json()
        assert resp.status == status, result
        return result

    async def create_room(self, **body: Any) -> str:
        return (await self.call("POST", "/createRoom", body))["room_id"]  # type: ignore[no-any-return]

    async def join(self, room_id: str) -> None:
        await self.call("POST", f"/join/{room_id}", {})

    async def send(self, room_id: str, body: str, msgtype: str = "m.text") -> str:
        self._txn += 1
        result = await self.call("PUT", f"/rooms/{room_id}/send/m.room.message/t{self._txn}",
                                 {"msgtype": msgtype, "body": body})
        return result["event_id"]  # type: ignore[no-any-return]

    async def redact(self, room_id: str, event_id: str) -> str:
        self._txn += 1
        result = await self.call("PUT", f"/rooms/{room_id}/redact/{event_id}/r{self._txn}", {})
        return result["event_id"]  # type: ignore[no-any-return]


async def new_user(client: TestClient, name: str, displayname: str | None = None) -> User:
    reg = await register(client, name)
    user = User(client, reg["user_id"], reg["access_token"])
    if displayname is not None:
        await user.call("PUT", f"/profile/{user.user_id}/displayname", {"displayname": displayname})
    return user
