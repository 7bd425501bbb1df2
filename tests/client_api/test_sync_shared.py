"""Syncs woken by the same events share their reads (homeserver/sync/shared_reads.py)
and the event cache: each user still gets exactly what they may see, and a redaction
applies to an event however it was cached."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from homeserver.server import Homeserver
from homeserver.storage.events import SELECT_STREAM_RANGE
from homeserver.storage.memberships import SELECT_FOR_USER
from homeserver.storage.postgres_engine import PostgresConnection
from homeserver.storage.sqlite_engine import SqliteConnection
from homeserver.storage.sync_batch_reads import PERSONAL_ROWS_PG, PERSONAL_ROWS_SQLITE
from homeserver.storage.sync_queries import (
    MEMBERSHIPS_OF_USERS_PG,
    MEMBERSHIPS_OF_USERS_SQLITE,
    SUMMARY_MEMBERS_PG,
    SUMMARY_MEMBERS_SQLITE,
)
from tests.client_api.conftest import Connect, MakeHs
from tests.client_api.sync_helpers import C, User, bodies, ok, timeline


async def _waiting(hs: Homeserver, count: int, within_s: float = 30.0) -> None:
    """Until `count` syncs wait on the notifier (a readiness check, not a timed sleep)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while hs.notifier.waiter_count() < count:
        if loop.time() > deadline:
            raise AssertionError("the syncs never started waiting")
        await asyncio.sleep(0.001)


async def _ignore(user: User, other: User) -> None:
    await ok(await user.client.put(f"{C}/user/{user.user_id}/account_data/m.ignored_user_list",
                                   headers=user.headers,
                                   json={"ignored_users": {other.user_id: {}}}))


async def _redact(user: User, room: str, event_id: str) -> str:
    resp = await user.client.put(f"{C}/rooms/{room}/redact/{event_id}/r1", headers=user.headers,
                                 json={"reason": "oops"})
    return (await ok(resp))["event_id"]  # type: ignore[no-any-return]


SUMMARY_MEMBERS = "summary members"
MEMBERSHIPS_OF_USERS = "memberships of users"
_ALIASES = {SUMMARY_MEMBERS_PG: SUMMARY_MEMBERS, SUMMARY_MEMBERS_SQLITE: SUMMARY_MEMBERS,
            MEMBERSHIPS_OF_USERS_PG: MEMBERSHIPS_OF_USERS,
            MEMBERSHIPS_OF_USERS_SQLITE: MEMBERSHIPS_OF_USERS,
            PERSONAL_ROWS_PG: MEMBERSHIPS_OF_USERS, PERSONAL_ROWS_SQLITE: MEMBERSHIPS_OF_USERS}


def _count_statements(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Statements run from now on, by SQL text (the two engines' variants as one)."""
    counts: Counter[str] = Counter()
    for engine in (SqliteConnection, PostgresConnection):
        for name in ("fetch", "fetchrow", "execute"):
            original = getattr(engine, name)

            async def counting(self: Any, sql: str, *args: Any, _original: Any = original) -> Any:
                counts[_ALIASES.get(sql, sql)] += 1
                return await _original(self, sql, *args)
            monkeypatch.setattr(engine, name, counting)
    return counts


def _event(events: list[dict[str, Any]], event_id: str) -> dict[str, Any]:
    return next(e for e in events if e["event_id"] == event_id)


async def test_one_event_wakes_users_who_may_see_it_differently(make_hs: MakeHs,
                                                                 connect: Connect) -> None:
    hs = make_hs()
    client = await connect(hs)
    alice = await User.register(client, "alice")
    bob = await User.register(client, "bob")
    carol = await User.register(client, "carol")
    dave = await User.register(client, "dave")
    room = await alice.create_room(preset="public_chat")
    for user in (bob, carol, dave):
        await user.join(room)
    await _ignore(carol, alice)
    no_messages = {"room": {"timeline": {"not_types": ["m.room.message"]}}}
    since = {u.user_id: (await u.sync())["next_batch"] for u in (bob, carol, dave)}

    polls = {u.user_id: asyncio.create_task(u.sync(since=since[u.user_id], timeout_ms=60_000,
                                                   filter=no_messages if u is dave else None))
             for u in (bob, carol, dave)}
    await _waiting(hs, 3)
    await alice.send(room, "from alice")
    bob_body = await asyncio.wait_for(polls[bob.user_id], 10)
    assert bodies(timeline(bob_body, room)) == ["from alice"]
    # Woken too, but carol ignores alice and dave's filter drops messages: nothing for
    # them yet, so they wait on.
    await _waiting(hs, 2)
    assert not polls[carol.user_id].done() and not polls[dave.user_id].done()

    await ok(await client.put(f"{C}/rooms/{room}/send/org.example.note/n1", headers=bob.headers,
                              json={"note": "for everyone"}))
    carol_body, dave_body = await asyncio.wait_for(
        asyncio.gather(polls[carol.user_id], polls[dave.user_id]), 10)
    for body in (carol_body, dave_body):
        events = timeline(body, room)
        assert [e["type"] for e in events] == ["org.example.note"], events
        assert events[0]["content"] == {"note": "for everyone"}


async def test_users_at_the_same_position_see_only_their_share(make_hs: MakeHs,
                                                               connect: Connect) -> None:
    hs = make_hs()
    client = await connect(hs)
    alice = await User.register(client, "alice")
    bob = await User.register(client, "bob")
    dave = await User.register(client, "dave")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    await dave.join(room)
    since_bob = (await bob.sync())["next_batch"]
    since_dave = (await dave.sync())["next_batch"]

    await alice.send(room, "before dave left")
    await dave.leave(room)
    secret = await alice.send(room, "after dave left")
    # Both syncs cover the same new events, read and formatted once for both.
    bob_body = await bob.sync(since=since_bob, timeout_ms=10_000)
    dave_body = await dave.sync(since=since_dave, timeout_ms=10_000)

    assert bodies(timeline(bob_body, room)) == ["before dave left", "after dave left"]
    assert room not in dave_body["rooms"]["join"]
    left = timeline(dave_body, room, "leave")
    assert bodies(left) == ["before dave left"]
    assert left[-1]["type"] == "m.room.member" and left[-1]["state_key"] == dave.user_id
    assert secret not in {e["event_id"] for e in left}
    # An own event carries the sender's transaction ID; the same event shown to others
    # does not.
    alice_body = await alice.sync(since=since_bob)
    mine = _event(timeline(alice_body, room), secret)
    assert "transaction_id" in mine["unsigned"]
    assert "transaction_id" not in _event(timeline(bob_body, room), secret)["unsigned"]


async def test_cached_event_is_not_served_to_a_user_who_may_not_see_it(make_hs: MakeHs,
                                                                       connect: Connect) -> None:
    hs = make_hs()
    client = await connect(hs)
    alice = await User.register(client, "alice")
    bob = await User.register(client, "bob")
    carol = await User.register(client, "carol")
    room = await alice.create_room(preset="public_chat")
    await alice.set_state(room, "m.room.history_visibility", {"history_visibility": "joined"})
    await bob.join(room)
    since = (await bob.sync())["next_batch"]
    hidden = await alice.send(room, "before carol joined")
    # Read, parsed and cached for bob.
    assert bodies(timeline(await bob.sync(since=since), room)) == ["before carol joined"]
    assert hs.rooms.stores.events.cached(hidden) is not None

    await carol.join(room)
    await alice.send(room, "after carol joined")
    carol_events = timeline(await carol.sync(), room)
    assert bodies(carol_events) == ["after carol joined"]
    resp = await client.get(f"{C}/rooms/{room}/event/{hidden}", headers=carol.headers)
    assert resp.status == 404


async def test_redaction_after_caching_serves_the_redacted_form(make_hs: MakeHs,
                                                                connect: Connect) -> None:
    hs = make_hs()
    client = await connect(hs)
    alice = await User.register(client, "alice")
    bob = await User.register(client, "bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    since = (await bob.sync())["next_batch"]
    poll = asyncio.create_task(bob.sync(since=since, timeout_ms=60_000))
    await _waiting(hs, 1)
    event_id = await alice.send(room, "regrettable")
    woken = await asyncio.wait_for(poll, 10)
    assert _event(timeline(woken, room), event_id)["content"]["body"] == "regrettable"
    assert hs.rooms.stores.events.cached(event_id) is not None

    poll = asyncio.create_task(bob.sync(since=woken["next_batch"], timeout_ms=60_000))
    await _waiting(hs, 1)
    redaction = await _redact(alice, room, event_id)
    body = await asyncio.wait_for(poll, 10)
    assert [e["event_id"] for e in timeline(body, room)] == [redaction]

    for user in (alice, bob):
        served = _event(timeline(await user.sync(), room), event_id)
        assert served["content"] == {}
        assert served["unsigned"]["redacted_because"]["event_id"] == redaction
    resp = await client.get(f"{C}/rooms/{room}/event/{event_id}", headers=bob.headers)
    assert (await ok(resp))["content"] == {}
    messages = await ok(await client.get(f"{C}/rooms/{room}/messages", headers=bob.headers,
                                         params={"dir": "b", "limit": "5"}))
    assert _event(messages["chunk"], event_id)["content"] == {}


async def test_the_reads_one_wake_up_needs_are_made_once_for_all_woken_syncs(
        make_hs: MakeHs, connect: Connect, monkeypatch: pytest.MonkeyPatch) -> None:
    hs = make_hs()
    client = await connect(hs)
    alice = await User.register(client, "alice")
    room = await alice.create_room(preset="public_chat")
    pollers = [await User.register(client, f"user{i}") for i in range(4)]
    for user in pollers:
        await user.join(room)
    lazy = {"room": {"state": {"lazy_load_members": True}}}
    since = [(await u.sync(filter=lazy))["next_batch"] for u in pollers]
    polls = [asyncio.create_task(u.sync(since=s, timeout_ms=60_000, filter=lazy))
             for u, s in zip(pollers, since, strict=True)]
    await _waiting(hs, len(pollers))
    statements = _count_statements(monkeypatch)
    formatted_for: list[str] = []
    original_format = hs.rooms.loader.format

    async def format_counted(conn: Any, events: Any, *, user_id: str, **kwargs: Any) -> Any:
        formatted_for.append(user_id)
        return await original_format(conn, events, user_id=user_id, **kwargs)
    monkeypatch.setattr(hs.rooms.loader, "format", format_counted)
    await alice.send(room, "to everyone")
    woken = await asyncio.wait_for(asyncio.gather(*polls), 10)
    for body in woken:
        assert bodies(timeline(body, room)) == ["to everyone"]
        state = body["rooms"]["join"][room]["state"]["events"]
        assert [e["state_key"] for e in state] == [alice.user_id]  # the sender, lazily
        # The members did not change since the initial syncs: no summary (spec: may be
        # omitted), and none read.
        assert "summary" not in body["rooms"]["join"][room]
    # A message sent here: its batch is the window and its format needs no read
    # (tests/sync/test_local_batches.py). The sender's membership (lazily loaded state)
    # is formatted once for all four, for nobody in particular.
    assert statements[SELECT_STREAM_RANGE] == 0
    assert formatted_for == [""]
    assert statements[SUMMARY_MEMBERS] == 0
    # Per-user reads of syncs woken together are batched too: one query for all their
    # memberships (with their counts), never one per user.
    assert statements[MEMBERSHIPS_OF_USERS] <= 2 and statements[SELECT_FOR_USER] == 0
    # An invite changes the summary: every woken sync has it, read once for all four.
    polls = [asyncio.create_task(u.sync(since=b["next_batch"], timeout_ms=60_000, filter=lazy))
             for u, b in zip(pollers, woken, strict=True)]
    await _waiting(hs, len(pollers))
    statements.clear()
    formatted_for.clear()
    await ok(await client.post(f"{C}/rooms/{room}/invite", headers=alice.headers,
                               json={"user_id": "@someone:test.local"}))
    members = [alice.user_id, *(u.user_id for u in pollers), "@someone:test.local"]
    for user, body in zip(pollers, await asyncio.wait_for(asyncio.gather(*polls), 10),
                          strict=True):
        assert body["rooms"]["join"][room]["summary"] == {
            "m.heroes": [m for m in members if m != user.user_id][:5],
            "m.joined_member_count": 5, "m.invited_member_count": 1}
    assert statements[SUMMARY_MEMBERS] == 1
    # A state event is read: once for all four, the new events and their format (for
    # nobody in particular).
    assert statements[SELECT_STREAM_RANGE] == 1
    assert formatted_for.count("") == 1 and not set(formatted_for) & {u.user_id for u in pollers}
