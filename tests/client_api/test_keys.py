"""POST /keys/upload, /keys/query, /keys/claim with real ed25519 device keys."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import signedjson.key
from aiohttp.test_utils import TestClient

from homeserver.server import Homeserver
from tests.client_api.conftest import Connect, MakeHs, error, password_auth
from tests.client_api.e2e_helpers import C, Device, ok, sign
from tests.spec_schemas import validate_request, validate_response


@pytest.fixture
async def hs_client(make_hs: MakeHs, connect: Connect) -> tuple[Homeserver, TestClient]:
    hs = make_hs()
    return hs, await connect(hs)


async def test_upload_query_claim(client: TestClient) -> None:
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    body = {"device_keys": alice.device_keys(), "one_time_keys": alice.one_time_keys(3),
            "fallback_keys": alice.one_time_keys(1, fallback=True)}
    validate_request("keys.yaml", "/keys/upload", "post", body)
    uploaded = await ok(await alice.upload(**body))
    validate_response("keys.yaml", "/keys/upload", "post", uploaded)
    assert uploaded == {"one_time_key_counts": {"signed_curve25519": 3}}

    queried = await bob.query(alice.user_id, "@nobody:test.local")
    validate_response("keys.yaml", "/keys/query", "post", queried)
    keys = queried["device_keys"][alice.user_id][alice.device_id]
    assert keys["keys"][f"ed25519:{alice.device_id}"] == alice.ed25519
    assert keys["signatures"] == alice.device_keys()["signatures"]
    assert "device_display_name" in keys["unsigned"] or keys["unsigned"] == {}
    assert queried["device_keys"]["@nobody:test.local"] == {}
    only = await ok(await bob.post("/keys/query", {"device_keys": {alice.user_id: ["OTHER"]}}))
    assert only["device_keys"][alice.user_id] == {}

    claimed = await ok(await bob.claim(alice.user_id, alice.device_id))
    validate_response("keys.yaml", "/keys/claim", "post", claimed)
    ((key_id, key),) = claimed["one_time_keys"][alice.user_id][alice.device_id].items()
    assert key_id == "signed_curve25519:AAAA0001"  # the oldest upload first
    assert key["signatures"][alice.user_id]
    counts = await alice.upload()
    assert (await ok(counts))["one_time_key_counts"]["signed_curve25519"] == 2


async def test_fallback_key_used_when_one_time_keys_run_out(hs_client: Any) -> None:
    hs, client = hs_client
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    fallback = alice.one_time_keys(1, fallback=True)
    await ok(await alice.upload(device_keys=alice.device_keys(),
                                one_time_keys=alice.one_time_keys(1), fallback_keys=fallback))
    assert await hs.device_keys.unused_fallback_key_types(alice.user_id, alice.device_id) == \
        ["signed_curve25519"]
    first = await ok(await bob.claim(alice.user_id, alice.device_id))
    assert list(first["one_time_keys"][alice.user_id][alice.device_id]) != list(fallback)
    for _ in range(2):  # the fallback key is handed out again and again
        again = await ok(await bob.claim(alice.user_id, alice.device_id))
        assert again["one_time_keys"][alice.user_id][alice.device_id] == fallback
    assert await hs.device_keys.unused_fallback_key_types(alice.user_id, alice.device_id) == []
    # Re-uploading the same fallback key keeps it used; a new one is unused.
    await ok(await alice.upload(fallback_keys=fallback))
    assert await hs.device_keys.unused_fallback_key_types(alice.user_id, alice.device_id) == []
    await ok(await alice.upload(fallback_keys=alice.one_time_keys(1, fallback=True)))
    assert await hs.device_keys.unused_fallback_key_types(alice.user_id, alice.device_id) == \
        ["signed_curve25519"]
    assert await hs.device_keys.one_time_key_counts(alice.user_id, alice.device_id) == \
        {"signed_curve25519": 0}
    nothing = await ok(await bob.claim(alice.user_id, alice.device_id, "other_algorithm"))
    assert nothing["one_time_keys"] == {}


async def test_concurrent_claims_hand_each_key_out_once(client: TestClient) -> None:
    alice = await Device.register(client, "alice")
    await alice.upload_identity(otks=5)
    claimers = [await Device.register(client, f"claimer{i}") for i in range(4)]

    async def claim(i: int) -> Any:
        resp = await claimers[i % 4].claim(alice.user_id, alice.device_id)
        return await ok(resp)

    results = await asyncio.gather(*(claim(i) for i in range(20)))
    handed = [key_id for r in results
              for key_id in r["one_time_keys"].get(alice.user_id, {}).get(alice.device_id, {})]
    assert sorted(handed) == sorted(set(handed))
    assert len(handed) == 5


async def test_bad_signatures_and_identity_change_refused(client: TestClient) -> None:
    alice = await Device.register(client, "alice")
    mallory = await Device.register(client, "mallory")
    # Signed by another key than the one it publishes.
    forged = sign({k: v for k, v in alice.device_keys().items() if k != "signatures"},
                  alice.user_id, mallory.key)
    await error(await alice.upload(device_keys=forged), 400, "M_INVALID_SIGNATURE")
    tampered = alice.device_keys()
    tampered["algorithms"] = ["m.olm.v1.curve25519-aes-sha2"]
    await error(await alice.upload(device_keys=tampered), 400, "M_INVALID_SIGNATURE")
    # Signed one-time keys need the device's identity first, then its signature.
    await error(await alice.upload(one_time_keys=alice.one_time_keys(1)), 400, "M_INVALID_PARAM")
    await alice.upload_identity()
    bad_otk = {"signed_curve25519:X": sign({"key": alice.curve25519}, alice.user_id, mallory.key)}
    await error(await alice.upload(one_time_keys=bad_otk), 400, "M_INVALID_SIGNATURE")
    # Someone else's device.
    await error(await mallory.upload(device_keys=alice.device_keys()), 400, "M_INVALID_PARAM")
    # Same device, new identity keys.
    old_key = alice.key
    alice.key = signedjson.key.generate_signing_key(alice.device_id)
    await error(await alice.upload(device_keys=alice.device_keys()), 400, "M_INVALID_PARAM")
    alice.key = old_key
    assert (await ok(await alice.upload(device_keys=alice.device_keys())))  # same keys: fine
    # A one-time key ID is never reused for another key.
    otks = alice.one_time_keys(1)
    await ok(await alice.upload(one_time_keys=otks))
    await ok(await alice.upload(one_time_keys=otks))  # a retry
    ((key_id, _),) = otks.items()
    other = {key_id: sign({"key": alice.curve25519}, alice.user_id, alice.key)}
    await error(await alice.upload(one_time_keys=other), 400, "M_INVALID_PARAM")


@pytest.mark.parametrize("body", [
    {"device_keys": []},
    {"device_keys": {"user_id": "@alice:test.local"}},
    {"one_time_keys": []},
    {"one_time_keys": {"nocolon": "abc"}},
    {"one_time_keys": {"signed_curve25519:A": "not an object"}},
    {"one_time_keys": {"signed_curve25519:A": {"key": "short"}}},
    {"one_time_keys": {"curve25519:A": 5}},
    {"fallback_keys": "x"},
])
async def test_upload_bad_input(client: TestClient, body: dict[str, Any]) -> None:
    alice = await Device.register(client, "alice")
    resp = await alice.upload(**body)
    assert resp.status == 400, await resp.json()
    assert (await resp.json())["errcode"] in ("M_BAD_JSON", "M_INVALID_PARAM")


async def test_two_fallback_keys_of_one_algorithm_refused(client: TestClient) -> None:
    alice = await Device.register(client, "alice")
    await alice.upload_identity()
    await error(await alice.upload(fallback_keys=alice.one_time_keys(2, fallback=True)),
                400, "M_BAD_JSON")


@pytest.mark.parametrize(("path", "body", "errcode"), [
    ("/keys/query", {}, "M_MISSING_PARAM"),
    ("/keys/query", {"device_keys": []}, "M_BAD_JSON"),
    ("/keys/query", {"device_keys": {"not-a-user": []}}, "M_INVALID_PARAM"),
    ("/keys/query", {"device_keys": {"@a:test.local": "x"}}, "M_BAD_JSON"),
    ("/keys/claim", {}, "M_MISSING_PARAM"),
    ("/keys/claim", {"one_time_keys": {"@a:test.local": {"D": 5}}}, "M_BAD_JSON"),
    ("/keys/claim", {"one_time_keys": {"@a:test.local": []}}, "M_BAD_JSON"),
])
async def test_query_and_claim_bad_input(client: TestClient, path: str, body: dict[str, Any],
                                         errcode: str) -> None:
    alice = await Device.register(client, "alice")
    await error(await alice.post(path, body), 400, errcode)


async def test_remote_users_reported_as_failures(client: TestClient) -> None:
    alice = await Device.register(client, "alice")
    queried = await alice.query("@bob:elsewhere.example")
    assert "elsewhere.example" in queried["failures"]
    claimed = await ok(await alice.claim("@bob:elsewhere.example", "DEV"))
    assert "elsewhere.example" in claimed["failures"] and claimed["one_time_keys"] == {}


async def test_deleting_a_device_deletes_its_keys(hs_client: Any) -> None:
    hs, client = hs_client
    alice = await Device.register(client, "alice")
    phone = await alice.login_again()
    await phone.upload_identity(otks=2)
    before = await hs.device_lists.current_position()
    resp = await client.post(f"{C}/delete_devices", headers=alice.headers,
                             json={"devices": [phone.device_id]})
    session = (await resp.json())["session"]
    await ok(await client.post(f"{C}/delete_devices", headers=alice.headers, json={
        "devices": [phone.device_id],
        "auth": password_auth(alice.user_id, session=session)}))
    assert (await alice.query(alice.user_id))["device_keys"][alice.user_id] == {}
    assert await hs.device_keys.one_time_key_counts(alice.user_id, phone.device_id) == \
        {"signed_curve25519": 0}
    changed, _ = await hs.device_lists.device_list_changes(
        alice.user_id, before, await hs.device_lists.current_position())
    assert changed == {alice.user_id}
