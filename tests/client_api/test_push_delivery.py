"""Delivery to `http` pushers through a real test push gateway on a loopback port, both
engines (spec: https://spec.matrix.org/v1.19/push-gateway-api/). Time only moves through
the FakeScheduler, so retries happen exactly when a test advances it; `settle` awaits the
evaluator and then the sender's `idle()`, never a sleep."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from homeserver.clock import FakeClock
from homeserver.server import Homeserver
from homeserver.sync.timers import FakeScheduler
from tests.client_api.conftest import CHEAP_HASHING, Connect
from tests.client_api.push_gateway import FakeGateway
from tests.client_api.sync_helpers import C, User, ok
from tests.conftest import make_config

_txn = itertools.count()
MakeHs = Callable[[], Homeserver]


@pytest.fixture
def scheduler(clock: FakeClock) -> FakeScheduler:
    return FakeScheduler(clock)


@pytest.fixture
def make_hs(tmp_path: Any, database_settings: dict[str, Any], clock: FakeClock,
            scheduler: FakeScheduler) -> MakeHs:
    def make() -> Homeserver:
        config = make_config(tmp_path, database_settings, auth=CHEAP_HASHING,
                             push={"allow_private_gateway_addresses": True})
        return Homeserver(config, clock=clock, scheduler=scheduler)
    return make


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    gw = FakeGateway()
    await gw.up()
    yield gw
    await gw.down()


async def settle(hs: Homeserver) -> None:
    await hs.push_evaluator.drained()
    await hs.push_sender.idle()


async def set_pusher(user: User, gw: FakeGateway, pushkey: str, **data: Any) -> None:
    await ok(await user.client.post(f"{C}/pushers/set", headers=user.headers, json={
        "kind": "http", "app_id": "org.example.app", "pushkey": pushkey,
        "app_display_name": "Example", "device_display_name": "Phone", "lang": "en",
        "data": {"url": gw.url, **data}}))


async def send(user: User, room: str, content: dict[str, Any]) -> str:
    resp = await user.client.put(f"{C}/rooms/{room}/send/m.room.message/d{next(_txn)}",
                                 headers=user.headers, json=content)
    return (await ok(resp))["event_id"]  # type: ignore[no-any-return]


def text(body: str, **extra: Any) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": body, **extra}


async def group_room(alice: User, bob: User) -> str:
    room = await alice.create_room(preset="public_chat", name="Lunch")
    await bob.join(room)
    return room


async def test_mention_dm_and_keyword_payloads(make_hs: MakeHs, connect: Connect,
                                               gateway: FakeGateway) -> None:
    hs = make_hs()
    client = await connect(hs)
    alice = await User.register(client, "alice")
    bob = await User.register(client, "bob")
    carol = await User.register(client, "carol")
    await ok(await client.put(f"{C}/profile/{alice.user_id}/displayname", headers=alice.headers,
                              json={"displayname": "Alice"}))
    room = await group_room(alice, bob)
    await carol.join(room)
    dm = await alice.create_room(preset="trusted_private_chat", is_direct=True)
    await alice.invite(dm, bob.user_id)
    await bob.join(dm)
    await ok(await client.put(f"{C}/pushrules/global/content/pizza", headers=bob.headers,
                              json={"pattern": "pizza", "actions": [
                                  "notify", {"set_tweak": "sound", "value": "ping"}]}))
    await settle(hs)
    await set_pusher(bob, gateway, "full", custom="x")
    await set_pusher(bob, gateway, "ids", format="event_id_only")

    mention = await send(alice, room, text("hey bob", **{"m.mentions": {"user_ids": [bob.user_id]}}))
    await settle(hs)
    direct = await send(alice, dm, text("psst"))
    await settle(hs)
    keyword = await send(alice, room, text("pizza today?"))
    await settle(hs)
    plain = await send(alice, room, text("anyone?"))
    await settle(hs)

    full = gateway.for_pushkey("full")
    assert [n["event_id"] for n in full] == [mention, direct, keyword, plain]
    assert [n["counts"] for n in full] == [{"unread": 1}, {"unread": 2}, {"unread": 3},
                                           {"unread": 4}]
    assert [n["prio"] for n in full] == ["high", "high", "high", "low"]
    assert full[0]["devices"] == [{"app_id": "org.example.app", "pushkey": "full",
                                   "pushkey_ts": hs.clock.time_ms() // 1000,
                                   "data": {"custom": "x"},
                                   "tweaks": {"highlight": True, "sound": "default"}}]
    assert full[1]["devices"][0]["tweaks"] == {"sound": "default"}
    assert full[2]["devices"][0]["tweaks"] == {"sound": "ping"}
    assert "tweaks" not in full[3]["devices"][0]
    assert full[0] | {"devices": None, "counts": None} == {
        "event_id": mention, "room_id": room, "type": "m.room.message", "sender": alice.user_id,
        "sender_display_name": "Alice", "room_name": "Lunch", "prio": "high",
        "content": text("hey bob", **{"m.mentions": {"user_ids": [bob.user_id]}}),
        "devices": None, "counts": None}
    assert full[1]["room_id"] == dm and "room_name" not in full[1]

    ids = gateway.for_pushkey("ids")
    assert [n["event_id"] for n in ids] == [mention, direct, keyword, plain]
    assert ids[1] == {"event_id": direct, "room_id": dm, "prio": "high",
                      "counts": {"unread": 2},
                      "devices": [{"app_id": "org.example.app", "pushkey": "ids",
                                   "pushkey_ts": hs.clock.time_ms() // 1000, "data": {},
                                   "tweaks": {"sound": "default"}}]}
    # Nobody else has a pusher, and the sender's own messages never push.
    assert len(gateway.received) == 8


async def test_gateway_down_across_restart_loses_and_doubles_nothing(
        make_hs: MakeHs, connect: Connect, gateway: FakeGateway,
        scheduler: FakeScheduler) -> None:
    first = make_hs()
    client = await connect(first)
    alice = await User.register(client, "alice")
    bob = await User.register(client, "bob")
    room = await group_room(alice, bob)
    await set_pusher(bob, gateway, "key")
    await gateway.down()
    sent = [await send(alice, room, text(f"m{i}")) for i in range(3)]
    await settle(first)
    assert await first.push_sender.queued() == 3
    scheduler.advance(1000)  # first retry, still down: the next waits 2 s
    await settle(first)
    scheduler.advance(1999)
    await settle(first)
    assert gateway.received == [] and scheduler.pending() == 1
    await client.close()
    await first.close()
    assert scheduler.pending() == 0

    second = make_hs()
    client = await connect(second)
    alice.client = bob.client = client
    await settle(second)
    await gateway.up()
    assert gateway.received == []  # still backing off: resumed with the stored schedule
    scheduler.advance(1)
    await settle(second)
    assert [n["event_id"] for n in gateway.received] == sent
    assert [n["counts"]["unread"] for n in gateway.received] == [1, 2, 3]
    assert await second.push_sender.queued() == 0
    # Healthy again: the next notification goes out at once.
    later = await send(alice, room, text("back"))
    await settle(second)
    assert [n["event_id"] for n in gateway.received] == [*sent, later]


async def test_server_errors_retry_and_client_errors_drop(
        make_hs: MakeHs, connect: Connect, gateway: FakeGateway,
        scheduler: FakeScheduler) -> None:
    hs = make_hs()
    client = await connect(hs)
    alice = await User.register(client, "alice")
    bob = await User.register(client, "bob")
    room = await group_room(alice, bob)
    await set_pusher(bob, gateway, "key")
    gateway.status = 503
    retried = await send(alice, room, text("retry me"))
    await settle(hs)
    gateway.status = 200
    scheduler.advance(1000)
    await settle(hs)
    assert [n["event_id"] for n in gateway.received] == [retried]
    gateway.status = 400
    await send(alice, room, text("dropped"))
    await settle(hs)
    gateway.status = 200
    assert await hs.push_sender.queued() == 0 and scheduler.pending() == 0
    assert len(gateway.received) == 1


async def test_rejected_pushkey_removes_the_pusher(make_hs: MakeHs, connect: Connect,
                                                   gateway: FakeGateway) -> None:
    hs = make_hs()
    client = await connect(hs)
    alice = await User.register(client, "alice")
    bob = await User.register(client, "bob")
    room = await group_room(alice, bob)
    await set_pusher(bob, gateway, "stale")
    await set_pusher(bob, gateway, "fresh")
    gateway.reject.add("stale")
    await send(alice, room, text("one"))
    await settle(hs)
    pushers = (await ok(await client.get(f"{C}/pushers", headers=bob.headers)))["pushers"]
    assert [p["pushkey"] for p in pushers] == ["fresh"]
    await send(alice, room, text("two"))
    await settle(hs)
    assert [n["devices"][0]["pushkey"] for n in gateway.received].count("stale") == 1
    assert len(gateway.for_pushkey("fresh")) == 2


async def test_private_gateways_refused_unless_configured(
        tmp_path: Any, database_settings: dict[str, Any], connect: Connect,
        gateway: FakeGateway) -> None:
    hs = Homeserver(make_config(tmp_path, database_settings, auth=CHEAP_HASHING))
    client = await connect(hs)
    bob = await User.register(client, "bob")
    resp = await client.post(f"{C}/pushers/set", headers=bob.headers, json={
        "kind": "http", "app_id": "a", "pushkey": "k", "app_display_name": "A",
        "device_display_name": "D", "lang": "en", "data": {"url": gateway.url}})
    assert resp.status == 400 and (await resp.json())["errcode"] == "M_INVALID_PARAM"
