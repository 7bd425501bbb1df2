"""Real time: /sync long-polls woken by the notifier, and the WebSocket stream."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from homeserver.server import Homeserver
from tests.client_api.conftest import Connect, MakeHs
from tests.client_api.sync_helpers import C, User, bodies, ok, timeline
from tests.spec_schemas import validate_response

WS = "/_matrix/client/unstable/im.devnet.ws/sync"


async def _serve(make_hs: MakeHs, connect: Connect) -> tuple[Homeserver, TestClient]:
    hs = make_hs()
    return hs, await connect(hs)


async def _waiting(hs: Homeserver, count: int = 1, within_s: float = 30.0) -> None:
    """Wait until `count` syncs wait on the notifier.

    A readiness check, not a timed sleep: it returns the moment the sync is parked, and
    the deadline (in time, not loop turns, so a loaded CI machine does not fail it) only
    bounds a test that would otherwise hang."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while hs.notifier.waiter_count() < count:
        if loop.time() > deadline:
            raise AssertionError("the sync never started waiting")
        await asyncio.sleep(0.001)


async def _pair(client: TestClient) -> tuple[User, User, str]:
    alice = await User.register(client, "alice")
    bob = await User.register(client, "bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    return alice, bob, room


async def test_long_poll_wakes_when_another_user_sends(make_hs: MakeHs, connect: Connect) -> None:
    hs, client = await _serve(make_hs, connect)
    alice, bob, room = await _pair(client)
    since = (await alice.sync())["next_batch"]

    poll = asyncio.create_task(alice.sync(since=since, timeout_ms=60_000))
    await _waiting(hs)
    await bob.send(room, "wake up")
    body = await asyncio.wait_for(poll, 10)

    assert bodies(timeline(body, room)) == ["wake up"]
    assert hs.notifier.waiter_count() == 0


async def test_long_poll_wakes_on_invite_account_data_and_typing(make_hs: MakeHs,
                                                                 connect: Connect) -> None:
    hs, client = await _serve(make_hs, connect)
    alice, bob, room = await _pair(client)
    carol = await User.register(client, "carol")
    since = (await carol.sync())["next_batch"]

    poll = asyncio.create_task(carol.sync(since=since, timeout_ms=60_000))
    await _waiting(hs)
    await alice.invite(room, carol.user_id)
    invited = await asyncio.wait_for(poll, 10)
    assert room in invited["rooms"]["invite"]

    poll = asyncio.create_task(carol.sync(since=invited["next_batch"], timeout_ms=60_000))
    await _waiting(hs)
    await ok(await client.put(f"{C}/user/{carol.user_id}/account_data/org.example", json={"x": 1},
                              headers=carol.headers))
    changed = await asyncio.wait_for(poll, 10)
    assert changed["account_data"]["events"] == [{"type": "org.example", "content": {"x": 1}}]

    since = (await bob.sync())["next_batch"]
    poll = asyncio.create_task(bob.sync(since=since, timeout_ms=60_000))
    await _waiting(hs)
    await ok(await client.put(f"{C}/rooms/{room}/typing/{alice.user_id}", json={"typing": True},
                              headers=alice.headers))
    typing = await asyncio.wait_for(poll, 10)
    assert typing["rooms"]["join"][room]["ephemeral"]["events"] == [
        {"type": "m.typing", "content": {"user_ids": [alice.user_id]}}]


async def test_irrelevant_changes_do_not_end_the_poll(make_hs: MakeHs, connect: Connect) -> None:
    hs, client = await _serve(make_hs, connect)
    alice, bob, room = await _pair(client)
    since = (await alice.sync())["next_batch"]
    only_messages = {"room": {"timeline": {"types": ["m.room.message"]}}}

    poll = asyncio.create_task(alice.sync(since=since, timeout_ms=60_000, filter=only_messages))
    await _waiting(hs)
    # Wakes the poll (a room event), which finds nothing the filter lets through and waits again.
    await alice.set_state(room, "m.room.topic", {"topic": "filtered out"})
    for _ in range(100):
        await asyncio.sleep(0)
    assert not poll.done()
    await _waiting(hs)
    await bob.send(room, "this one")
    body = await asyncio.wait_for(poll, 10)
    assert bodies(timeline(body, room)) == ["this one"]


async def test_timeout_returns_an_empty_sync(client: TestClient) -> None:
    alice = await User.register(client, "alice")
    await alice.create_room()
    first = await alice.sync()
    body = await alice.sync(since=first["next_batch"], timeout_ms=50)
    assert body["rooms"]["join"] == {} and body["account_data"]["events"] == []
    assert body["next_batch"] == first["next_batch"]


# --- WebSocket ------------------------------------------------------------------------

def _without_age(value: Any) -> Any:
    """A copy of a sync body without `age` keys (a serving-time measurement)."""
    if isinstance(value, dict):
        return {k: _without_age(v) for k, v in value.items() if k != "age"}
    if isinstance(value, list):
        return [_without_age(v) for v in value]
    return value


async def _receive(ws: Any) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type == WSMsgType.TEXT, msg
    body = json.loads(msg.data)
    validate_response("sync.yaml", "/sync", "get", body)
    return body  # type: ignore[no-any-return]


async def test_websocket_pushes_events_and_resumes_without_gaps(make_hs: MakeHs,
                                                                connect: Connect) -> None:
    hs, client = await _serve(make_hs, connect)
    alice, bob, room = await _pair(client)
    params = {"access_token": alice.token, "set_presence": "offline"}

    ws = await client.ws_connect(WS, params=params)
    initial = await _receive(ws)
    assert room in initial["rooms"]["join"]
    await bob.send(room, "pushed 1")
    pushed = await _receive(ws)
    assert bodies(timeline(pushed, room)) == ["pushed 1"]
    # Exactly what an incremental /sync from the same token returns.
    polled = await alice.sync(since=initial["next_batch"])
    # `unsigned.age` is measured when each response is built, so it may differ by a few ms.
    assert _without_age(polled) == _without_age(pushed)
    assert polled["next_batch"] == pushed["next_batch"]
    await ws.close()

    # Sent while disconnected: the resumed stream delivers exactly these, once.
    await bob.send(room, "missed 2")
    await bob.send(room, "missed 3")
    ws = await client.ws_connect(WS, params={**params, "since": pushed["next_batch"]})
    resumed = await _receive(ws)
    assert bodies(timeline(resumed, room)) == ["missed 2", "missed 3"]
    await bob.send(room, "live 4")
    live = await _receive(ws)
    assert bodies(timeline(live, room)) == ["live 4"]
    await ws.close()


async def test_websocket_auth_header_first_message_and_errors(client: TestClient) -> None:
    alice = await User.register(client, "alice")
    room = await alice.create_room()

    ws = await client.ws_connect(WS, headers=alice.headers, params={"set_presence": "offline"})
    assert room in (await _receive(ws))["rooms"]["join"]
    await ws.close()

    ws = await client.ws_connect(WS, params={"set_presence": "offline"})
    await ws.send_str(json.dumps({"access_token": alice.token}))
    assert room in (await _receive(ws))["rooms"]["join"]
    await ws.close()

    ws = await client.ws_connect(WS)
    await ws.send_str(json.dumps({"access_token": "wrong"}))
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert json.loads(msg.data)["errcode"] == "M_UNKNOWN_TOKEN"
    closed = await asyncio.wait_for(ws.receive(), 10)
    assert closed.type == WSMsgType.CLOSE and ws.close_code == 4401

    ws = await client.ws_connect(WS, params={"access_token": alice.token, "since": "garbage"})
    assert json.loads((await asyncio.wait_for(ws.receive(), 10)).data)["errcode"] == "M_INVALID_PARAM"
    await asyncio.wait_for(ws.receive(), 10)
    assert ws.close_code == 4400

    resp = await client.get(WS, params={"access_token": "wrong"},
                            headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                     "Sec-WebSocket-Version": "13",
                                     "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert resp.status == 401 and (await resp.json())["errcode"] == "M_UNKNOWN_TOKEN"


async def test_websocket_stops_after_logout(make_hs: MakeHs, connect: Connect) -> None:
    hs, client = await _serve(make_hs, connect)
    alice, bob, room = await _pair(client)
    ws = await client.ws_connect(WS, params={"access_token": alice.token, "set_presence": "offline"})
    await _receive(ws)
    await ok(await client.post(f"{C}/logout", headers=alice.headers, json={}))
    await bob.send(room, "after logout")
    msg = await asyncio.wait_for(ws.receive(), 10)
    # The message computed when woken is delivered, then the token check closes the stream.
    if msg.type == WSMsgType.TEXT and "next_batch" in json.loads(msg.data):
        msg = await asyncio.wait_for(ws.receive(), 10)
    assert json.loads(msg.data)["errcode"] == "M_UNKNOWN_TOKEN"


async def test_shutdown_answers_waiting_long_polls(make_hs: MakeHs, connect: Connect) -> None:
    """close() releases parked long-polls with a normal (empty) answer instead of holding
    them until their timeout; later syncs do not park either."""
    hs, client = await _serve(make_hs, connect)
    alice, _, room = await _pair(client)
    since = (await alice.sync())["next_batch"]
    poll = asyncio.create_task(alice.sync(since=since, timeout_ms=600_000))
    await _waiting(hs)
    hs.notifier.close()
    body = await asyncio.wait_for(poll, 30)
    assert room not in body["rooms"]["join"]
    again = await asyncio.wait_for(alice.sync(since=since, timeout_ms=600_000), 30)
    assert room not in again["rooms"]["join"]
