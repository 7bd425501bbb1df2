"""Cross-signing: POST /keys/device_signing/upload (UIAA rules) and /keys/signatures/upload."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from signedjson.types import SigningKey

from tests.client_api.conftest import PASSWORD, error, password_auth
from tests.client_api.e2e_helpers import Device, cross_signing_key, ok, public_key, sign
from tests.spec_schemas import validate_request, validate_response


class CrossSigningKeys:
    def __init__(self, device: Device):
        self.user_id = device.user_id
        self.master = cross_signing_key()
        self.self_signing = cross_signing_key()
        self.user_signing = cross_signing_key()

    def key(self, usage: str, key: SigningKey) -> dict[str, Any]:
        pub = public_key(key)
        obj = {"user_id": self.user_id, "usage": [usage], "keys": {f"ed25519:{pub}": pub}}
        return obj if usage == "master" else sign(obj, self.user_id, self.master)

    def body(self) -> dict[str, Any]:
        return {"master_key": self.key("master", self.master),
                "self_signing_key": self.key("self_signing", self.self_signing),
                "user_signing_key": self.key("user_signing", self.user_signing)}


async def _upload(device: Device, body: dict[str, Any]) -> Any:
    return await device.post("/keys/device_signing/upload", body)


async def test_first_upload_without_uiaa_then_uiaa(client: TestClient) -> None:
    alice = await Device.register(client, "alice")
    keys = CrossSigningKeys(alice)
    body = keys.body()
    validate_request("cross_signing.yaml", "/keys/device_signing/upload", "post", body)
    assert await ok(await _upload(alice, body)) == {}
    # The same keys again: idempotent, no UIAA (spec's second exception).
    assert await ok(await _upload(alice, body)) == {}
    # New keys need the password.
    replacement = CrossSigningKeys(alice).body()
    challenge = await _upload(alice, replacement)
    assert challenge.status == 401
    session = (await challenge.json())["session"]
    wrong = await _upload(alice, {**replacement, "auth": password_auth(alice.user_id, "nope",
                                                                         session)})
    assert wrong.status == 401 and (await wrong.json())["errcode"] == "M_FORBIDDEN"
    done = await _upload(alice, {**replacement, "auth": password_auth(alice.user_id,
                                                                        session=session)})
    assert await ok(done) == {}
    queried = await alice.query(alice.user_id)
    master = replacement["master_key"]["keys"]
    assert queried["master_keys"][alice.user_id]["keys"] == master


async def test_query_visibility(client: TestClient) -> None:
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    keys = CrossSigningKeys(alice)
    await ok(await _upload(alice, keys.body()))
    own = await alice.query(alice.user_id)
    validate_response("keys.yaml", "/keys/query", "post", own)
    assert set(own) >= {"master_keys", "self_signing_keys", "user_signing_keys"}
    assert own["self_signing_keys"][alice.user_id] == keys.body()["self_signing_key"]
    theirs = await bob.query(alice.user_id)
    assert alice.user_id in theirs["master_keys"] and alice.user_id in theirs["self_signing_keys"]
    assert alice.user_id not in theirs.get("user_signing_keys", {})


@pytest.mark.parametrize("mutate", ["unsigned_ssk", "wrong_user", "two_keys", "bad_key_id",
                                    "no_master", "wrong_usage", "not_object"])
async def test_bad_uploads(client: TestClient, mutate: str) -> None:
    alice = await Device.register(client, "alice")
    keys = CrossSigningKeys(alice)
    body = keys.body()
    expected = ("M_BAD_JSON", 400)
    if mutate == "unsigned_ssk":
        body["self_signing_key"] = sign({k: v for k, v in body["self_signing_key"].items()
                                         if k != "signatures"}, alice.user_id, keys.user_signing)
        expected = ("M_INVALID_SIGNATURE", 400)
    elif mutate == "wrong_user":
        body["master_key"]["user_id"] = "@bob:test.local"
        expected = ("M_INVALID_PARAM", 400)
    elif mutate == "two_keys":
        body["master_key"]["keys"]["ed25519:other"] = "other"
    elif mutate == "bad_key_id":
        pub = public_key(keys.master)
        body["master_key"]["keys"] = {"ed25519:xyz": pub}
    elif mutate == "no_master":
        del body["master_key"]
        expected = ("M_MISSING_PARAM", 400)
    elif mutate == "wrong_usage":
        body["master_key"]["usage"] = ["self_signing"]
    elif mutate == "not_object":
        body["master_key"] = "x"
    await error(await _upload(alice, body), expected[1], expected[0])


async def test_signature_upload(client: TestClient) -> None:
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    await alice.upload_identity()
    await bob.upload_identity()
    a_keys, b_keys = CrossSigningKeys(alice), CrossSigningKeys(bob)
    await ok(await _upload(alice, a_keys.body()))
    await ok(await _upload(bob, b_keys.body()))

    own_device = sign(alice.device_keys(), alice.user_id, a_keys.self_signing)
    master_by_device = sign(a_keys.key("master", a_keys.master), alice.user_id, alice.key)
    bobs_master = sign(b_keys.key("master", b_keys.master), alice.user_id, a_keys.user_signing)
    forged = sign(alice.device_keys(), alice.user_id, a_keys.user_signing)  # wrong key
    body = {alice.user_id: {alice.device_id: own_device,
                            public_key(a_keys.master): master_by_device},
            bob.user_id: {public_key(b_keys.master): bobs_master}}
    validate_request("cross_signing.yaml", "/keys/signatures/upload", "post", body)
    result = await ok(await alice.post("/keys/signatures/upload", body))
    validate_response("cross_signing.yaml", "/keys/signatures/upload", "post", result)
    assert result == {"failures": {}}

    ssk_id = f"ed25519:{public_key(a_keys.self_signing)}"
    seen_by_bob = await bob.query(alice.user_id, bob.user_id)
    device = seen_by_bob["device_keys"][alice.user_id][alice.device_id]
    assert ssk_id in device["signatures"][alice.user_id]
    assert f"ed25519:{alice.device_id}" in \
        seen_by_bob["master_keys"][alice.user_id]["signatures"][alice.user_id]
    # Alice's signature of Bob's master key is hers alone to see.
    usk_id = f"ed25519:{public_key(a_keys.user_signing)}"
    assert alice.user_id not in seen_by_bob["master_keys"][bob.user_id].get("signatures", {})
    seen_by_alice = await alice.query(bob.user_id)
    assert usk_id in seen_by_alice["master_keys"][bob.user_id]["signatures"][alice.user_id]

    failures = (await ok(await alice.post("/keys/signatures/upload", {alice.user_id: {
        alice.device_id: {**forged},
        "UNKNOWNDEVICE": own_device,
        public_key(a_keys.master): {**master_by_device, "usage": ["other"]},
    }})))["failures"][alice.user_id]
    assert failures[alice.device_id]["errcode"] == "M_INVALID_SIGNATURE"
    assert failures["UNKNOWNDEVICE"]["errcode"] == "M_NOT_FOUND"
    assert failures[public_key(a_keys.master)]["errcode"] == "M_INVALID_PARAM"


async def test_signatures_need_the_signing_keys(client: TestClient) -> None:
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    await alice.upload_identity()
    b_keys = CrossSigningKeys(bob)
    await ok(await _upload(bob, b_keys.body()))
    some_key = cross_signing_key()
    result = await ok(await alice.post("/keys/signatures/upload", {
        alice.user_id: {alice.device_id: sign(alice.device_keys(), alice.user_id, some_key)},
        bob.user_id: {public_key(b_keys.master):
                      sign(b_keys.key("master", b_keys.master), alice.user_id, some_key)},
        "@carol:elsewhere.example": {"KEY": {}},
    }))
    assert result["failures"][alice.user_id][alice.device_id]["errcode"] == "M_NOT_FOUND"
    assert result["failures"][bob.user_id][public_key(b_keys.master)]["errcode"] == "M_NOT_FOUND"
    assert result["failures"]["@carol:elsewhere.example"]["KEY"]["errcode"] == "M_NOT_FOUND"
    await error(await alice.post("/keys/signatures/upload", {alice.user_id: "x"}), 400,
                "M_BAD_JSON")
    await error(await alice.post("/keys/signatures/upload", {"nope": {}}), 400,
                "M_INVALID_PARAM")


async def test_public_key_equal_to_a_device_id_refused(client: TestClient) -> None:
    alice = await Device.register(client, "alice")
    keys = CrossSigningKeys(alice)
    await ok(await client.post("/_matrix/client/v3/login", json={
        "type": "m.login.password", "password": PASSWORD, "device_id": public_key(keys.master),
        "identifier": {"type": "m.id.user", "user": alice.user_id}}))
    await error(await _upload(alice, keys.body()), 403, "M_FORBIDDEN")
