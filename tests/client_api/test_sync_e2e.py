"""/sync's E2EE sections: to_device, device_lists, device_one_time_keys_count and
device_unused_fallback_key_types, on /sync and the WebSocket, and long-poll wake-ups."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from homeserver.server import Homeserver
from homeserver.sync import e2e_sync
from homeserver.sync.tokens import TO_DEVICE, SyncToken
from tests.client_api.conftest import Connect, MakeHs
from tests.client_api.e2e_helpers import C, Device, ok
from tests.client_api.test_sync_realtime import WS, _waiting
from tests.spec_schemas import validate_response

Sync = dict[str, Any]


@pytest.fixture
async def hs_client(make_hs: MakeHs, connect: Connect) -> tuple[Homeserver, TestClient]:
    hs = make_hs()
    return hs, await connect(hs)


async def sync(device: Device, since: str | None = None, timeout_ms: int = 0) -> Sync:
    query = {"timeout": str(timeout_ms), "set_presence": "offline"}
    if since is not None:
        query["since"] = since
    body = await ok(await device.client.get(f"{C}/sync", headers=device.headers, params=query))
    validate_response("sync.yaml", "/sync", "get", body)
    return body  # type: ignore[no-any-return]


_txn = iter(range(1_000_000))


async def send_to_device(sender: Device, target: Device, content: dict[str, Any],
                         event_type: str = "org.example.ping") -> None:
    await ok(await sender.client.put(
        f"{C}/sendToDevice/{event_type}/t{next(_txn)}", headers=sender.headers,
        json={"messages": {target.user_id: {target.device_id: content}}}))


def to_device(body: Sync) -> list[Any]:
    return [e["content"] for e in body["to_device"]["events"]]


def device_lists(body: Sync) -> tuple[list[str], list[str]]:
    return body["device_lists"]["changed"], body["device_lists"]["left"]


async def stored(hs: Homeserver, device: Device) -> list[Any]:
    """What the server still holds for the device (read without acknowledging)."""
    messages, _ = await hs.to_device.to_device_since(device.user_id, device.device_id, 0, 1000)
    return [m["content"] for m in messages]


async def test_to_device_delivered_once_and_deleted_after_syncing_past(hs_client: Any) -> None:
    hs, client = hs_client
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    bob_phone = await bob.login_again()
    await send_to_device(alice, bob, {"n": 1})

    # Initial sync: pending messages are delivered, with the sender and type.
    first = await sync(bob)
    assert first["to_device"]["events"] == [
        {"sender": alice.user_id, "type": "org.example.ping", "content": {"n": 1}}]
    # A lost response: the same request again gets the same messages.
    assert to_device(await sync(bob)) == [{"n": 1}]
    await send_to_device(alice, bob, {"n": 2})
    assert to_device(second := await sync(bob, first["next_batch"])) == [{"n": 2}]
    # Syncing from `first` acknowledged n=1 only; n=2 is kept until a sync passes it.
    assert await stored(hs, bob) == [{"n": 2}]
    assert to_device(await sync(bob, first["next_batch"])) == [{"n": 2}]
    assert to_device(await sync(bob, second["next_batch"])) == []
    assert await stored(hs, bob) == []
    # Addressed to one device: the other device of the same user sees nothing.
    assert to_device(await sync(bob_phone)) == []


async def test_to_device_limit_resumes_where_it_stopped(hs_client: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    hs, client = hs_client
    monkeypatch.setattr(e2e_sync, "TO_DEVICE_LIMIT", 2)
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    since = (await sync(bob))["next_batch"]
    for n in range(3):
        await send_to_device(alice, bob, {"n": n})

    # A long timeout: a cut-short result is returned at once, never held back.
    page = await asyncio.wait_for(sync(bob, since, timeout_ms=60_000), 10)
    assert to_device(page) == [{"n": 0}, {"n": 1}]
    rest = await asyncio.wait_for(sync(bob, page["next_batch"], timeout_ms=60_000), 10)
    assert to_device(rest) == [{"n": 2}]
    assert SyncToken.parse(rest["next_batch"])[TO_DEVICE] == \
        (await hs.sync.current_token())[TO_DEVICE]
    assert await stored(hs, bob) == [{"n": 2}]


async def test_device_lists_after_key_upload_join_and_leave(hs_client: Any) -> None:
    _, client = hs_client
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    carol = await Device.register(client, "carol")
    room = await alice.create_room(preset="public_chat")
    await bob.upload_identity()

    initial = await sync(alice)
    assert device_lists(initial) == ([], [])
    await bob.join(room)
    # Newly sharing a room: alice has never downloaded bob's keys.
    joined = await sync(alice, initial["next_batch"])
    assert device_lists(joined) == ([bob.user_id], [])
    # Bob's own sync names alice for the same reason.
    assert device_lists(await sync(bob, initial["next_batch"]))[0] == [alice.user_id]

    bob_phone = await bob.login_again()
    await bob_phone.upload_identity()
    await carol.upload_identity()  # shares no room with alice: not her business
    uploaded = await sync(alice, joined["next_batch"])
    assert device_lists(uploaded) == ([bob.user_id], [])
    # A user's own new device is a change for the user too.
    assert bob.user_id in device_lists(await sync(bob, joined["next_batch"]))[0]

    await bob.leave(room)
    left = await sync(alice, uploaded["next_batch"])
    assert device_lists(left) == ([], [bob.user_id])
    assert device_lists(await sync(alice, left["next_batch"])) == ([], [])


async def test_one_time_key_counts_and_fallback_key_types(hs_client: Any) -> None:
    _, client = hs_client
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    empty = await sync(bob)
    assert empty["device_one_time_keys_count"] == {"signed_curve25519": 0}
    assert empty["device_unused_fallback_key_types"] == []

    await bob.upload_identity(otks=5)
    await ok(await bob.upload(fallback_keys=bob.one_time_keys(1, fallback=True)))
    counted = await sync(bob, empty["next_batch"])
    assert counted["device_one_time_keys_count"] == {"signed_curve25519": 5}
    assert counted["device_unused_fallback_key_types"] == ["signed_curve25519"]

    await ok(await alice.claim(bob.user_id, bob.device_id))
    after = await sync(bob, counted["next_batch"])
    assert after["device_one_time_keys_count"] == {"signed_curve25519": 4}
    for _ in range(4):
        await ok(await alice.claim(bob.user_id, bob.device_id))
    # The fallback key is handed out once the one-time keys are gone.
    await ok(await alice.claim(bob.user_id, bob.device_id))
    drained = await sync(bob, after["next_batch"])
    assert drained["device_one_time_keys_count"] == {"signed_curve25519": 0}
    assert drained["device_unused_fallback_key_types"] == []


async def test_long_poll_wakes_on_to_device_message(hs_client: Any) -> None:
    hs, client = hs_client
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    since = (await sync(bob))["next_batch"]

    poll = asyncio.create_task(sync(bob, since, timeout_ms=60_000))
    await _waiting(hs)
    await send_to_device(alice, bob, {"wake": True})
    body = await asyncio.wait_for(poll, 10)
    assert to_device(body) == [{"wake": True}]
    assert hs.notifier.waiter_count() == 0


async def test_idle_long_poll_is_not_woken_again_and_again(hs_client: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    hs, client = hs_client
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    bob_phone = await bob.login_again()
    since = (await sync(bob))["next_batch"]
    await send_to_device(alice, bob, {"n": 1})
    got = await sync(bob, since)
    assert to_device(got) == [{"n": 1}]

    # Every time a poll starts waiting, is its token already behind a notification? If the
    # to_device position stayed at `since` on an empty read, it would be: the poll would
    # wake at once, find nothing, and spin until its timeout.
    behind: list[bool] = []
    has_update = hs.notifier.has_update

    def recording(user_id: str, since: SyncToken, rooms: Any) -> bool:
        behind.append(has_update(user_id, since, rooms))
        return behind[-1]

    monkeypatch.setattr(hs.notifier, "has_update", recording)
    poll = asyncio.create_task(sync(bob, got["next_batch"], timeout_ms=60_000))
    await _waiting(hs)
    checks_before_wake = len(behind)
    # A message for the user's other device wakes this poll, which finds nothing and waits.
    await send_to_device(alice, bob_phone, {"n": 2})
    await _until(lambda: len(behind) > checks_before_wake)
    await _waiting(hs)
    assert not poll.done()
    await send_to_device(alice, bob, {"n": 3})
    assert to_device(await asyncio.wait_for(poll, 10)) == [{"n": 3}]
    assert behind and not any(behind)


async def _until(condition: Any, within_s: float = 30.0) -> None:
    """Readiness wait (see test_sync_realtime._waiting): returns as soon as it holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition never held")
        await asyncio.sleep(0.001)


async def test_long_poll_wakes_on_device_list_change(hs_client: Any) -> None:
    hs, client = hs_client
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    since = (await sync(alice))["next_batch"]

    poll = asyncio.create_task(sync(alice, since, timeout_ms=60_000))
    await _waiting(hs)
    await bob.upload_identity()
    assert device_lists(await asyncio.wait_for(poll, 10)) == ([bob.user_id], [])


async def test_websocket_carries_to_device_and_device_lists(hs_client: Any) -> None:
    hs, client = hs_client
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    token = bob.headers["Authorization"].removeprefix("Bearer ")
    ws = await client.ws_connect(WS, params={"access_token": token, "set_presence": "offline"})

    async def receive() -> Sync:
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type == WSMsgType.TEXT, msg
        body: Sync = json.loads(msg.data)
        validate_response("sync.yaml", "/sync", "get", body)
        return body

    initial = await receive()
    assert initial["device_one_time_keys_count"] == {"signed_curve25519": 0}
    await send_to_device(alice, bob, {"over": "ws"})
    pushed = await receive()
    assert to_device(pushed) == [{"over": "ws"}]
    await alice.upload_identity()
    assert device_lists(await receive()) == ([alice.user_id], [])
    await ws.close()


async def test_websocket_keeps_to_device_until_the_client_acks(hs_client: Any) -> None:
    """A message the stream merely sent is not deleted: the socket may drop before the
    client processed it. An `ack` message, or reconnecting with `since`, deletes it."""
    hs, client = hs_client
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    token = bob.headers["Authorization"].removeprefix("Bearer ")
    params = {"access_token": token, "set_presence": "offline"}
    ws = await client.ws_connect(WS, params=params)

    async def receive() -> Sync:
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type == WSMsgType.TEXT, msg
        return json.loads(msg.data)  # type: ignore[no-any-return]

    await receive()
    await send_to_device(alice, bob, {"n": 1})
    first = await receive()
    assert to_device(first) == [{"n": 1}]
    await send_to_device(alice, bob, {"n": 2})
    second = await receive()
    assert to_device(second) == [{"n": 2}]
    # Sent twice over the socket, confirmed never: both still held.
    assert await stored(hs, bob) == [{"n": 1}, {"n": 2}]
    await ws.send_str(json.dumps({"ack": "not a token"}))  # ignored, the stream goes on
    await ws.send_str(json.dumps({"ack": first["next_batch"]}))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while await stored(hs, bob) != [{"n": 2}]:
        assert loop.time() < deadline, "the ack was not applied"
        await asyncio.sleep(0.001)
    await ws.close()
    # Reconnecting from the last processed token acknowledges the rest.
    ws = await client.ws_connect(WS, params={**params, "since": second["next_batch"]})
    await send_to_device(alice, bob, {"n": 3})
    assert to_device(await receive()) == [{"n": 3}]
    assert await stored(hs, bob) == [{"n": 3}]
    await ws.close()
