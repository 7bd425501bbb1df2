"""A /sync woken by a message this process just committed takes the message's state
snapshots from memory (sync/sync_service.py, room_event_listener) instead of reading
them back, and still lazy-loads the sender's membership correctly; on both engines."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from homeserver.server import Homeserver
from homeserver.storage import sync_queries
from homeserver.storage.postgres_engine import PostgresConnection
from homeserver.storage.sqlite_engine import SqliteConnection
from tests.client_api.conftest import Connect, MakeHs, connect, make_hs  # noqa: F401 (fixtures)
from tests.client_api.sync_helpers import User, state_keys, timeline

LAZY = {"room": {"state": {"lazy_load_members": True},
                 "timeline": {"lazy_load_members": True}}}
EVENT_STATE_READS = (sync_queries.EVENT_STATES_PG, sync_queries.EVENT_STATES_SQLITE)


def _count_event_state_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    count = [0]
    for engine in (SqliteConnection, PostgresConnection):
        original = engine.fetch

        async def counting(self: Any, sql: str, *args: Any, _original: Any = original) -> Any:
            if sql in EVENT_STATE_READS:
                count[0] += 1
            return await _original(self, sql, *args)
        monkeypatch.setattr(engine, "fetch", counting)
    return count


async def _woken(hs: Homeserver, user: User, since: str, sender: User, room: str) -> dict[str, Any]:
    poll = asyncio.ensure_future(user.sync(since=since, timeout_ms=30_000, filter=LAZY))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while hs.notifier.waiter_count() < 1:
        assert loop.time() < deadline, "the sync never started waiting"
        await asyncio.sleep(0.001)
    await sender.send(room, "hello")
    return await poll


async def test_woken_sync_lazy_loads_from_the_remembered_snapshot(
        make_hs: MakeHs, connect: Connect, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    hs = make_hs()
    client: TestClient = await connect(hs)
    alice = await User.register(client, "alice")
    bob = await User.register(client, "bob")
    room = await alice.create_room(preset="public_chat")
    since = (await alice.sync(filter=LAZY))["next_batch"]
    await bob.join(room)
    since = (await alice.sync(since=since, filter=LAZY))["next_batch"]
    reads = _count_event_state_reads(monkeypatch)
    body = await _woken(hs, alice, since, bob, room)
    assert [e["content"]["body"] for e in timeline(body, room)] == ["hello"]
    assert reads[0] == 0
    # A server that did not commit the message (here: a second one on the same
    # database, as after a restart) reads the snapshots back, and answers the same.
    other = User(await connect(make_hs()), alice.user_id, alice.token)
    again = await other.sync(since=since, filter=LAZY)
    assert reads[0] == 1
    assert timeline(again, room) == timeline(body, room)
    assert state_keys(again, room) == state_keys(body, room)
