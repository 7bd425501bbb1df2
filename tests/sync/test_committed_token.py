"""A long-poll woken by a batch of messages takes its token from the batch
(notifier.committed_token) instead of reading the stream positions, and still misses
nothing: what other writers committed and notified meanwhile, and the device-list change
a membership records without notifying it, reach the client. A real in-process server on
both engines."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from homeserver.server import Homeserver
from homeserver.storage import streams
from homeserver.sync import tokens
from homeserver.sync.tokens import SyncToken
from tests.client_api.conftest import Connect, MakeHs, connect, make_hs  # noqa: F401 (fixtures)
from tests.client_api.sync_helpers import C, User, ok, timeline, woken_by


@pytest.fixture
async def setup(make_hs: MakeHs, connect: Connect) -> tuple[Homeserver, TestClient]:  # noqa: F811
    hs = make_hs()
    return hs, await connect(hs)


def _count_position_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the syncs' reads of the stream positions (sync/tokens.py's current_token;
    the SQLite batch's own read, in its transaction, is not one of them)."""
    reads = [0]
    original = tokens.current_token

    async def counting(*args: Any) -> SyncToken:
        reads[0] += 1
        return await original(*args)
    monkeypatch.setattr(tokens, "current_token", counting)
    return reads


async def _woken_by(hs: Homeserver, poll: Awaitable[dict[str, Any]],
                    wake: Awaitable[Any]) -> dict[str, Any]:
    [body] = await woken_by(hs.notifier, [poll], wake)
    return body


async def test_a_message_wakes_a_sync_without_a_positions_read(
        setup: tuple[Homeserver, TestClient], monkeypatch: pytest.MonkeyPatch) -> None:
    hs, client = setup
    alice = await User.register(client, "alice")
    carol = await User.register(client, "carol")
    room = await carol.create_room(preset="public_chat")
    await alice.join(room)
    since = (await alice.sync())["next_batch"]
    reads = _count_position_reads(monkeypatch)
    woken = await _woken_by(hs, alice.sync(since=since, timeout_ms=30_000),
                            carol.send(room, "one"))
    assert [e["content"]["body"] for e in timeline(woken, room)] == ["one"]
    assert reads[0] == 0
    # The token handed out is the one a read would have given.
    async with hs.db.connection() as conn:
        positions = await streams.all_positions(conn)
    token = SyncToken.parse(woken["next_batch"])
    assert token["events"] == positions["events"]
    for stream, position in positions.items():
        if stream in token.positions:
            assert token[stream] == position


async def test_writes_around_a_batch_still_reach_the_sync(
        setup: tuple[Homeserver, TestClient]) -> None:
    hs, client = setup
    alice = await User.register(client, "alice")
    carol = await User.register(client, "carol")
    room = await carol.create_room(preset="public_chat")
    await alice.join(room)
    first = await carol.send(room, "one")
    since = (await alice.sync())["next_batch"]
    # A receipt (notified, no token), then a message (token): the woken sync sees both.
    await ok(await carol.client.post(f"{C}/rooms/{room}/receipt/m.read/{first}",
                                     headers=carol.headers, json={}))
    body = await alice.sync(since=since)
    receipts = [e for e in body["rooms"]["join"][room]["ephemeral"]["events"]
                if e["type"] == "m.receipt"]
    assert receipts and first in receipts[0]["content"]
    woken = await _woken_by(hs, alice.sync(since=body["next_batch"], timeout_ms=30_000),
                            carol.send(room, "two"))
    assert [e["content"]["body"] for e in timeline(woken, room)] == ["two"]
    # Bob joins (a state event: its batch carries no token, and it records a device-list
    # change without notifying that stream); Alice, who now shares a room with Bob, hears
    # of it in the sync the join wakes, and a later message still wakes her at once.
    bob = await User.register(client, "bob")
    joined = await _woken_by(hs, alice.sync(since=woken["next_batch"], timeout_ms=30_000),
                             bob.join(room))
    assert bob.user_id in joined.get("device_lists", {}).get("changed", [])
    last = await _woken_by(hs, alice.sync(since=joined["next_batch"], timeout_ms=30_000),
                           bob.send(room, "three"))
    assert [e["content"]["body"] for e in timeline(last, room)] == ["three"]
