"""Issue 6's bad-input acceptance cases, each checked for its exact Matrix error AND for
having stored nothing: forged device-key signatures, keys for another user's device,
malformed one-time keys, oversized to-device payloads, unknown backup versions; and 50
concurrent /keys/claim calls for one device never handing out a key twice."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from homeserver.server import Homeserver
from tests.client_api.conftest import Connect, MakeHs, error
from tests.client_api.e2e_helpers import C, Device, curve25519_key, ok, sign

BACKUP = {"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
          "auth_data": {"public_key": "abc", "signatures": {}}}
SESSION = {"first_message_index": 0, "forwarded_count": 0, "is_verified": False,
           "session_data": {"ephemeral": "e", "ciphertext": "c", "mac": "m"}}
ROOM = "!room:test.local"


@pytest.fixture
async def hs_client(make_hs: MakeHs, connect: Connect) -> tuple[Homeserver, TestClient]:
    hs = make_hs()
    return hs, await connect(hs)


async def assert_no_keys(hs: Homeserver, observer: Device, device: Device) -> None:
    """Nothing of `device`'s keys is stored: not its identity, one-time or fallback keys."""
    queried = await observer.query(device.user_id)
    assert queried["device_keys"][device.user_id] == {}
    assert await hs.device_keys.one_time_key_counts(device.user_id, device.device_id) == \
        {"signed_curve25519": 0}
    assert await hs.device_keys.unused_fallback_key_types(device.user_id, device.device_id) == []


async def test_forged_device_key_signature(hs_client: Any) -> None:
    hs, client = hs_client
    alice = await Device.register(client, "alice")
    mallory = await Device.register(client, "mallory")
    unsigned = {k: v for k, v in alice.device_keys().items() if k != "signatures"}
    forgeries = [
        sign(unsigned, alice.user_id, mallory.key),  # signed by a key it does not publish
        {**alice.device_keys(), "algorithms": ["m.olm.v1.curve25519-aes-sha2"]},  # altered
        {**unsigned, "signatures": {}},  # not signed at all
        {**unsigned, "signatures": {alice.user_id: {f"ed25519:{alice.device_id}": "bm9wZQ"}}},
    ]
    for forged in forgeries:
        body = await error(await alice.upload(device_keys=forged,
                                              one_time_keys=alice.one_time_keys(2),
                                              fallback_keys=alice.one_time_keys(1, fallback=True)),
                           400, "M_INVALID_SIGNATURE")
        assert body["error"]
    await assert_no_keys(hs, mallory, alice)


async def test_keys_for_another_users_device(hs_client: Any) -> None:
    hs, client = hs_client
    alice = await Device.register(client, "alice")
    mallory = await Device.register(client, "mallory")
    # Alice's genuine keys, uploaded by Mallory; then keys claiming Alice's device ID but
    # Mallory's user, and Mallory's user ID on Alice's device: all refused.
    await error(await mallory.upload(device_keys=alice.device_keys()), 400, "M_INVALID_PARAM")
    mallory.device_id, own_id = alice.device_id, mallory.device_id
    wrong_device = mallory.device_keys()
    mallory.device_id = own_id
    await error(await mallory.upload(device_keys=wrong_device), 400, "M_INVALID_PARAM")
    alice.user_id, alice_id = mallory.user_id, alice.user_id
    wrong_user = alice.device_keys()
    alice.user_id = alice_id
    await error(await mallory.upload(device_keys=wrong_user), 400, "M_INVALID_PARAM")
    await assert_no_keys(hs, alice, alice)
    await assert_no_keys(hs, alice, mallory)


def _malformed(alice: Device) -> list[tuple[dict[str, Any], str]]:
    good = curve25519_key()
    return [
        ({"nocolon": "abc"}, "M_BAD_JSON"),
        ({"signed_curve25519:": sign({"key": good}, alice.user_id, alice.key)}, "M_BAD_JSON"),
        ({":KEYID": "abc"}, "M_BAD_JSON"),
        ({"signed_curve25519:" + "A" * 260: sign({"key": good}, alice.user_id, alice.key)},
         "M_BAD_JSON"),
        ({"signed_curve25519:A": "a bare string"}, "M_BAD_JSON"),
        ({"signed_curve25519:A": sign({"key": "short"}, alice.user_id, alice.key)}, "M_BAD_JSON"),
        ({"signed_curve25519:A": sign({"key": 5}, alice.user_id, alice.key)}, "M_BAD_JSON"),
        ({"signed_curve25519:A": {"key": good}}, "M_INVALID_SIGNATURE"),
        ({"signed_curve25519:A": {**sign({"key": good}, alice.user_id, alice.key), "key":
                                  curve25519_key()}}, "M_INVALID_SIGNATURE"),
        ({"curve25519:A": 5}, "M_BAD_JSON"),
        ({"curve25519:A": ["x"]}, "M_BAD_JSON"),
        ({f"curve25519:K{i}": "x" for i in range(1001)}, "M_BAD_JSON"),  # over the cap
    ]


@pytest.mark.parametrize("case", range(12))
async def test_malformed_one_time_keys(hs_client: Any, case: int) -> None:
    hs, client = hs_client
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    otks, errcode = _malformed(alice)[case]
    # Alongside valid identity keys and a valid key: the request fails as a whole.
    body = {"device_keys": alice.device_keys(), "one_time_keys": {**alice.one_time_keys(1), **otks}}
    await error(await alice.upload(**body), 400, errcode)
    fallback = {"device_keys": alice.device_keys(), "fallback_keys": otks}
    if len(otks) == 1:  # the same checks apply to fallback keys
        await error(await alice.upload(**fallback), 400, errcode)
    await assert_no_keys(hs, bob, alice)


async def test_malformed_one_time_keys_container(hs_client: Any) -> None:
    hs, client = hs_client
    alice = await Device.register(client, "alice")
    for bad in ([], "keys", 5):
        await error(await alice.upload(device_keys=alice.device_keys(), one_time_keys=bad),
                    400, "M_BAD_JSON")
        await error(await alice.upload(device_keys=alice.device_keys(), fallback_keys=bad),
                    400, "M_BAD_JSON")
    await assert_no_keys(hs, alice, alice)


async def _pending(hs: Homeserver, device: Device) -> list[Any]:
    return (await hs.to_device.to_device_since(device.user_id, device.device_id, 0, 100))[0]


async def test_oversized_to_device_message(hs_client: Any) -> None:
    hs, client = hs_client
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    carol = await Device.register(client, "carol")
    big = {"ciphertext": "x" * 65_600}
    url = f"{C}/sendToDevice/m.room.encrypted/t1"
    body = await error(await client.put(url, headers=alice.headers, json={"messages": {
        carol.user_id: {carol.device_id: {"small": True}}, bob.user_id: {bob.device_id: big}}}),
        413, "M_TOO_LARGE")
    assert "65536" in body["error"]
    # Refused as a whole: Carol's small message was not queued, and the transaction ID
    # is still free for the corrected retry.
    assert await _pending(hs, carol) == [] and await _pending(hs, bob) == []
    await ok(await client.put(url, headers=alice.headers, json={"messages": {
        bob.user_id: {bob.device_id: {"ciphertext": "x" * 60_000}}}}))
    assert len(await _pending(hs, bob)) == 1


async def test_to_device_request_over_the_body_cap(make_hs: MakeHs, connect: Connect) -> None:
    hs = make_hs(max_request_body_bytes=16_384)
    client = await connect(hs)
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    messages = {bob.user_id: {bob.device_id: {"ciphertext": "x" * 20_000}}}
    await error(await client.put(f"{C}/sendToDevice/m.x/t1", headers=alice.headers,
                                 json={"messages": messages}), 413, "M_TOO_LARGE")
    assert await _pending(hs, bob) == []


async def test_unknown_backup_versions(client: TestClient) -> None:
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")

    async def req(method: str, path: str, body: Any = None, who: Device = alice) -> Any:
        return await client.request(method, f"{C}{path}", headers=who.headers, json=body)

    sessions = {"rooms": {ROOM: {"sessions": {"s1": SESSION}}}}
    writes = [("PUT", "/room_keys/keys?version={v}", sessions),
              ("PUT", f"/room_keys/keys/{ROOM}?version={{v}}", {"sessions": {"s1": SESSION}}),
              ("PUT", f"/room_keys/keys/{ROOM}/s1?version={{v}}", SESSION)]
    reads = [("GET", "/room_keys/keys?version={v}", None),
             ("GET", f"/room_keys/keys/{ROOM}?version={{v}}", None),
             ("DELETE", "/room_keys/keys?version={v}", None),
             ("GET", "/room_keys/version/{v}", None),
             ("PUT", "/room_keys/version/{v}", BACKUP),
             ("DELETE", "/room_keys/version/{v}", None)]
    # No backup at all, then unknown and malformed versions next to a real one.
    for method, path, body in writes + reads:
        await error(await req(method, path.format(v="1"), body), 404, "M_NOT_FOUND")
    version = (await ok(await req("POST", "/room_keys/version", BACKUP)))["version"]
    bobs = (await ok(await req("POST", "/room_keys/version", BACKUP, who=bob)))["version"]
    for unknown in ("999999", "abc", "-1", "1e3", bobs):
        for method, path, body in writes + reads:
            await error(await req(method, path.format(v=unknown), body), 404, "M_NOT_FOUND")
    # Nothing went anywhere: Alice's backup and Bob's are both empty.
    info = await ok(await req("GET", "/room_keys/version"))
    assert info["version"] == version and info["count"] == 0
    assert await ok(await req("GET", f"/room_keys/keys?version={version}")) == {"rooms": {}}
    assert (await ok(await req("GET", "/room_keys/version", who=bob)))["count"] == 0


async def test_fifty_concurrent_claims_for_one_device(hs_client: Any) -> None:
    hs, client = hs_client
    alice = await Device.register(client, "alice")
    fallback = alice.one_time_keys(1, fallback=True)
    await ok(await alice.upload(device_keys=alice.device_keys(),
                                one_time_keys=alice.one_time_keys(40), fallback_keys=fallback))
    claimers = [await Device.register(client, f"claimer{i}") for i in range(5)]

    async def claim(i: int) -> dict[str, Any]:
        got = await ok(await claimers[i % 5].claim(alice.user_id, alice.device_id))
        return got["one_time_keys"][alice.user_id][alice.device_id]  # type: ignore[no-any-return]

    results = await asyncio.gather(*(claim(i) for i in range(50)))
    one_time = [key_id for r in results for key_id in r if r != fallback]
    # Every claim got a key; each one-time key went to exactly one claimer, and once
    # they ran out the fallback key was handed out instead.
    assert len(one_time) == len(set(one_time)) == 40
    assert sum(1 for r in results if r == fallback) == 10
    assert await hs.device_keys.one_time_key_counts(alice.user_id, alice.device_id) == \
        {"signed_curve25519": 0}
