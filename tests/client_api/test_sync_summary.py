"""RoomSummary in incremental syncs: sent when the room's members may have changed since
`since`, left out otherwise (spec: the fields may be omitted when unchanged since the
last sync, and are required when changed)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.client_api.conftest import Connect, MakeHs
from tests.client_api.sync_helpers import User, bodies, timeline


def _summary(body: dict[str, Any], room: str) -> dict[str, Any] | None:
    return body["rooms"]["join"][room].get("summary")  # type: ignore[no-any-return]


async def test_unchanged_summary_is_omitted_and_a_changed_one_is_sent(client: TestClient) -> None:
    alice = await User.register(client, "alice")
    bob = await User.register(client, "bob")
    room = await alice.create_room(preset="public_chat")
    first = await alice.sync()
    assert _summary(first, room) == {"m.heroes": [], "m.joined_member_count": 1,
                                     "m.invited_member_count": 0}

    await alice.send(room, "nobody came or went")
    quiet = await alice.sync(since=first["next_batch"])
    assert bodies(timeline(quiet, room)) == ["nobody came or went"]
    assert _summary(quiet, room) is None

    await alice.invite(room, bob.user_id)
    invited = await alice.sync(since=quiet["next_batch"])
    assert _summary(invited, room) == {"m.heroes": [bob.user_id], "m.joined_member_count": 1,
                                       "m.invited_member_count": 1}

    await bob.join(room)
    await alice.send(room, "welcome")
    joined = await alice.sync(since=invited["next_batch"])
    assert _summary(joined, room) == {"m.heroes": [bob.user_id], "m.joined_member_count": 2,
                                      "m.invited_member_count": 0}
    await alice.send(room, "again")
    assert _summary(await alice.sync(since=joined["next_batch"]), room) is None

    # A sync from an older token covers the change: it gets the summary too.
    assert _summary(await alice.sync(since=quiet["next_batch"]), room) == _summary(joined, room)


async def test_a_summary_change_the_timeline_filter_hides_is_still_sent(
        client: TestClient) -> None:
    alice = await User.register(client, "alice")
    bob = await User.register(client, "bob")
    room = await alice.create_room(preset="public_chat")
    no_members = {"room": {"timeline": {"not_types": ["m.room.member"]}}}
    first = await alice.sync(filter=no_members)

    await bob.join(room)
    body = await alice.sync(since=first["next_batch"], filter=no_members)

    # Once past `since`, the change would never be sent again: the room is shown for it.
    assert timeline(body, room) == []
    assert _summary(body, room) == {"m.heroes": [bob.user_id], "m.joined_member_count": 2,
                                    "m.invited_member_count": 0}
    assert room not in (await alice.sync(since=body["next_batch"], filter=no_members))[
        "rooms"]["join"]


async def test_full_state_and_newly_joined_rooms_always_have_their_summary(
        client: TestClient) -> None:
    alice = await User.register(client, "alice")
    bob = await User.register(client, "bob")
    room = await alice.create_room(preset="public_chat")
    first = await bob.sync()
    await bob.join(room)
    joined = await bob.sync(since=first["next_batch"])
    assert _summary(joined, room) == {"m.heroes": [alice.user_id], "m.joined_member_count": 2,
                                      "m.invited_member_count": 0}
    await alice.send(room, "hi")
    full = await bob.sync(since=joined["next_batch"], full_state="true")
    assert _summary(full, room) == _summary(joined, room)


async def test_a_membership_change_the_log_was_not_told_of_yet_is_sent(
        make_hs: MakeHs, connect: Connect, monkeypatch: pytest.MonkeyPatch) -> None:
    hs = make_hs()
    client = await connect(hs)
    alice = await User.register(client, "alice")
    bob = await User.register(client, "bob")
    room = await alice.create_room(preset="public_chat")
    first = await alice.sync()
    no_members = {"room": {"timeline": {"not_types": ["m.room.member"]}}}
    hidden = await alice.sync(filter=no_members)
    # The log is told of events after their commit: a sync may see an event first.
    monkeypatch.setattr(hs.notifier.room_states, "observe", lambda *args, **kwargs: None)
    await bob.join(room)

    body = await alice.sync(since=first["next_batch"])
    assert [e["type"] for e in timeline(body, room)] == ["m.room.member"]
    assert _summary(body, room) == {"m.heroes": [bob.user_id], "m.joined_member_count": 2,
                                    "m.invited_member_count": 0}
    filtered = await alice.sync(since=hidden["next_batch"], filter=no_members)
    assert timeline(filtered, room) == [] and _summary(filtered, room) == _summary(body, room)


async def test_a_limited_timeline_has_its_summary(client: TestClient) -> None:
    alice = await User.register(client, "alice")
    room = await alice.create_room(preset="public_chat")
    first = await alice.sync()
    for body in ("one", "two", "three"):
        await alice.send(room, body)
    short = {"room": {"timeline": {"limit": 1}}}
    body = await alice.sync(since=first["next_batch"], filter=short)
    assert body["rooms"]["join"][room]["timeline"]["limited"] is True
    assert _summary(body, room) == _summary(first, room)
