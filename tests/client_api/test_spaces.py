"""Spaces: createRoom with a space type, m.space.child/parent state, GET /hierarchy."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from homeserver.clock import FakeClock
from tests.client_api.conftest import bearer, error, register
from tests.spec_schemas import validate_response

C = "/_matrix/client/v3"
V1 = "/_matrix/client/v1"
SERVER = "test.local"


async def _ok(resp: Any) -> Any:
    body = await resp.json()
    assert resp.status == 200, body
    return body


async def _room(client: TestClient, headers: dict[str, str], name: str, *, space: bool = False,
                preset: str = "public_chat", initial_state: list[Any] | None = None) -> str:
    body: dict[str, Any] = {"preset": preset, "name": name, "initial_state": initial_state or []}
    if space:
        body["creation_content"] = {"type": "m.space"}
    return (await _ok(await client.post(f"{C}/createRoom", headers=headers, json=body)))["room_id"]  # type: ignore[no-any-return]


async def _link(client: TestClient, headers: dict[str, str], space: str, child: str,
                clock: FakeClock | None = None, **content: Any) -> str:
    if clock is not None:
        clock.advance(1000)  # links without an order are shown oldest first
    content.setdefault("via", [SERVER])
    sent = await _ok(await client.put(f"{C}/rooms/{space}/state/m.space.child/{child}",
                                      headers=headers, json=content))
    return sent["event_id"]  # type: ignore[no-any-return]


async def _hierarchy(client: TestClient, headers: dict[str, str], room: str, query: str = "") -> Any:
    body = await _ok(await client.get(f"{V1}/rooms/{room}/hierarchy{query}", headers=headers))
    validate_response("space_hierarchy.yaml", "/rooms/{roomId}/hierarchy", "get", body)
    return body


def _names(body: Any) -> list[str]:
    return [r.get("name") for r in body["rooms"]]


async def _tree(client: TestClient, alice: dict[str, str], clock: FakeClock) -> dict[str, str]:
    """space S: T (order "a", suggested), A (order "b"), B (invite-only), W (invite-only but
    world-readable), an unknown room and an invalid link; sub-space T: C (suggested),
    D (invite-only), and S again (a cycle)."""
    rooms = {"S": await _room(client, alice, "S", space=True),
             "T": await _room(client, alice, "T", space=True),
             "A": await _room(client, alice, "A"),
             "B": await _room(client, alice, "B", preset="private_chat"),
             "W": await _room(client, alice, "W", preset="private_chat", initial_state=[
                 {"type": "m.room.history_visibility",
                  "content": {"history_visibility": "world_readable"}}]),
             "C": await _room(client, alice, "C"),
             "D": await _room(client, alice, "D", preset="private_chat")}
    s, t = rooms["S"], rooms["T"]
    await _link(client, alice, s, rooms["A"], clock, order="b")
    await _link(client, alice, s, rooms["T"], clock, order="a", suggested=True)
    await _link(client, alice, s, rooms["B"], clock)
    await _link(client, alice, s, rooms["W"], clock)
    await _link(client, alice, s, f"!unknown:{SERVER}", clock)
    await _link(client, alice, s, rooms["D"], clock, via=[])  # no via: not part of the space
    await _link(client, alice, t, rooms["C"], clock, suggested=True)
    await _link(client, alice, t, rooms["D"], clock)
    await _link(client, alice, t, s, clock)
    return rooms


async def test_create_space_and_links(client: TestClient) -> None:
    alice = bearer((await register(client, "alice"))["access_token"])
    space = await _room(client, alice, "Space", space=True)
    child = await _room(client, alice, "Child")
    create = await _ok(await client.get(f"{C}/rooms/{space}/state/m.room.create", headers=alice))
    assert create["type"] == "m.space"
    await _link(client, alice, space, child, order="x", suggested=True)
    await _ok(await client.put(f"{C}/rooms/{child}/state/m.space.parent/{space}", headers=alice,
                               json={"via": [SERVER], "canonical": True}))
    parent = await _ok(await client.get(f"{C}/rooms/{child}/state/m.space.parent/{space}", headers=alice))
    assert parent == {"via": [SERVER], "canonical": True}

    body = await _hierarchy(client, alice, space)
    assert [r["room_id"] for r in body["rooms"]] == [space, child]
    root = body["rooms"][0]
    assert root["room_type"] == "m.space" and root["num_joined_members"] == 1
    assert root["join_rule"] == "public" and root["world_readable"] is False
    [link] = root["children_state"]
    assert link["type"] == "m.space.child" and link["state_key"] == child
    assert link["content"] == {"via": [SERVER], "order": "x", "suggested": True}
    assert link["sender"] == "@alice:test.local" and isinstance(link["origin_server_ts"], int)
    assert body["rooms"][1]["children_state"] == [] and "room_type" not in body["rooms"][1]
    assert "next_batch" not in body


async def test_hierarchy_visibility_order_and_depth(client: TestClient, clock: FakeClock) -> None:
    alice = bearer((await register(client, "alice"))["access_token"])
    bob = bearer((await register(client, "bob"))["access_token"])
    r = await _tree(client, alice, clock)
    # Depth first, children by order then age; the cycle back to S ends the walk.
    assert _names(await _hierarchy(client, alice, r["S"])) == ["S", "T", "C", "D", "A", "B", "W"]
    # Bob is in none of these rooms: he sees the public and the world-readable ones only.
    assert _names(await _hierarchy(client, bob, r["S"])) == ["S", "T", "C", "A", "W"]
    assert _names(await _hierarchy(client, bob, r["S"], "?suggested_only=true")) == ["S", "T", "C"]
    assert _names(await _hierarchy(client, bob, r["S"], "?max_depth=1")) == ["S", "T", "A", "W"]
    only_root = await _hierarchy(client, bob, r["S"], "?max_depth=0")
    assert _names(only_root) == ["S"]
    # The root still lists its links, and only valid ones (the via-less D is left out).
    assert [c["state_key"] for c in only_root["rooms"][0]["children_state"]] == [
        r["T"], r["A"], r["B"], r["W"], f"!unknown:{SERVER}"]
    suggested = await _hierarchy(client, bob, r["S"], "?suggested_only=true&max_depth=0")
    assert [c["state_key"] for c in suggested["rooms"][0]["children_state"]] == [r["T"]]

    # An invited user may see the invite-only room.
    await _ok(await client.post(f"{C}/rooms/{r['B']}/invite", headers=alice,
                                json={"user_id": "@bob:test.local"}))
    assert "B" in _names(await _hierarchy(client, bob, r["S"]))
    # A redacted link no longer links.
    link = await _ok(await client.get(f"{C}/rooms/{r['S']}/state/m.space.child/{r['W']}?format=event",
                                      headers=alice))
    await _ok(await client.put(f"{C}/rooms/{r['S']}/redact/{link['event_id']}/r1", headers=alice, json={}))
    assert "W" not in _names(await _hierarchy(client, bob, r["S"]))


async def test_hierarchy_pagination(client: TestClient, clock: FakeClock) -> None:
    alice = bearer((await register(client, "alice"))["access_token"])
    bob = bearer((await register(client, "bob"))["access_token"])
    r = await _tree(client, alice, clock)
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        query = "?limit=2" + (f"&from={token}" if token else "")
        body = await _hierarchy(client, bob, r["S"], query)
        assert len(body["rooms"]) <= 2
        seen += _names(body)
        pages += 1
        token = body.get("next_batch")
        if token is None:
            break
    assert seen == ["S", "T", "C", "A", "W"] and pages == 3

    first = await _hierarchy(client, bob, r["S"], "?limit=1&max_depth=3")
    token = first["next_batch"]
    for changed in (f"?from={token}&max_depth=2", f"?from={token}&suggested_only=true",
                    f"?from={token}"):
        await error(await client.get(f"{V1}/rooms/{r['S']}/hierarchy{changed}", headers=bob),
                    400, "M_INVALID_PARAM")
    # A token is for the walk it came from, not another room's.
    await error(await client.get(f"{V1}/rooms/{r['T']}/hierarchy?from={token}&max_depth=3",
                                 headers=bob), 400, "M_INVALID_PARAM")
    assert _names(await _hierarchy(client, bob, r["S"], f"?from={token}&max_depth=3&limit=1")) == ["T"]


async def test_hierarchy_bad_requests(client: TestClient, clock: FakeClock) -> None:
    alice = bearer((await register(client, "alice"))["access_token"])
    bob = bearer((await register(client, "bob"))["access_token"])
    r = await _tree(client, alice, clock)
    url = f"{V1}/rooms/{r['S']}/hierarchy"
    # Rooms bob may not see, unknown rooms and bad IDs are all refused alike.
    for room in (r["B"], r["D"], f"!nope:{SERVER}"):
        await error(await client.get(f"{V1}/rooms/{room}/hierarchy", headers=bob), 403, "M_FORBIDDEN")
    await error(await client.get(f"{V1}/rooms/not-a-room/hierarchy", headers=bob), 400, "M_INVALID_PARAM")
    for query in ("limit=0", "limit=x", "max_depth=-1", "max_depth=1.5", "suggested_only=maybe",
                  "from=%%%", "from=bm90IGpzb24", "from=WzEsMiwzXQ"):
        await error(await client.get(f"{url}?{query}", headers=bob), 400, "M_INVALID_PARAM")
    await error(await client.get(url), 401, "M_MISSING_TOKEN")
    # Huge values are capped, not errors.
    assert _names(await _hierarchy(client, bob, r["S"], "?limit=100000&max_depth=100000"))[0] == "S"
