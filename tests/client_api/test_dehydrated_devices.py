"""Dehydrated devices (MSC3814): PUT/GET/DELETE /dehydrated_device and its /events, with
real ed25519 keys signed as matrix-rust-sdk signs a dehydrated device's keys."""

from __future__ import annotations

import asyncio
import copy
from typing import Any
from urllib.parse import quote

import pytest
import signedjson.key
from aiohttp.test_utils import TestClient

from homeserver.server import Homeserver
from tests.client_api.conftest import Connect, MakeHs, error, password_auth
from tests.client_api.e2e_helpers import ALGORITHMS, C, Device, curve25519_key, ok, sign

U = "/_matrix/client/unstable/org.matrix.msc3814.v1"
DEVICE_DATA = {"algorithm": "org.matrix.msc3814.v2", "device_pickle": "opaque", "nonce": "n"}


@pytest.fixture
async def hs_client(make_hs: MakeHs, connect: Connect) -> tuple[Homeserver, TestClient]:
    hs = make_hs()
    return hs, await connect(hs)


class Dehydrated:
    """A dehydrated device's keys: its ID is its curve25519 key (MSC3814), which is
    base64 and so may hold '/' and '+': one with a '/' is picked to exercise the path."""

    def __init__(self, owner: Device):
        self.owner = owner
        self.user_id = owner.user_id
        self.curve25519 = curve25519_key()
        while "/" not in self.curve25519:
            self.curve25519 = curve25519_key()
        self.device_id = self.curve25519
        self.key = signedjson.key.generate_signing_key(self.device_id)
        self._next = 0

    def device_keys(self, **overrides: Any) -> dict[str, Any]:
        ed25519 = signedjson.key.encode_verify_key_base64(signedjson.key.get_verify_key(self.key))
        body = {"user_id": self.user_id, "device_id": self.device_id, "algorithms": ALGORITHMS,
                "dehydrated": True,
                "keys": {f"curve25519:{self.device_id}": self.curve25519,
                         f"ed25519:{self.device_id}": ed25519}, **overrides}
        return sign(body, self.user_id, self.key)

    def signed_keys(self, n: int, *, fallback: bool = False) -> dict[str, Any]:
        keys = {}
        for _ in range(n):
            self._next += 1
            body: dict[str, Any] = {"key": curve25519_key()}
            if fallback:
                body["fallback"] = True
            keys[f"signed_curve25519:K{self._next:04d}"] = sign(body, self.user_id, self.key)
        return keys

    def body(self, otks: int = 2) -> dict[str, Any]:
        return {"device_id": self.device_id, "device_data": DEVICE_DATA,
                "initial_device_display_name": "Dehydrated device",
                "device_keys": self.device_keys(), "one_time_keys": self.signed_keys(otks),
                "fallback_keys": self.signed_keys(1, fallback=True)}

    @property
    def events_path(self) -> str:
        return f"{U}/dehydrated_device/{quote(self.device_id, safe='')}/events"


async def put(device: Device, body: dict[str, Any]) -> Any:
    return await device.client.put(f"{U}/dehydrated_device", headers=device.headers, json=body)


async def get(device: Device) -> Any:
    return await device.client.get(f"{U}/dehydrated_device", headers=device.headers)


async def events(device: Device, path: str, next_batch: str | None = None,
                 limit: int | None = None) -> Any:
    params = {"limit": str(limit)} if limit is not None else {}
    body = {"next_batch": next_batch} if next_batch is not None else {}
    return await device.client.post(path, headers=device.headers, json=body, params=params)


async def send_to_device(sender: Device, txn: str, messages: dict[str, Any]) -> None:
    await ok(await sender.client.put(f"{C}/sendToDevice/m.room_key/{txn}",
                                     headers=sender.headers, json={"messages": messages}))


async def test_advertised_in_versions(client: TestClient) -> None:
    versions = await ok(await client.get("/_matrix/client/versions"))
    assert versions["unstable_features"]["org.matrix.msc3814"] is True


async def test_put_get_query_claim_delete(hs_client: Any) -> None:
    hs, client = hs_client
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    await error(await get(alice), 404, "M_NOT_FOUND")  # what clients probe support with
    dehydrated = Dehydrated(alice)
    body = dehydrated.body(otks=1)
    assert await ok(await put(alice, body)) == {"device_id": dehydrated.device_id}
    assert await ok(await get(alice)) == {"device_id": dehydrated.device_id,
                                          "device_data": DEVICE_DATA}
    await error(await get(bob), 404, "M_NOT_FOUND")  # one per user, and only the owner's

    # To everyone else it is a device like any other, flagged by its keys.
    seen = (await bob.query(alice.user_id))["device_keys"][alice.user_id][dehydrated.device_id]
    assert seen["dehydrated"] is True
    assert seen["unsigned"] == {"device_display_name": "Dehydrated device"}
    claimed = await ok(await bob.claim(alice.user_id, dehydrated.device_id))
    assert claimed["one_time_keys"][alice.user_id][dehydrated.device_id] == body["one_time_keys"]
    fallback = await ok(await bob.claim(alice.user_id, dehydrated.device_id))
    assert fallback["one_time_keys"][alice.user_id][dehydrated.device_id] == body["fallback_keys"]

    before = await hs.device_lists.current_position()
    assert await ok(await alice.client.delete(f"{U}/dehydrated_device", headers=alice.headers)) \
        == {"device_id": dehydrated.device_id}
    await error(await get(alice), 404, "M_NOT_FOUND")
    await error(await alice.client.delete(f"{U}/dehydrated_device", headers=alice.headers),
                404, "M_NOT_FOUND")
    assert (await bob.query(alice.user_id))["device_keys"][alice.user_id] == {}
    changed, _ = await hs.device_lists.device_list_changes(
        alice.user_id, before, await hs.device_lists.current_position())
    assert changed == {alice.user_id}


async def test_replacing_drops_the_old_device_its_keys_and_messages(hs_client: Any) -> None:
    hs, client = hs_client
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    old = Dehydrated(alice)
    await ok(await put(alice, old.body(otks=3)))
    await send_to_device(bob, "t1", {alice.user_id: {old.device_id: {"n": 1}}})
    new = Dehydrated(alice)
    await ok(await put(alice, new.body()))
    assert (await ok(await get(alice)))["device_id"] == new.device_id
    devices = (await bob.query(alice.user_id))["device_keys"][alice.user_id]
    assert set(devices) == {new.device_id}
    assert await hs.device_keys.one_time_key_counts(alice.user_id, old.device_id) == \
        {"signed_curve25519": 0}
    assert (await hs.to_device.to_device_since(alice.user_id, old.device_id, 0, 10))[0] == []
    await error(await events(alice, old.events_path), 403, "M_FORBIDDEN")
    # The same device again is a replacement too: a clean slate, nothing left over.
    await send_to_device(bob, "t2", {alice.user_id: {new.device_id: {"n": 2}}})
    await ok(await put(alice, new.body()))
    assert (await ok(await events(alice, new.events_path)))["events"] == []


async def test_events_in_batches_without_deleting(hs_client: Any) -> None:
    _, client = hs_client
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    dehydrated = Dehydrated(alice)
    await ok(await put(alice, dehydrated.body()))
    # `*` reaches the dehydrated device like any other device of the user.
    await send_to_device(bob, "t1", {alice.user_id: {"*": {"n": 1}}})
    for i in (2, 3):
        await send_to_device(bob, f"t{i}", {alice.user_id: {dehydrated.device_id: {"n": i}}})

    first = await ok(await events(alice, dehydrated.events_path, limit=2))
    assert [e["content"]["n"] for e in first["events"]] == [1, 2]
    assert first["events"][0] == {"sender": bob.user_id, "type": "m.room_key",
                                  "content": {"n": 1}}
    second = await ok(await events(alice, dehydrated.events_path, first["next_batch"], limit=2))
    assert [e["content"]["n"] for e in second["events"]] == [3]
    # POST always returns next_batch (the draft clients implement); the end is an empty batch.
    last = await ok(await events(alice, dehydrated.events_path, second["next_batch"]))
    assert last["events"] == [] and isinstance(last["next_batch"], str)
    # Nothing was deleted: a rehydration that died half-way can start over (MSC3814).
    again = await ok(await events(alice, dehydrated.events_path))
    assert [e["content"]["n"] for e in again["events"]] == [1, 2, 3]

    # GET with ?from= (the current draft) leaves next_batch out on the last batch.
    path = dehydrated.events_path
    page = await ok(await client.get(path, headers=alice.headers, params={"limit": "2"}))
    assert [e["content"]["n"] for e in page["events"]] == [1, 2] and "next_batch" in page
    rest = await ok(await client.get(path, headers=alice.headers,
                                     params={"from": page["next_batch"]}))
    assert [e["content"]["n"] for e in rest["events"]] == [3] and "next_batch" not in rest


async def test_events_only_for_own_dehydrated_device(client: TestClient) -> None:
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    alices = Dehydrated(alice)
    await error(await events(alice, alices.events_path), 403, "M_FORBIDDEN")  # none yet
    await ok(await put(alice, alices.body()))
    bobs = Dehydrated(bob)
    await ok(await put(bob, bobs.body()))
    await error(await events(alice, bobs.events_path), 403, "M_FORBIDDEN")
    await error(await events(bob, alices.events_path), 403, "M_FORBIDDEN")
    own_session = f"{U}/dehydrated_device/{alice.device_id}/events"
    await error(await events(alice, own_session), 403, "M_FORBIDDEN")
    await error(await client.get(alices.events_path, headers=bob.headers), 403, "M_FORBIDDEN")


async def test_not_a_session(client: TestClient) -> None:
    alice = await Device.register(client, "alice")
    dehydrated = Dehydrated(alice)
    await ok(await put(alice, dehydrated.body()))
    # No login may take over its ID (and with it identity keys it does not hold).
    resp = await client.post(f"{C}/login", json={
        "type": "m.login.password", "password": "correct horse battery",
        "identifier": {"type": "m.id.user", "user": alice.user_id},
        "device_id": dehydrated.device_id})
    await error(resp, 400, "M_INVALID_PARAM")
    assert (await ok(await get(alice)))["device_id"] == dehydrated.device_id
    # Nor may it replace a live session's device.
    await error(await put(alice, {**dehydrated.body(), "device_id": alice.device_id}),
                400, "M_INVALID_PARAM")
    # It is listed, so the user can see it, and the device endpoints can delete it.
    listed = await ok(await client.get(f"{C}/devices", headers=alice.headers))
    assert dehydrated.device_id in {d["device_id"] for d in listed["devices"]}
    path = f"{C}/devices/{quote(dehydrated.device_id, safe='')}"
    session = (await (await client.delete(path, headers=alice.headers)).json())["session"]
    await ok(await client.delete(path, headers=alice.headers, json={
        "auth": password_auth(alice.user_id, session=session)}))
    await error(await get(alice), 404, "M_NOT_FOUND")


async def test_logout_all_deletes_it(client: TestClient) -> None:
    alice = await Device.register(client, "alice")
    phone = await alice.login_again()
    await ok(await put(alice, Dehydrated(alice).body()))
    await ok(await alice.post("/logout/all", {}))
    await error(await get(phone), 401, "M_UNKNOWN_TOKEN")
    fresh = await phone.login_again()
    await error(await get(fresh), 404, "M_NOT_FOUND")


async def test_key_checks_of_keys_upload_apply_and_store_nothing(client: TestClient) -> None:
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    kept = Dehydrated(alice)
    await ok(await put(alice, kept.body()))
    attempt = Dehydrated(alice)
    forged = attempt.body()
    forged["device_keys"] = sign({k: v for k, v in attempt.device_keys().items()
                                  if k != "signatures"}, alice.user_id, alice.key)
    tampered = attempt.body()
    tampered["device_keys"]["algorithms"] = ["m.olm.v1.curve25519-aes-sha2"]
    bad_otk = attempt.body()
    bad_otk["one_time_keys"] = {"signed_curve25519:X": sign({"key": curve25519_key()},
                                                            alice.user_id, alice.key)}
    malformed_otk = {**attempt.body(), "one_time_keys": {"signed_curve25519:Y": "not an object"}}
    other_device = {**attempt.body(), "device_id": "SOMETHINGELSE"}
    other_user = attempt.body()
    other_user["device_keys"] = attempt.device_keys(user_id=bob.user_id)
    cases = [(forged, "M_INVALID_SIGNATURE"), (tampered, "M_INVALID_SIGNATURE"),
             (bad_otk, "M_INVALID_SIGNATURE"), (malformed_otk, "M_BAD_JSON"),
             (other_device, "M_INVALID_PARAM"), (other_user, "M_INVALID_PARAM")]
    for body, errcode in cases:
        await error(await put(alice, body), 400, errcode)
    # Each refusal left the old dehydrated device, and nothing of the new one.
    assert (await ok(await get(alice)))["device_id"] == kept.device_id
    devices = (await bob.query(alice.user_id))["device_keys"][alice.user_id]
    assert set(devices) == {kept.device_id}
    await error(await get(bob), 404, "M_NOT_FOUND")


def _without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


@pytest.mark.parametrize(("mutate", "errcode"), [
    (lambda b: _without(b, "device_id"), "M_MISSING_PARAM"),
    (lambda b: {**b, "device_id": 5}, "M_BAD_JSON"),
    (lambda b: {**b, "device_id": ""}, "M_INVALID_PARAM"),
    (lambda b: {**b, "device_id": "D" * 256}, "M_INVALID_PARAM"),
    (lambda b: _without(b, "device_data"), "M_MISSING_PARAM"),
    (lambda b: {**b, "device_data": "pickle"}, "M_BAD_JSON"),
    (lambda b: {**b, "device_data": {"device_pickle": "x"}}, "M_MISSING_PARAM"),
    (lambda b: {**b, "device_data": {"algorithm": 1}}, "M_BAD_JSON"),
    (lambda b: _without(b, "device_keys"), "M_MISSING_PARAM"),
    (lambda b: {**b, "device_keys": []}, "M_BAD_JSON"),
    (lambda b: {**b, "initial_device_display_name": 5}, "M_BAD_JSON"),
    (lambda b: {**b, "initial_device_display_name": "n" * 513}, "M_BAD_JSON"),
    (lambda b: {**b, "one_time_keys": []}, "M_BAD_JSON"),
    (lambda b: {**b, "fallback_keys": "x"}, "M_BAD_JSON"),
])
async def test_put_bad_input(client: TestClient, mutate: Any, errcode: str) -> None:
    alice = await Device.register(client, "alice")
    body = mutate(copy.deepcopy(Dehydrated(alice).body()))
    await error(await put(alice, body), 400, errcode)
    await error(await get(alice), 404, "M_NOT_FOUND")


async def test_events_bad_input(client: TestClient) -> None:
    alice = await Device.register(client, "alice")
    dehydrated = Dehydrated(alice)
    await ok(await put(alice, dehydrated.body()))
    path = dehydrated.events_path
    await error(await alice.client.post(path, headers=alice.headers, json={"next_batch": 5}),
                400, "M_BAD_JSON")
    await error(await events(alice, path, "not-a-token"), 400, "M_INVALID_PARAM")
    await error(await events(alice, path, limit=0), 400, "M_INVALID_PARAM")
    await error(await client.get(path, headers=alice.headers, params={"from": "x"}),
                400, "M_INVALID_PARAM")
    await error(await client.post(path, json={}), 401, "M_MISSING_TOKEN")
    await error(await client.get(f"{U}/dehydrated_device"), 401, "M_MISSING_TOKEN")


async def test_full_inbox_does_not_block_senders(hs_client: Any) -> None:
    hs, client = hs_client
    hs.to_device.max_pending_per_device = 2
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    dehydrated = Dehydrated(alice)
    await ok(await put(alice, dehydrated.body()))
    for i in range(4):
        # Alice's own device acknowledges by syncing; the dehydrated one never does.
        await send_to_device(bob, f"t{i}", {alice.user_id: {"*": {"n": i}}})
        _, pos = await hs.to_device.to_device_since(alice.user_id, alice.device_id, 0, 10)
        await hs.to_device.ack_to_device(alice.user_id, alice.device_id, pos)
    kept = (await ok(await events(alice, dehydrated.events_path)))["events"]
    assert [e["content"]["n"] for e in kept] == [0, 1]


async def test_concurrent_replacements_leave_one_device(client: TestClient) -> None:
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    attempts = [Dehydrated(alice) for _ in range(6)]
    results = await asyncio.gather(*(put(alice, a.body()) for a in attempts))
    assert [r.status for r in results] == [200] * 6
    current = (await ok(await get(alice)))["device_id"]
    # No half-replaced device is left behind, with keys others would encrypt to.
    devices = (await bob.query(alice.user_id))["device_keys"][alice.user_id]
    assert set(devices) == {current}
    listed = await ok(await client.get(f"{C}/devices", headers=alice.headers))
    assert {d["device_id"] for d in listed["devices"]} == {alice.device_id, current}
