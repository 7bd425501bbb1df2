"""Server-side key backup: /room_keys/version and /room_keys/keys."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.client_api.conftest import error
from tests.client_api.e2e_helpers import C, Device, ok
from tests.spec_schemas import validate_request, validate_response

ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
AUTH_DATA = {"public_key": "abcdefg", "signatures": {}}
ROOM = "!room:test.local"


def key_data(first: int = 0, forwarded: int = 0, verified: bool = False,
             tag: str = "x") -> dict[str, Any]:
    return {"first_message_index": first, "forwarded_count": forwarded, "is_verified": verified,
            "session_data": {"ephemeral": tag, "ciphertext": tag, "mac": tag}}


class Backup:
    def __init__(self, device: Device):
        self.device = device
        self.client = device.client
        self.headers = device.headers

    async def create(self) -> str:
        body = {"algorithm": ALGORITHM, "auth_data": AUTH_DATA}
        validate_request("key_backup.yaml", "/room_keys/version", "post", body)
        resp = await self.client.post(f"{C}/room_keys/version", headers=self.headers, json=body)
        created = await ok(resp)
        validate_response("key_backup.yaml", "/room_keys/version", "post", created)
        return created["version"]  # type: ignore[no-any-return]

    async def put(self, version: str, session: str, data: dict[str, Any]) -> Any:
        return await self.client.put(f"{C}/room_keys/keys/{ROOM}/{session}?version={version}",
                                     headers=self.headers, json=data)

    async def get(self, path: str) -> Any:
        return await self.client.get(f"{C}{path}", headers=self.headers)


@pytest.fixture
async def backup(client: TestClient) -> Backup:
    return Backup(await Device.register(client, "alice"))


async def test_versions(backup: Backup) -> None:
    await error(await backup.get("/room_keys/version"), 404, "M_NOT_FOUND")
    v1 = await backup.create()
    info = await ok(await backup.get("/room_keys/version"))
    validate_response("key_backup.yaml", "/room_keys/version", "get", info)
    assert info == {"algorithm": ALGORITHM, "auth_data": AUTH_DATA, "count": 0,
                    "etag": info["etag"], "version": v1}
    v2 = await backup.create()
    assert v2 != v1 and (await ok(await backup.get("/room_keys/version")))["version"] == v2
    assert (await ok(await backup.get(f"/room_keys/version/{v1}")))["version"] == v1
    new_auth = {"public_key": "other", "signatures": {}}
    path = f"{C}/room_keys/version/{v2}"
    await ok(await backup.client.put(path, headers=backup.headers,
                                     json={"algorithm": ALGORITHM, "auth_data": new_auth}))
    assert (await ok(await backup.get(f"/room_keys/version/{v2}")))["auth_data"] == new_auth
    await error(await backup.client.put(path, headers=backup.headers, json={
        "algorithm": ALGORITHM, "auth_data": new_auth, "version": v1}), 400, "M_INVALID_PARAM")
    await error(await backup.client.put(path, headers=backup.headers, json={
        "algorithm": "m.other", "auth_data": new_auth}), 400, "M_INVALID_PARAM")
    await ok(await backup.client.delete(path, headers=backup.headers))
    await ok(await backup.client.delete(path, headers=backup.headers))  # deleted already: 200
    assert (await ok(await backup.get("/room_keys/version")))["version"] == v1
    await error(await backup.get(f"/room_keys/version/{v2}"), 404, "M_NOT_FOUND")
    for missing in ("999999", "abc"):
        await error(await backup.client.delete(f"{C}/room_keys/version/{missing}",
                                               headers=backup.headers), 404, "M_NOT_FOUND")
        await error(await backup.get(f"/room_keys/version/{missing}"), 404, "M_NOT_FOUND")


async def test_replacement_rules_etag_and_count(backup: Backup) -> None:
    version = await backup.create()
    first = await ok(await backup.put(version, "s1", key_data(first=5, forwarded=2)))
    validate_response("key_backup.yaml", "/room_keys/keys/{roomId}/{sessionId}", "put", first)
    assert first["count"] == 1

    async def stored() -> dict[str, Any]:
        return await ok(await backup.get(f"/room_keys/keys/{ROOM}/s1?version={version}"))  # type: ignore[no-any-return]

    # Worse keys never replace the stored one, and leave the etag alone.
    for worse in (key_data(first=6, forwarded=0, tag="w1"), key_data(first=5, forwarded=3, tag="w2")):
        unchanged = await ok(await backup.put(version, "s1", worse))
        assert unchanged == first
    assert (await stored())["session_data"]["mac"] == "x"
    # A lower first_message_index wins, then a lower forwarded_count, then is_verified.
    steps = [key_data(first=3, forwarded=2, tag="a"), key_data(first=3, forwarded=1, tag="b"),
             key_data(first=9, forwarded=9, verified=True, tag="c")]
    etags = {first["etag"]}
    for step in steps:
        result = await ok(await backup.put(version, "s1", step))
        assert result["count"] == 1 and result["etag"] not in etags
        etags.add(result["etag"])
        assert await stored() == step
    # An unverified key never replaces a verified one, however good.
    await ok(await backup.put(version, "s1", key_data(first=0, forwarded=0, tag="d")))
    assert (await stored())["is_verified"] is True

    bulk = {"rooms": {ROOM: {"sessions": {"s2": key_data(), "s3": key_data()}},
                      "!other:test.local": {"sessions": {"s4": key_data()}}}}
    validate_request("key_backup.yaml", "/room_keys/keys", "put", bulk)
    put = await ok(await backup.client.put(f"{C}/room_keys/keys?version={version}",
                                           headers=backup.headers, json=bulk))
    assert put["count"] == 4
    everything = await ok(await backup.get(f"/room_keys/keys?version={version}"))
    validate_response("key_backup.yaml", "/room_keys/keys", "get", everything)
    assert set(everything["rooms"][ROOM]["sessions"]) == {"s1", "s2", "s3"}
    room = await ok(await backup.get(f"/room_keys/keys/{ROOM}?version={version}"))
    assert set(room["sessions"]) == {"s1", "s2", "s3"}
    empty = await ok(await backup.get(f"/room_keys/keys/!none:test.local?version={version}"))
    assert empty == {"sessions": {}}
    info = await ok(await backup.get("/room_keys/version"))
    assert info["count"] == 4 and info["etag"] == put["etag"]

    deleted = await ok(await backup.client.delete(f"{C}/room_keys/keys/{ROOM}/s1?version={version}",
                                                  headers=backup.headers))
    assert deleted["count"] == 3 and deleted["etag"] != put["etag"]
    await error(await backup.get(f"/room_keys/keys/{ROOM}/s1?version={version}"), 404, "M_NOT_FOUND")
    deleted = await ok(await backup.client.delete(f"{C}/room_keys/keys/{ROOM}?version={version}",
                                                  headers=backup.headers))
    assert deleted["count"] == 1
    deleted = await ok(await backup.client.delete(f"{C}/room_keys/keys?version={version}",
                                                  headers=backup.headers))
    assert deleted["count"] == 0


async def test_wrong_version(backup: Backup) -> None:
    await error(await backup.put("1", "s", key_data()), 404, "M_NOT_FOUND")
    old = await backup.create()
    current = await backup.create()
    body = await error(await backup.put(old, "s", key_data()), 403, "M_WRONG_ROOM_KEYS_VERSION")
    assert body["current_version"] == current
    await error(await backup.put("424242", "s", key_data()), 404, "M_NOT_FOUND")
    resp = await backup.client.put(f"{C}/room_keys/keys/{ROOM}/s", headers=backup.headers,
                                   json=key_data())
    await error(resp, 400, "M_MISSING_PARAM")
    await error(await backup.get(f"/room_keys/keys?version={old}x"), 404, "M_NOT_FOUND")


async def test_backups_are_per_user(backup: Backup) -> None:
    version = await backup.create()
    await ok(await backup.put(version, "s", key_data()))
    bob = Backup(await Device.register(backup.client, "bob"))
    await error(await bob.get(f"/room_keys/keys?version={version}"), 404, "M_NOT_FOUND")
    await error(await bob.put(version, "s", key_data()), 404, "M_NOT_FOUND")


@pytest.mark.parametrize("data", [
    {}, {"first_message_index": -1, "forwarded_count": 0, "is_verified": False, "session_data": {}},
    {"first_message_index": 0, "forwarded_count": 0, "is_verified": "no", "session_data": {}},
    {"first_message_index": 0, "forwarded_count": True, "is_verified": False, "session_data": {}},
    {"first_message_index": 0, "forwarded_count": 0, "is_verified": False, "session_data": "x"},
])
async def test_bad_key_data(backup: Backup, data: dict[str, Any]) -> None:
    version = await backup.create()
    await error(await backup.put(version, "s", data), 400, "M_BAD_JSON")


@pytest.mark.parametrize("body", [
    {}, {"algorithm": ALGORITHM}, {"algorithm": ALGORITHM, "auth_data": []},
    {"algorithm": 5, "auth_data": {}}, {"algorithm": "m.unknown", "auth_data": {}},
])
async def test_bad_version_body(backup: Backup, body: dict[str, Any]) -> None:
    resp = await backup.client.post(f"{C}/room_keys/version", headers=backup.headers, json=body)
    assert resp.status == 400
    assert (await resp.json())["errcode"] in ("M_BAD_JSON", "M_INVALID_PARAM")
