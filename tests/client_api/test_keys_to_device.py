"""PUT /sendToDevice: fan-out, idempotency, acknowledgement and the per-device bound.
Delivery is read through `to_device_since`, the function /sync calls."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from homeserver.server import Homeserver
from tests.client_api.conftest import Connect, MakeHs, error
from tests.client_api.e2e_helpers import C, Device, ok
from tests.spec_schemas import validate_request


@pytest.fixture
async def hs_client(make_hs: MakeHs, connect: Connect) -> tuple[Homeserver, TestClient]:
    hs = make_hs()
    return hs, await connect(hs)


async def _send(device: Device, txn: str, messages: dict[str, Any],
                event_type: str = "m.room_key_request") -> Any:
    body = {"messages": messages}
    validate_request("to_device.yaml", "/sendToDevice/{eventType}/{txnId}", "put", body)
    return await device.client.put(f"{C}/sendToDevice/{event_type}/{txn}",
                                   headers=device.headers, json=body)


async def test_fan_out_idempotency_and_ack(hs_client: Any) -> None:
    hs, client = hs_client
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    bob_phone = await bob.login_again()
    assert await ok(await _send(alice, "t1", {bob.user_id: {"*": {"n": 1}}})) == {}
    assert await ok(await _send(alice, "t1", {bob.user_id: {"*": {"n": 1}}})) == {}  # retry
    await ok(await _send(alice, "t2", {bob.user_id: {bob_phone.device_id: {"n": 2},
                                                     "NOSUCHDEVICE": {"n": 3}}}))
    td = hs.to_device
    laptop, pos = await td.to_device_since(bob.user_id, bob.device_id, 0, 100)
    assert laptop == [{"sender": alice.user_id, "type": "m.room_key_request", "content": {"n": 1}}]
    phone, phone_pos = await td.to_device_since(bob.user_id, bob_phone.device_id, 0, 100)
    assert [m["content"] for m in phone] == [{"n": 1}, {"n": 2}]
    # Not acknowledged yet: a repeated sync from the same token gets them again.
    assert (await td.to_device_since(bob.user_id, bob_phone.device_id, 0, 100))[0] == phone
    # Limited: the next position is the last message delivered, so nothing is skipped.
    first, first_pos = await td.to_device_since(bob.user_id, bob_phone.device_id, 0, 1)
    assert [m["content"] for m in first] == [{"n": 1}]
    rest, _ = await td.to_device_since(bob.user_id, bob_phone.device_id, first_pos, 10)
    assert [m["content"] for m in rest] == [{"n": 2}]
    # Syncing with a token past them acknowledges (deletes) them.
    assert await td.ack_to_device(bob.user_id, bob_phone.device_id, first_pos) == 1
    assert [m["content"] for m in (await td.to_device_since(
        bob.user_id, bob_phone.device_id, 0, 10))[0]] == [{"n": 2}]
    assert await td.ack_to_device(bob.user_id, bob_phone.device_id, phone_pos) == 1
    assert (await td.to_device_since(bob.user_id, bob_phone.device_id, 0, 10))[0] == []
    assert pos == phone_pos  # unlimited reads end at the stream's current position


async def test_same_txn_from_another_device_is_new(hs_client: Any) -> None:
    hs, client = hs_client
    alice = await Device.register(client, "alice")
    alice2 = await alice.login_again()
    bob = await Device.register(client, "bob")
    await ok(await _send(alice, "t", {bob.user_id: {bob.device_id: {"from": 1}}}))
    await ok(await _send(alice2, "t", {bob.user_id: {bob.device_id: {"from": 2}}}))
    messages, _ = await hs.to_device.to_device_since(bob.user_id, bob.device_id, 0, 10)
    assert [m["content"]["from"] for m in messages] == [1, 2]


async def test_notifier_woken_for_target(hs_client: Any) -> None:
    hs, client = hs_client
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    seen: list[Any] = []
    hs.notifier.add_publisher(seen.append)
    await ok(await _send(alice, "t", {bob.user_id: {bob.device_id: {}}}))
    assert [(n.stream, n.users) for n in seen] == [("to_device", frozenset({bob.user_id}))]


async def test_per_device_bound(hs_client: Any) -> None:
    hs, client = hs_client
    hs.to_device.max_pending_per_device = 3
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    carol = await Device.register(client, "carol")
    for i in range(3):
        await ok(await _send(alice, f"t{i}", {bob.user_id: {bob.device_id: {"i": i}}}))
    body = await error(await _send(alice, "full", {
        carol.user_id: {carol.device_id: {}}, bob.user_id: {bob.device_id: {}}}),
        429, "M_LIMIT_EXCEEDED")
    assert body["retry_after_ms"] > 0 and bob.device_id in body["error"]
    # Refused as a whole: carol got nothing either, and the txn ID is still free.
    assert (await hs.to_device.to_device_since(carol.user_id, carol.device_id, 0, 10))[0] == []
    _, pos = await hs.to_device.to_device_since(bob.user_id, bob.device_id, 0, 10)
    await hs.to_device.ack_to_device(bob.user_id, bob.device_id, pos)
    await ok(await _send(alice, "full", {bob.user_id: {bob.device_id: {}}}))


@pytest.mark.parametrize("body", [
    {}, {"messages": []}, {"messages": {"bad": {}}}, {"messages": {"@b:test.local": []}},
    {"messages": {"@b:test.local": {"D": "not an object"}}},
])
async def test_bad_input(client: TestClient, body: dict[str, Any]) -> None:
    alice = await Device.register(client, "alice")
    resp = await client.put(f"{C}/sendToDevice/m.x/t", headers=alice.headers, json=body)
    assert resp.status == 400
    assert (await resp.json())["errcode"] in ("M_MISSING_PARAM", "M_BAD_JSON", "M_INVALID_PARAM")


async def test_remote_targets_are_skipped(hs_client: Any) -> None:
    _, client = hs_client
    alice = await Device.register(client, "alice")
    assert await ok(await _send(alice, "t", {"@bob:elsewhere.example": {"*": {}}})) == {}
