"""GET /rooms/{roomId}/messages and /context/{eventId} on a real in-process server."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.client_api.conftest import error
from tests.client_api.history_helpers import (
    C,
    bodies,
    create_room,
    join,
    ok,
    query,
    redact,
    set_state,
    text,
    users,
)
from tests.spec_schemas import validate_response

MESSAGES_ONLY = {"types": ["m.room.message"]}


async def _messages(client: TestClient, headers: dict[str, str], room_id: str, **params: Any) -> Any:
    body = await ok(await client.get(f"{C}/rooms/{room_id}/messages{query(**params)}", headers=headers))
    validate_response("message_pagination.yaml", "/rooms/{roomId}/messages", "get", body)
    return body


async def _context(client: TestClient, headers: dict[str, str], room_id: str, event_id: str,
                   **params: Any) -> Any:
    resp = await client.get(f"{C}/rooms/{room_id}/context/{event_id}{query(**params)}", headers=headers)
    body = await ok(resp)
    validate_response("event_context.yaml", "/rooms/{roomId}/context/{eventId}", "get", body)
    return body


async def _all_pages(client: TestClient, headers: dict[str, str], room_id: str, **params: Any) -> tuple[list[Any], int]:
    """Follow `end` until it is absent; returns the events and the number of pages."""
    events: list[Any] = []
    pages = 0
    token = params.pop("from_", None)
    while True:
        body = await _messages(client, headers, room_id, **params, **({"from": token} if token else {}))
        pages += 1
        events += body["chunk"]
        if "end" not in body:
            return events, pages
        assert pages < 50
        token = body["end"]


async def _room_with_messages(client: TestClient, n: int) -> tuple[dict[str, str], str, list[str]]:
    [alice] = await users(client, "alice")
    room = await create_room(client, alice, preset="private_chat")
    ids = [await text(client, alice, room, f"m{i}") for i in range(n)]
    return alice, room, ids


async def test_paginate_backward_through_everything(client: TestClient) -> None:
    alice, room, _ = await _room_with_messages(client, 25)
    first = await _messages(client, alice, room, dir="b", limit=10)
    assert bodies(first["chunk"]) == [f"m{i}" for i in range(24, 14, -1)]
    assert "end" in first and "state" not in first

    events, pages = await _all_pages(client, alice, room, dir="b", limit=10, filter=MESSAGES_ONLY)
    assert bodies(events) == [f"m{i}" for i in range(24, -1, -1)]
    assert pages >= 3
    everything, _ = await _all_pages(client, alice, room, dir="b", limit=7)
    assert everything[-1]["type"] == "m.room.create"
    assert len({e["event_id"] for e in everything}) == len(everything)


async def test_paginate_forward_from_the_start(client: TestClient) -> None:
    alice, room, _ = await _room_with_messages(client, 12)
    first = await _messages(client, alice, room, dir="f", limit=3)
    assert first["chunk"][0]["type"] == "m.room.create"
    events, _ = await _all_pages(client, alice, room, dir="f", limit=4, filter=MESSAGES_ONLY)
    assert bodies(events) == [f"m{i}" for i in range(12)]


async def test_from_and_to_tokens(client: TestClient) -> None:
    alice, room, _ = await _room_with_messages(client, 20)
    page1 = await _messages(client, alice, room, dir="b", limit=5, filter=MESSAGES_ONLY)
    page2 = await _messages(client, alice, room, dir="b", limit=5, filter=MESSAGES_ONLY,
                            **{"from": page1["end"]})
    assert bodies(page2["chunk"]) == ["m14", "m13", "m12", "m11", "m10"]
    assert page2["start"] == page1["end"]
    # The range between two tokens, in both directions.
    between_f = await _messages(client, alice, room, dir="f", filter=MESSAGES_ONLY,
                                **{"from": page2["end"], "to": page1["end"]})
    assert bodies(between_f["chunk"]) == ["m10", "m11", "m12", "m13", "m14"]
    assert "end" not in between_f
    between_b = await _messages(client, alice, room, dir="b", filter=MESSAGES_ONLY, limit=3,
                                **{"from": page1["end"], "to": page2["end"]})
    assert bodies(between_b["chunk"]) == ["m14", "m13", "m12"]
    rest = await _messages(client, alice, room, dir="b", filter=MESSAGES_ONLY,
                           **{"from": between_b["end"], "to": page2["end"]})
    assert bodies(rest["chunk"]) == ["m11", "m10"] and "end" not in rest
    # A /sync-style token (room stream first) is accepted too.
    sync_style = await _messages(client, alice, room, dir="b", limit=2, filter=MESSAGES_ONLY,
                                 **{"from": page1["end"] + "_0_0_0"})
    assert bodies(sync_style["chunk"]) == ["m14", "m13"]


async def test_filters(client: TestClient) -> None:
    alice, bob = await users(client, "alice", "bob")
    room = await create_room(client, alice, preset="public_chat")
    await join(client, bob, room)
    for i in range(6):
        await text(client, alice if i % 2 == 0 else bob, room, f"m{i}",
                   **({"url": "mxc://test.local/x"} if i == 3 else {}))
    by_bob = await _messages(client, alice, room, dir="b", filter={"senders": ["@bob:test.local"], "types": ["m.room.*"]})
    assert [e["sender"] for e in by_bob["chunk"]] == ["@bob:test.local"] * 4  # 3 messages + join
    not_bob = await _messages(client, alice, room, dir="b", filter={**MESSAGES_ONLY, "not_senders": ["@bob:test.local"]})
    assert bodies(not_bob["chunk"]) == ["m4", "m2", "m0"]
    with_url = await _messages(client, alice, room, dir="b", filter={"contains_url": True})
    assert bodies(with_url["chunk"]) == ["m3"]
    no_members = await _messages(client, alice, room, dir="f", filter={"not_types": ["m.room.member", "m.room.message"]})
    assert "m.room.member" not in {e["type"] for e in no_members["chunk"]}
    lazy = await _messages(client, alice, room, dir="b", limit=2,
                           filter={**MESSAGES_ONLY, "lazy_load_members": True})
    assert sorted(e["state_key"] for e in lazy["state"]) == ["@alice:test.local", "@bob:test.local"]
    assert {e["content"]["membership"] for e in lazy["state"]} == {"join"}
    only_bob = await _messages(client, alice, room, dir="b", limit=1,
                               filter={**MESSAGES_ONLY, "lazy_load_members": True})
    assert [e["state_key"] for e in only_bob["state"]] == ["@bob:test.local"]
    # The filter's own limit applies when `limit` is not given.
    assert len((await _messages(client, alice, room, dir="b", filter={"limit": 2}))["chunk"]) == 2


async def test_history_visibility(client: TestClient) -> None:
    alice, bob, carol = await users(client, "alice", "bob", "carol")
    room = await create_room(client, alice, preset="public_chat")
    await set_state(client, alice, room, "m.room.history_visibility", {"history_visibility": "joined"})
    await text(client, alice, room, "before bob")
    await join(client, bob, room)
    await text(client, alice, room, "while bob")
    await ok(await client.post(f"{C}/rooms/{room}/leave", headers=bob, json={}))
    await text(client, alice, room, "after bob")

    seen, _ = await _all_pages(client, bob, room, dir="b", filter=MESSAGES_ONLY)
    assert bodies(seen) == ["while bob"]
    forward, _ = await _all_pages(client, bob, room, dir="f", filter=MESSAGES_ONLY)
    assert bodies(forward) == ["while bob"]
    everything, _ = await _all_pages(client, alice, room, dir="b", filter=MESSAGES_ONLY)
    assert bodies(everything) == ["after bob", "while bob", "before bob"]
    await error(await client.get(f"{C}/rooms/{room}/messages?dir=b", headers=carol), 403, "M_FORBIDDEN")

    await set_state(client, alice, room, "m.room.history_visibility", {"history_visibility": "world_readable"})
    await text(client, alice, room, "public")
    readable = await _messages(client, carol, room, dir="b", limit=1, filter=MESSAGES_ONLY)
    assert bodies(readable["chunk"]) == ["public"]


async def test_context(client: TestClient) -> None:
    alice, room, ids = await _room_with_messages(client, 20)
    ctx = await _context(client, alice, room, ids[10], limit=4, filter=MESSAGES_ONLY)
    assert ctx["event"]["event_id"] == ids[10]
    assert bodies(ctx["events_before"]) == ["m9", "m8"]
    assert bodies(ctx["events_after"]) == ["m11", "m12"]
    assert {e["type"] for e in ctx["state"]} == set()  # the filter applies to state too
    # The tokens continue with /messages on either side.
    older = await _messages(client, alice, room, dir="b", limit=2, filter=MESSAGES_ONLY, **{"from": ctx["start"]})
    assert bodies(older["chunk"]) == ["m7", "m6"]
    newer = await _messages(client, alice, room, dir="f", limit=2, filter=MESSAGES_ONLY, **{"from": ctx["end"]})
    assert bodies(newer["chunk"]) == ["m13", "m14"]

    full = await _context(client, alice, room, ids[0])
    assert len(full["events_before"]) == 5 and len(full["events_after"]) == 5
    assert {"m.room.create", "m.room.member", "m.room.power_levels"} <= {e["type"] for e in full["state"]}
    lazy = await _context(client, alice, room, ids[19], filter={"lazy_load_members": True})
    assert [e["state_key"] for e in lazy["state"] if e["type"] == "m.room.member"] == ["@alice:test.local"]
    zero = await _context(client, alice, room, ids[5], limit=0)
    assert zero["events_before"] == [] and zero["events_after"] == [] and zero["event"]["event_id"] == ids[5]


async def test_context_not_found(client: TestClient) -> None:
    alice, bob, carol = await users(client, "alice", "bob", "carol")
    room = await create_room(client, alice, preset="public_chat")
    await set_state(client, alice, room, "m.room.history_visibility", {"history_visibility": "joined"})
    hidden = await text(client, alice, room, "before bob")
    other = await create_room(client, alice)
    elsewhere = await text(client, alice, other, "other room")
    await join(client, bob, room)
    url = f"{C}/rooms/{room}/context"
    await error(await client.get(f"{url}/{hidden}", headers=bob), 404, "M_NOT_FOUND")
    await error(await client.get(f"{url}/$unknown", headers=bob), 404, "M_NOT_FOUND")
    await error(await client.get(f"{url}/{elsewhere}", headers=alice), 404, "M_NOT_FOUND")
    await error(await client.get(f"{url}/{hidden}", headers=carol), 404, "M_NOT_FOUND")
    assert (await _context(client, alice, room, hidden))["event"]["content"]["body"] == "before bob"


async def test_redacted_events_in_history(client: TestClient) -> None:
    alice, room, ids = await _room_with_messages(client, 3)
    await redact(client, alice, room, ids[1])
    page = await _messages(client, alice, room, dir="b", limit=4)
    assert page["chunk"][0]["type"] == "m.room.redaction"
    redacted = page["chunk"][2]
    assert redacted["event_id"] == ids[1] and redacted["content"] == {}
    assert "redacted_because" in redacted["unsigned"]


async def test_bad_input(client: TestClient) -> None:
    alice, room, ids = await _room_with_messages(client, 2)
    url = f"{C}/rooms/{room}/messages"
    await error(await client.get(url, headers=alice), 400, "M_MISSING_PARAM")
    await error(await client.get(f"{url}?dir=x", headers=alice), 400, "M_INVALID_PARAM")
    for token in ("garbage", "s", "t1", "s-1", "x12"):
        await error(await client.get(f"{url}?dir=b&from={token}", headers=alice), 400, "M_INVALID_PARAM")
        await error(await client.get(f"{url}?dir=b&to={token}", headers=alice), 400, "M_INVALID_PARAM")
    for limit in ("abc", "-1", "1.5"):
        await error(await client.get(f"{url}?dir=b&limit={limit}", headers=alice), 400, "M_INVALID_PARAM")
    await error(await client.get(f"{url}{query(dir='b', filter='{not json')}", headers=alice), 400, "M_NOT_JSON")
    await error(await client.get(f"{url}{query(dir='b', filter='[1]')}", headers=alice), 400, "M_BAD_JSON")
    await error(await client.get(f"{url}{query(dir='b', filter={'limit': 'x'})}", headers=alice), 400, "M_BAD_JSON")
    await error(await client.get(f"{url}{query(dir='b', filter={'senders': 'x'})}", headers=alice), 400, "M_BAD_JSON")
    await error(await client.get(f"{C}/rooms/!nope:test.local/messages?dir=b", headers=alice), 403, "M_FORBIDDEN")
    await error(await client.get(f"{url}?dir=b"), 401, "M_MISSING_TOKEN")
    huge = await _messages(client, alice, room, dir="b", limit=10**9)
    assert len(huge["chunk"]) > 2 and "end" not in huge
    ctx = f"{C}/rooms/{room}/context/{ids[0]}"
    await error(await client.get(f"{ctx}?limit=x", headers=alice), 400, "M_INVALID_PARAM")
    await error(await client.get(f"{ctx}{query(filter='nope')}", headers=alice), 400, "M_NOT_JSON")
