"""`webpush` pushers (MSC4174) delivered to a real test push service on a loopback port,
both engines: RFC 8291 encryption, RFC 8292 VAPID, and the subscription's removal when
the push service answers 410. Retries move only with the FakeScheduler."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from homeserver.clock import FakeClock
from homeserver.server import Homeserver
from homeserver.sync.timers import FakeScheduler
from tests.client_api.conftest import CHEAP_HASHING, Connect, error
from tests.client_api.sync_helpers import C, User, ok
from tests.client_api.test_push_delivery import group_room, send, settle, text
from tests.client_api.webpush_receiver import WebPushReceiver
from tests.conftest import make_config

MakeHs = Callable[[], Homeserver]
CONTACT = "mailto:admin@test.local"


@pytest.fixture
def scheduler(clock: FakeClock) -> FakeScheduler:
    return FakeScheduler(clock)


@pytest.fixture
def make_hs(tmp_path: Any, database_settings: dict[str, Any], clock: FakeClock,
            scheduler: FakeScheduler) -> MakeHs:
    def make() -> Homeserver:
        config = make_config(tmp_path, database_settings, auth=CHEAP_HASHING,
                             push={"allow_private_gateway_addresses": True,
                                   "vapid_contact": CONTACT})
        return Homeserver(config, clock=clock, scheduler=scheduler)
    return make


@pytest.fixture
async def receiver() -> AsyncIterator[WebPushReceiver]:
    r = WebPushReceiver()
    await r.up()
    yield r
    await r.down()


def pusher_body(r: WebPushReceiver, **data: Any) -> dict[str, Any]:
    return {"kind": "webpush", "app_id": "org.example.web", "pushkey": r.pushkey,
            "app_display_name": "Web", "device_display_name": "Browser", "lang": "en",
            "data": {"endpoint": r.endpoint, "auth": r.auth_b64, **data}}


async def test_mention_is_encrypted_and_vapid_signed(
        make_hs: MakeHs, connect: Connect, receiver: WebPushReceiver) -> None:
    hs = make_hs()
    client = await connect(hs)
    alice = await User.register(client, "alice")
    bob = await User.register(client, "bob")
    room = await group_room(alice, bob)
    # A third member: with two, the default rules treat the room as one-to-one (sound).
    await (await User.register(client, "carol")).join(room)
    await ok(await client.post(f"{C}/pushers/set", headers=bob.headers,
                               json=pusher_body(receiver)))
    mention = await send(alice, room, text("hey bob", **{"m.mentions": {"user_ids": [bob.user_id]}}))
    await settle(hs)
    plain = await send(alice, room, text("anyone?"))
    await settle(hs)

    assert [r.message for r in receiver.received] == [
        {"event_id": mention, "room_id": room, "type": "m.room.message",
         "sender": alice.user_id, "counts": {"unread": 1}, "prio": "high"},
        {"event_id": plain, "room_id": room, "type": "m.room.message",
         "sender": alice.user_id, "counts": {"unread": 2}, "prio": "low"}]
    first, second = receiver.received
    assert first.headers["Content-Encoding"] == "aes128gcm"
    assert int(first.headers["TTL"]) > 0
    assert [first.headers["Urgency"], second.headers["Urgency"]] == ["high", "normal"]
    now_s = hs.clock.time_ms() // 1000
    claims = first.jwt_claims
    assert claims["aud"] == f"http://127.0.0.1:{receiver.port}"
    assert now_s < claims["exp"] <= now_s + 24 * 3600
    assert claims["sub"] == CONTACT
    # A fresh ephemeral key (the RFC 8188 keyid) for every message.
    assert first.keyid != second.keyid and len(first.keyid) == 65


async def test_gone_subscription_deletes_the_pusher_and_5xx_retries(
        make_hs: MakeHs, connect: Connect, receiver: WebPushReceiver,
        scheduler: FakeScheduler) -> None:
    hs = make_hs()
    client = await connect(hs)
    alice = await User.register(client, "alice")
    bob = await User.register(client, "bob")
    room = await group_room(alice, bob)
    await ok(await client.post(f"{C}/pushers/set", headers=bob.headers,
                               json=pusher_body(receiver)))
    receiver.status = 503
    retried = await send(alice, room, text("retry me"))
    await settle(hs)
    assert await hs.push_sender.queued() == 1
    receiver.status = 201
    scheduler.advance(1000)
    await settle(hs)
    assert [r.message["event_id"] for r in receiver.received] == [retried]

    receiver.status = 410
    await send(alice, room, text("gone"))
    await settle(hs)
    assert (await ok(await client.get(f"{C}/pushers", headers=bob.headers)))["pushers"] == []
    assert await hs.push_sender.queued() == 0
    receiver.status = 201
    await send(alice, room, text("nobody listens"))
    await settle(hs)
    assert len(receiver.received) == 1


async def test_invalid_subscriptions_are_refused(
        make_hs: MakeHs, connect: Connect, receiver: WebPushReceiver) -> None:
    client = await connect(make_hs())
    bob = await User.register(client, "bob")
    bad: list[dict[str, Any]] = [
        pusher_body(receiver) | {"pushkey": "bm90IGEga2V5"},
        pusher_body(receiver, auth="c2hvcnQ"),
        pusher_body(receiver, endpoint="http://push.example.com/sub"),
        pusher_body(receiver, endpoint="ftp://127.0.0.1/sub"),
    ]
    for body in bad:
        await error(await client.post(f"{C}/pushers/set", headers=bob.headers, json=body),
                    400, "M_INVALID_PARAM")
    missing = pusher_body(receiver)
    del missing["data"]["auth"]
    await error(await client.post(f"{C}/pushers/set", headers=bob.headers, json=missing),
                400, "M_MISSING_PARAM")


async def test_loopback_endpoint_refused_unless_configured(
        tmp_path: Any, database_settings: dict[str, Any], connect: Connect,
        receiver: WebPushReceiver) -> None:
    hs = Homeserver(make_config(tmp_path, database_settings, auth=CHEAP_HASHING))
    client = await connect(hs)
    bob = await User.register(client, "bob")
    await error(await client.post(f"{C}/pushers/set", headers=bob.headers,
                                  json=pusher_body(receiver)), 400, "M_INVALID_PARAM")
