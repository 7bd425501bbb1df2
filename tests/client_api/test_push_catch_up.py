"""Push evaluation survives a crash between an event's commit and its evaluation: the
next Homeserver.open() evaluates every event after `push_evaluated_upto`, exactly once.

Events are normally evaluated inside their own transaction; they are left behind the
position when that fails (or by a server version that evaluated after commit). That
state is made deterministically by building a homeserver whose push evaluator never
hears about new events (its batch writer and after-commit listener are removed), then
closing it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from homeserver.push.bulk_evaluator import BulkPushEvaluator
from homeserver.server import Homeserver
from homeserver.storage.notifications import NotificationStore
from tests.client_api.conftest import MakeHs
from tests.client_api.sync_helpers import C, User, ok

Serve = Callable[[Homeserver], Awaitable[TestClient]]


@pytest.fixture
async def serve(aiohttp_client: Any) -> AsyncIterator[Serve]:
    """Open a homeserver and a client for it; the test closes it (a restart), and any
    left open are closed at teardown."""
    opened: list[Homeserver] = []

    async def serve(hs: Homeserver) -> TestClient:
        await hs.open()
        opened.append(hs)
        return await aiohttp_client(hs.client_app())  # type: ignore[no-any-return]

    yield serve
    for hs in opened:
        if not hs.notifier.closed:
            await hs.close()


def crashing(make_hs: MakeHs) -> Homeserver:
    """A homeserver that commits events but never push-evaluates them."""
    hs = make_hs()
    hs.rooms.persister.on_event_persisted.remove(hs.push_evaluator.on_event_persisted)
    hs.rooms.persister.batch_writers.remove(hs.push_evaluator.record_in_transaction)
    return hs


async def chat(client: TestClient) -> tuple[User, User, str]:
    """alice and bob in a room; alice sends a message and a mention of bob."""
    alice = await User.register(client, "alice")
    bob = await User.register(client, "bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    await alice.send(room, "hello")
    await ok(await client.put(f"{C}/rooms/{room}/send/m.room.message/m1", headers=alice.headers,
                              json={"msgtype": "m.text", "body": "hey bob",
                                    "m.mentions": {"user_ids": [bob.user_id]}}))
    return alice, bob, room


async def counts(user: User, room: str) -> dict[str, int]:
    body = await user.sync()
    return body["rooms"]["join"][room]["unread_notifications"]  # type: ignore[no-any-return]


async def notified(user: User) -> list[str]:
    body = await ok(await user.client.get(f"{C}/notifications", headers=user.headers))
    return [n["event"]["content"].get("body") for n in body["notifications"]]


def again(user: User, client: TestClient) -> User:
    return User(client, user.user_id, user.token)


async def test_events_committed_before_a_crash_are_evaluated_at_startup(
        make_hs: MakeHs, serve: Serve) -> None:
    first = crashing(make_hs)
    alice, bob, room = await chat(await serve(first))
    assert await notified(bob) == []
    await first.close()

    client = await serve(make_hs())
    alice, bob = again(alice, client), again(bob, client)
    assert await counts(bob, room) == {"notification_count": 2, "highlight_count": 1}
    assert await notified(bob) == ["hey bob", "hello"]
    # Sending still counts as reading for the sender, caught up or not.
    assert await counts(alice, room) == {"notification_count": 0, "highlight_count": 0}


async def test_a_normal_restart_does_not_count_twice(make_hs: MakeHs, serve: Serve) -> None:
    first = make_hs()
    alice, bob, room = await chat(await serve(first))
    await first.push_evaluator.drained()
    assert await counts(bob, room) == {"notification_count": 2, "highlight_count": 1}
    await first.close()

    second = make_hs()
    client = await serve(second)
    alice, bob = again(alice, client), again(bob, client)
    assert await second.push_evaluator.catch_up() == 0
    assert await counts(bob, room) == {"notification_count": 2, "highlight_count": 1}
    assert await notified(bob) == ["hey bob", "hello"]
    await alice.send(room, "after the restart")
    await second.push_evaluator.drained()
    assert await counts(bob, room) == {"notification_count": 3, "highlight_count": 1}
    assert await notified(bob) == ["after the restart", "hey bob", "hello"]


async def test_concurrent_catch_ups_evaluate_each_event_once(make_hs: MakeHs,
                                                             serve: Serve) -> None:
    hs = crashing(make_hs)
    alice, bob, room = await chat(await serve(hs))
    # A second evaluator on the same database stands in for another process.
    other = BulkPushEvaluator(hs.db, hs.rooms.stores, hs.push_rules, NotificationStore(),
                              hs.clock, server_name=hs.config.server_name)
    read = await asyncio.gather(hs.push_evaluator.catch_up(), other.catch_up())
    assert sum(read) > 0
    assert await counts(bob, room) == {"notification_count": 2, "highlight_count": 1}
    assert await notified(bob) == ["hey bob", "hello"]
