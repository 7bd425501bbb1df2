"""Real E2EE key material for endpoint tests: ed25519 device and cross-signing keys made
with signedjson/PyNaCl, signed exactly as a client signs them."""

from __future__ import annotations

import copy
from typing import Any

import nacl.public
import signedjson.key
import signedjson.sign
from aiohttp.test_utils import TestClient
from signedjson.types import SigningKey
from unpaddedbase64 import encode_base64

from homeserver.e2e.device_lists import DEVICE_LISTS
from homeserver.server import Homeserver
from homeserver.sync.tokens import SyncToken
from tests.client_api.conftest import PASSWORD, bearer, register

C = "/_matrix/client/v3"
ALGORITHMS = ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"]


async def ok(resp: Any) -> Any:
    body = await resp.json()
    assert resp.status == 200, body
    return body


def public_key(key: SigningKey) -> str:
    return signedjson.key.encode_verify_key_base64(signedjson.key.get_verify_key(key))


def curve25519_key() -> str:
    return encode_base64(bytes(nacl.public.PrivateKey.generate().public_key))


def sign(obj: dict[str, Any], user_id: str, key: SigningKey) -> dict[str, Any]:
    return signedjson.sign.sign_json(copy.deepcopy(obj), user_id, key)  # type: ignore[no-any-return]


def cross_signing_key() -> SigningKey:
    """An ed25519 key whose key ID is its own public key, as cross-signing keys are named."""
    key = signedjson.key.generate_signing_key("tmp")
    key.version = public_key(key)
    return key


class Device:
    """One logged-in device with its own ed25519 identity key."""

    def __init__(self, client: TestClient, user_id: str, device_id: str, token: str):
        self.client = client
        self.user_id = user_id
        self.device_id = device_id
        self.headers = bearer(token)
        self.key = signedjson.key.generate_signing_key(device_id)
        self.curve25519 = curve25519_key()
        self._next_key = 0

    @classmethod
    async def register(cls, client: TestClient, name: str) -> Device:
        body = await register(client, name)
        return cls(client, body["user_id"], body["device_id"], body["access_token"])

    async def login_again(self) -> Device:
        """A second device of the same user."""
        body = await ok(await self.client.post(f"{C}/login", json={
            "type": "m.login.password", "password": PASSWORD,
            "identifier": {"type": "m.id.user", "user": self.user_id}}))
        return Device(self.client, body["user_id"], body["device_id"], body["access_token"])

    @property
    def ed25519(self) -> str:
        return public_key(self.key)

    def device_keys(self) -> dict[str, Any]:
        return sign({"user_id": self.user_id, "device_id": self.device_id,
                     "algorithms": ALGORITHMS,
                     "keys": {f"curve25519:{self.device_id}": self.curve25519,
                              f"ed25519:{self.device_id}": self.ed25519}},
                    self.user_id, self.key)

    def one_time_keys(self, n: int, *, fallback: bool = False) -> dict[str, Any]:
        keys = {}
        for _ in range(n):
            self._next_key += 1
            body: dict[str, Any] = {"key": curve25519_key()}
            if fallback:
                body["fallback"] = True
            keys[f"signed_curve25519:AAAA{self._next_key:04d}"] = sign(body, self.user_id, self.key)
        return keys

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        return await self.client.post(f"{C}{path}", headers=self.headers, json=body)

    async def upload(self, **body: Any) -> Any:
        return await self.post("/keys/upload", body)

    async def upload_identity(self, otks: int = 0) -> dict[str, Any]:
        body: dict[str, Any] = {"device_keys": self.device_keys()}
        if otks:
            body["one_time_keys"] = self.one_time_keys(otks)
        return await ok(await self.upload(**body))  # type: ignore[no-any-return]

    async def query(self, *users: str) -> dict[str, Any]:
        return await ok(await self.post("/keys/query", {"device_keys": {u: [] for u in users}}))  # type: ignore[no-any-return]

    async def claim(self, user_id: str, device_id: str,
                    algorithm: str = "signed_curve25519") -> Any:
        return await self.post("/keys/claim",
                               {"one_time_keys": {user_id: {device_id: algorithm}}})

    async def create_room(self, **body: Any) -> str:
        return (await ok(await self.post("/createRoom", body)))["room_id"]  # type: ignore[no-any-return]

    async def join(self, room_id: str) -> None:
        await ok(await self.post(f"/join/{room_id}", {}))

    async def leave(self, room_id: str) -> None:
        await ok(await self.post(f"/rooms/{room_id}/leave", {}))

    async def changes(self, since: str, to: str) -> dict[str, Any]:
        resp = await self.client.get(f"{C}/keys/changes", headers=self.headers,
                                     params={"from": since, "to": to})
        return await ok(resp)  # type: ignore[no-any-return]


async def device_lists_token(hs: Homeserver) -> str:
    """A sync token at the current device_lists position (what /sync's next_batch holds)."""
    return SyncToken({DEVICE_LISTS: await hs.device_lists.current_position()}).serialize()
