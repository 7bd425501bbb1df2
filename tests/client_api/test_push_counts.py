"""Notification counts in /sync, their reset by read receipts, GET /notifications and
pushers, on a real in-process server on both engines. After each send the test awaits
the push evaluator's `drained()`: evaluation runs after commit, off the request path."""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import quote

from aiohttp.test_utils import TestClient

from homeserver.server import Homeserver
from tests.client_api.conftest import Connect, MakeHs, error
from tests.client_api.sync_helpers import C, User, ok
from tests.spec_schemas import validate_response

_txn = itertools.count()


class Setup:
    def __init__(self, hs: Homeserver, client: TestClient):
        self.hs = hs
        self.client = client

    async def settle(self) -> None:
        await self.hs.push_evaluator.drained()


async def start(make_hs: MakeHs, connect: Connect) -> Setup:
    hs = make_hs()
    return Setup(hs, await connect(hs))


async def room_of_three(s: Setup) -> tuple[User, User, str]:
    alice = await User.register(s.client, "alice")
    bob = await User.register(s.client, "bob")
    carol = await User.register(s.client, "carol")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    await carol.join(room)
    return alice, bob, room


def counts(body: dict[str, Any], room: str) -> dict[str, int]:
    return body["rooms"]["join"][room]["unread_notifications"]  # type: ignore[no-any-return]


async def send(user: User, room: str, content: dict[str, Any]) -> str:
    resp = await user.client.put(f"{C}/rooms/{room}/send/m.room.message/p{next(_txn)}",
                                 headers=user.headers, json=content)
    return (await ok(resp))["event_id"]  # type: ignore[no-any-return]


async def receipt(user: User, room: str, event_id: str, receipt_type: str = "m.read",
                  **body: Any) -> None:
    await ok(await user.client.post(f"{C}/rooms/{room}/receipt/{receipt_type}/{event_id}",
                                    headers=user.headers, json=body))


async def test_counts_rise_highlight_on_mention_and_reset_on_receipt(
        make_hs: MakeHs, connect: Connect) -> None:
    s = await start(make_hs, connect)
    alice, bob, room = await room_of_three(s)
    await s.settle()
    assert counts(await bob.sync(), room) == {"notification_count": 0, "highlight_count": 0}
    await alice.send(room, "one")
    await alice.send(room, "two")
    await s.settle()
    assert counts(await bob.sync(), room) == {"notification_count": 2, "highlight_count": 0}
    mention = await send(alice, room, {"msgtype": "m.text", "body": "hey bob",
                                       "m.mentions": {"user_ids": [bob.user_id]}})
    await s.settle()
    assert counts(await bob.sync(), room) == {"notification_count": 3, "highlight_count": 1}
    # The sender's own messages never count for them.
    assert counts(await alice.sync(), room) == {"notification_count": 0, "highlight_count": 0}
    await receipt(bob, room, mention, "m.read.private")
    assert counts(await bob.sync(), room) == {"notification_count": 0, "highlight_count": 0}
    await alice.send(room, "three")
    await s.settle()
    assert counts(await bob.sync(), room) == {"notification_count": 1, "highlight_count": 0}


async def test_receipt_on_an_older_event_keeps_later_counts(make_hs: MakeHs,
                                                            connect: Connect) -> None:
    s = await start(make_hs, connect)
    alice, bob, room = await room_of_three(s)
    first = await alice.send(room, "one")
    await alice.send(room, "two")
    await s.settle()
    await receipt(bob, room, first)
    assert counts(await bob.sync(), room) == {"notification_count": 1, "highlight_count": 0}


async def test_muted_room_counts_nothing(make_hs: MakeHs, connect: Connect) -> None:
    s = await start(make_hs, connect)
    alice, bob, room = await room_of_three(s)
    # Element's "mute": an override rule on the room ID with no actions.
    await ok(await s.client.put(
        f"{C}/pushrules/global/override/{quote(room, safe='')}", headers=bob.headers,
        json={"conditions": [{"kind": "event_match", "key": "room_id", "pattern": room}],
              "actions": []}))
    await alice.send(room, "hello bob")
    await s.settle()
    assert counts(await bob.sync(), room) == {"notification_count": 0, "highlight_count": 0}


async def test_mentions_only_room_still_counts_mentions(make_hs: MakeHs, connect: Connect) -> None:
    s = await start(make_hs, connect)
    alice, bob, room = await room_of_three(s)
    # Element's "mentions and keywords": a room rule with no actions.
    await ok(await s.client.put(f"{C}/pushrules/global/room/{quote(room, safe='')}",
                                headers=bob.headers, json={"actions": []}))
    await alice.send(room, "chatter")
    await send(alice, room, {"msgtype": "m.text", "body": "bob!",
                             "m.mentions": {"user_ids": [bob.user_id]}})
    await s.settle()
    assert counts(await bob.sync(), room) == {"notification_count": 1, "highlight_count": 1}


async def test_dm_room_mention_and_keyword(make_hs: MakeHs, connect: Connect) -> None:
    s = await start(make_hs, connect)
    alice = await User.register(s.client, "alice")
    bob = await User.register(s.client, "bob")
    dm = await alice.create_room(preset="trusted_private_chat", invite=[bob.user_id],
                                 is_direct=True)
    await s.settle()
    invites = await ok(await s.client.get(f"{C}/notifications", headers=bob.headers))
    assert [n["event"]["type"] for n in invites["notifications"]] == ["m.room.member"]
    await bob.join(dm)
    await ok(await s.client.put(f"{C}/pushrules/global/content/tea", headers=bob.headers,
                                json={"pattern": "tea", "actions": ["notify",
                                                                    {"set_tweak": "highlight"}]}))
    await alice.send(dm, "hi")
    await alice.send(dm, "Tea time?")
    # @room from the room's creator (power 100) highlights for everyone.
    await send(alice, dm, {"msgtype": "m.text", "body": "@room", "m.mentions": {"room": True}})
    await s.settle()
    assert counts(await bob.sync(), dm) == {"notification_count": 3, "highlight_count": 2}
    body = await ok(await s.client.get(f"{C}/notifications", headers=bob.headers))
    validate_response("notifications.yaml", "/notifications", "get", body)
    got = [(n["event"]["content"].get("body"), n["read"]) for n in body["notifications"]]
    assert got[:3] == [("@room", False), ("Tea time?", False), ("hi", False)]
    assert body["notifications"][2]["actions"] == ["notify", {"set_tweak": "sound",
                                                              "value": "default"}]
    highlights = await ok(await s.client.get(f"{C}/notifications", headers=bob.headers,
                                             params={"only": "highlight"}))
    assert [n["event"]["content"]["body"] for n in highlights["notifications"]] == \
        ["@room", "Tea time?"]
    page = await ok(await s.client.get(f"{C}/notifications", headers=bob.headers,
                                       params={"limit": "1"}))
    assert len(page["notifications"]) == 1
    rest = await ok(await s.client.get(f"{C}/notifications", headers=bob.headers,
                                       params={"from": page["next_token"]}))
    assert [n["event"]["content"].get("body") for n in rest["notifications"]][:2] == \
        ["Tea time?", "hi"]
    await error(await s.client.get(f"{C}/notifications", headers=bob.headers,
                                   params={"from": "x"}), 400, "M_INVALID_PARAM")


async def test_threaded_receipt_clears_only_its_thread(make_hs: MakeHs, connect: Connect) -> None:
    s = await start(make_hs, connect)
    alice, bob, room = await room_of_three(s)
    root = await alice.send(room, "root")
    in_thread = await send(alice, room, {"msgtype": "m.text", "body": "reply",
                                         "m.relates_to": {"rel_type": "m.thread",
                                                          "event_id": root}})
    await s.settle()
    assert counts(await bob.sync(), room)["notification_count"] == 2
    await receipt(bob, room, in_thread, thread_id=root)
    assert counts(await bob.sync(), room)["notification_count"] == 1
    await receipt(bob, room, root, thread_id="main")
    assert counts(await bob.sync(), room)["notification_count"] == 0


async def test_pushers(make_hs: MakeHs, connect: Connect) -> None:
    s = await start(make_hs, connect)
    alice = await User.register(s.client, "alice")
    bob = await User.register(s.client, "bob")
    pusher = {"kind": "http", "app_id": "org.example.app", "pushkey": "key1",
              "app_display_name": "Example", "device_display_name": "Phone",
              "lang": "en", "profile_tag": "tag",
              "data": {"url": "https://push.example.org/_matrix/push/v1/notify",
                       "format": "event_id_only", "custom": 1}}
    await ok(await s.client.post(f"{C}/pushers/set", headers=alice.headers, json=pusher))
    body = await ok(await s.client.get(f"{C}/pushers", headers=alice.headers))
    validate_response("pusher.yaml", "/pushers", "get", body)
    assert body == {"pushers": [pusher]}
    # Without append, another user's pusher with the same app and key replaces alice's.
    await ok(await s.client.post(f"{C}/pushers/set", headers=bob.headers, json=pusher))
    assert (await ok(await s.client.get(f"{C}/pushers", headers=alice.headers)))["pushers"] == []
    await ok(await s.client.post(f"{C}/pushers/set", headers=alice.headers,
                                 json={**pusher, "append": True}))
    assert len((await ok(await s.client.get(f"{C}/pushers", headers=bob.headers)))["pushers"]) == 1
    await ok(await s.client.post(f"{C}/pushers/set", headers=alice.headers,
                                 json={"kind": None, "app_id": "org.example.app",
                                       "pushkey": "key1"}))
    assert (await ok(await s.client.get(f"{C}/pushers", headers=alice.headers)))["pushers"] == []
    bad = [
        ({k: v for k, v in pusher.items() if k != "pushkey"}, "M_MISSING_PARAM"),
        ({**pusher, "lang": None}, "M_MISSING_PARAM"),
        ({**pusher, "data": {}}, "M_MISSING_PARAM"),
        ({**pusher, "kind": "carrier-pigeon"}, "M_INVALID_PARAM"),
        ({**pusher, "app_id": "x" * 65}, "M_INVALID_PARAM"),
        ({**pusher, "pushkey": "k" * 513}, "M_INVALID_PARAM"),
        ({**pusher, "data": {"url": "https://push.example.org/elsewhere"}}, "M_INVALID_PARAM"),
        ({**pusher, "data": {"url": "ftp://push.example.org/_matrix/push/v1/notify"}},
         "M_INVALID_PARAM"),
        ({**pusher, "data": {"url": "http://127.0.0.1/_matrix/push/v1/notify"}},
         "M_INVALID_PARAM"),
        ({**pusher, "data": {"url": "https://localhost/_matrix/push/v1/notify"}},
         "M_INVALID_PARAM"),
        ({**pusher, "data": {"url": "https://[::1]/_matrix/push/v1/notify"}}, "M_INVALID_PARAM"),
        ({**pusher, "data": {"url": "https://push.example.org/_matrix/push/v1/notify",
                             "format": "full"}}, "M_INVALID_PARAM"),
        ({**pusher, "append": "yes"}, "M_BAD_JSON"),
    ]
    for body_, errcode in bad:
        await error(await s.client.post(f"{C}/pushers/set", headers=alice.headers, json=body_),
                    400, errcode)


THREADED = {"room": {"timeline": {"unread_thread_notifications": True}}}


async def test_unread_thread_notifications_split_counts_by_thread(
        make_hs: MakeHs, connect: Connect) -> None:
    s = await start(make_hs, connect)
    alice, bob, room = await room_of_three(s)
    root = await alice.send(room, "root")
    await alice.send(room, "main chatter")
    thread = {"rel_type": "m.thread", "event_id": root}
    await send(alice, room, {"msgtype": "m.text", "body": "in thread", "m.relates_to": thread})
    mention = await send(alice, room, {"msgtype": "m.text", "body": "bob, look",
                                       "m.mentions": {"user_ids": [bob.user_id]},
                                       "m.relates_to": thread})
    await s.settle()
    # With the flag: the main timeline (the root is in it) apart from each thread.
    joined = (await bob.sync(filter=THREADED))["rooms"]["join"][room]
    assert joined["unread_notifications"] == {"notification_count": 2, "highlight_count": 0}
    assert joined["unread_thread_notifications"] == {
        root: {"notification_count": 2, "highlight_count": 1}}
    # Without it: one total, and no per-thread section.
    plain = (await bob.sync())["rooms"]["join"][room]
    assert plain["unread_notifications"] == {"notification_count": 4, "highlight_count": 1}
    assert "unread_thread_notifications" not in plain
    # A threaded receipt clears that thread only.
    await receipt(bob, room, mention, thread_id=root)
    joined = (await bob.sync(filter=THREADED))["rooms"]["join"][room]
    assert joined["unread_notifications"] == {"notification_count": 2, "highlight_count": 0}
    assert joined["unread_thread_notifications"] == {}
    assert counts(await bob.sync(), room) == {"notification_count": 2, "highlight_count": 0}


async def test_main_and_unthreaded_receipts_with_thread_counts(
        make_hs: MakeHs, connect: Connect) -> None:
    s = await start(make_hs, connect)
    alice, bob, room = await room_of_three(s)
    root = await alice.send(room, "root")
    thread = {"rel_type": "m.thread", "event_id": root}
    await send(alice, room, {"msgtype": "m.text", "body": "reply", "m.relates_to": thread})
    last = await alice.send(room, "after")
    await s.settle()
    # A `main` receipt reads the main timeline and leaves the thread unread.
    await receipt(bob, room, last, thread_id="main")
    joined = (await bob.sync(filter=THREADED))["rooms"]["join"][room]
    assert joined["unread_notifications"] == {"notification_count": 0, "highlight_count": 0}
    assert joined["unread_thread_notifications"] == {
        root: {"notification_count": 1, "highlight_count": 0}}
    # An unthreaded receipt reads everything up to its event, threads included...
    await receipt(bob, room, last)
    joined = (await bob.sync(filter=THREADED))["rooms"]["join"][room]
    assert joined["unread_thread_notifications"] == {}
    # ...and nothing after it.
    await send(alice, room, {"msgtype": "m.text", "body": "later", "m.relates_to": thread})
    await s.settle()
    joined = (await bob.sync(filter=THREADED))["rooms"]["join"][room]
    assert joined["unread_notifications"] == {"notification_count": 0, "highlight_count": 0}
    assert joined["unread_thread_notifications"] == {
        root: {"notification_count": 1, "highlight_count": 0}}
