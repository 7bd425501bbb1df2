"""The published room directory and the user directory, on a real in-process server."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.client_api.conftest import bearer, error
from tests.client_api.search_helpers import V3, User, new_user
from tests.spec_schemas import validate_response


async def _public_rooms(user: User, query: str = "") -> dict[str, Any]:
    body = await user.call("GET", f"/publicRooms{query}")
    validate_response("list_public_rooms.yaml", "/publicRooms", "get", body)
    return body  # type: ignore[no-any-return]


async def _query(user: User, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    result = await user.call("POST", "/publicRooms", body, status)
    if status == 200:
        validate_response("list_public_rooms.yaml", "/publicRooms", "post", result)
    return result  # type: ignore[no-any-return]


# -- the published room directory --------------------------------------------------

async def test_published_room_entry_comes_from_current_state(client: TestClient) -> None:
    alice = await new_user(client, "alice", "Alice")
    bob = await new_user(client, "bob")
    room = await alice.create_room(preset="public_chat", visibility="public", name="Cheese",
                                   topic="Tasty cheese", room_alias_name="cheese")
    await bob.join(room)
    await alice.create_room(preset="private_chat", name="Secret")
    body = await _public_rooms(alice)
    assert body["chunk"] == [{
        "room_id": room, "name": "Cheese", "topic": "Tasty cheese",
        "canonical_alias": "#cheese:test.local", "num_joined_members": 2,
        "world_readable": False, "guest_can_join": False, "join_rule": "public",
    }]
    assert body["total_room_count_estimate"] == 1
    assert "next_batch" not in body and "prev_batch" not in body
    # The directory is readable without an access token (the spec lists no security).
    resp = await client.get(f"{V3}/publicRooms")
    assert resp.status == 200 and (await resp.json())["chunk"][0]["room_id"] == room
    # A state change shows at once.
    await alice.call("PUT", f"/rooms/{room}/state/m.room.name/", {"name": "Fromage"})
    assert (await _public_rooms(alice))["chunk"][0]["name"] == "Fromage"


async def test_publish_and_unpublish(client: TestClient) -> None:
    alice = await new_user(client, "alice")
    room = await alice.create_room(preset="public_chat", name="Later")
    assert await alice.call("GET", f"/directory/list/room/{room}") == {"visibility": "private"}
    assert (await _public_rooms(alice))["chunk"] == []
    assert await alice.call("PUT", f"/directory/list/room/{room}", {"visibility": "public"}) == {}
    resp = await client.get(f"{V3}/directory/list/room/{room}")
    assert await resp.json() == {"visibility": "public"}
    validate_response("list_public_rooms.yaml", "/directory/list/room/{roomId}", "get", await resp.json())
    assert [r["room_id"] for r in (await _public_rooms(alice))["chunk"]] == [room]
    # `visibility` defaults to public; private takes it out again.
    await alice.call("PUT", f"/directory/list/room/{room}", {"visibility": "private"})
    assert (await _public_rooms(alice))["chunk"] == []
    await alice.call("PUT", f"/directory/list/room/{room}", {})
    assert len((await _public_rooms(alice))["chunk"]) == 1


async def test_only_members_with_alias_power_may_publish(client: TestClient) -> None:
    alice = await new_user(client, "alice")
    bob = await new_user(client, "bob")
    carol = await new_user(client, "carol")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    path = f"/directory/list/room/{room}"
    resp = await client.put(V3 + path, headers=bob.headers, json={"visibility": "public"})
    await error(resp, 403, "M_FORBIDDEN")
    resp = await client.put(V3 + path, headers=carol.headers, json={"visibility": "public"})
    await error(resp, 403, "M_FORBIDDEN")
    # Given the power to set the canonical alias, bob may.
    levels = await alice.call("GET", f"/rooms/{room}/state/m.room.power_levels/")
    levels["users"] = {**levels.get("users", {}), bob.user_id: 50}
    await alice.call("PUT", f"/rooms/{room}/state/m.room.power_levels/", levels)
    await bob.call("PUT", path, {"visibility": "public"})
    assert await bob.call("GET", path) == {"visibility": "public"}


async def test_invite_only_rooms_are_not_listed_even_if_published(client: TestClient) -> None:
    alice = await new_user(client, "alice")
    room = await alice.create_room(preset="private_chat", visibility="public")
    assert await alice.call("GET", f"/directory/list/room/{room}") == {"visibility": "public"}
    assert (await _public_rooms(alice))["chunk"] == []
    await alice.call("PUT", f"/rooms/{room}/state/m.room.history_visibility/",
                     {"history_visibility": "world_readable"})
    [entry] = (await _public_rooms(alice))["chunk"]
    assert entry["world_readable"] is True and entry["join_rule"] == "invite"


async def test_pagination_both_ways(client: TestClient) -> None:
    users = [await new_user(client, f"u{i}") for i in range(4)]
    rooms = []
    for size in range(1, 6):  # five rooms with 1..4 members (the last two share a size)
        room = await users[0].create_room(preset="public_chat", visibility="public", name=f"r{size}")
        for user in users[1:min(size, 4)]:
            await user.join(room)
        rooms.append(room)
    everything = (await _public_rooms(users[0]))["chunk"]
    sizes = [r["num_joined_members"] for r in everything]
    assert sizes == sorted(sizes, reverse=True) and len(everything) == 5
    page1 = await _public_rooms(users[0], "?limit=2")
    assert page1["chunk"] == everything[:2] and "prev_batch" not in page1
    assert page1["total_room_count_estimate"] == 5
    page2 = await _query(users[0], {"limit": 2, "since": page1["next_batch"]})
    assert page2["chunk"] == everything[2:4]
    page3 = await _public_rooms(users[0], f"?limit=2&since={page2['next_batch']}")
    assert page3["chunk"] == everything[4:] and "next_batch" not in page3
    back = await _public_rooms(users[0], f"?limit=2&since={page3['prev_batch']}")
    assert back["chunk"] == everything[2:4]
    back = await _public_rooms(users[0], f"?limit=2&since={back['prev_batch']}")
    assert back["chunk"] == everything[:2] and "prev_batch" not in back


async def test_filters(client: TestClient) -> None:
    alice = await new_user(client, "alice")
    chat = await alice.create_room(preset="public_chat", visibility="public", name="Hiking club",
                                   topic="Mountains")
    space = await alice.create_room(preset="public_chat", visibility="public", name="Outdoors",
                                    creation_content={"type": "m.space"})

    async def ids(body: dict[str, Any]) -> set[str]:
        return {r["room_id"] for r in (await _query(alice, body))["chunk"]}

    assert await ids({"filter": {"generic_search_term": "hiking"}}) == {chat}
    assert await ids({"filter": {"generic_search_term": "MOUNTAIN"}}) == {chat}
    assert await ids({"filter": {"generic_search_term": "nothing"}}) == set()
    assert await ids({"filter": {"room_types": ["m.space"]}}) == {space}
    assert await ids({"filter": {"room_types": [None]}}) == {chat}
    assert await ids({"filter": {"room_types": [None, "m.space"]}}) == {chat, space}
    body = await _query(alice, {"filter": {"room_types": ["m.space"]}})
    assert body["chunk"][0]["room_type"] == "m.space"


async def test_directory_bad_input(client: TestClient) -> None:
    alice = await new_user(client, "alice")
    room = await alice.create_room(preset="public_chat")
    h = alice.headers
    for query in ("limit=abc", "limit=-1", "limit=0", "since=garbage", "since=nAAAA"):
        await error(await client.get(f"{V3}/publicRooms?{query}"), 400, "M_INVALID_PARAM")
    await error(await client.get(f"{V3}/publicRooms?server=other.example"), 404, "M_NOT_FOUND")
    await error(await client.get(f"{V3}/publicRooms?server=bad%20name"), 400, "M_INVALID_PARAM")
    assert (await client.get(f"{V3}/publicRooms?server=test.local")).status == 200
    await error(await client.post(f"{V3}/publicRooms", headers=h, data=b"{nope"), 400, "M_NOT_JSON")
    await error(await client.post(f"{V3}/publicRooms", headers=h, json={"limit": "1"}), 400, "M_BAD_JSON")
    await error(await client.post(f"{V3}/publicRooms", headers=h, json={"limit": 0}), 400, "M_INVALID_PARAM")
    await error(await client.post(f"{V3}/publicRooms", headers=h, json={"filter": []}), 400, "M_BAD_JSON")
    await error(await client.post(f"{V3}/publicRooms", headers=h,
                                  json={"filter": {"room_types": [1]}}), 400, "M_BAD_JSON")
    await error(await client.post(f"{V3}/publicRooms", json={}), 401, "M_MISSING_TOKEN")
    path = f"{V3}/directory/list/room/{room}"
    await error(await client.put(path, headers=h, json={"visibility": "hidden"}), 400, "M_INVALID_PARAM")
    await error(await client.put(path, headers=h, json={"visibility": 1}), 400, "M_BAD_JSON")
    await error(await client.put(path, json={}), 401, "M_MISSING_TOKEN")
    await error(await client.get(f"{V3}/directory/list/room/!unknown:test.local"), 404, "M_NOT_FOUND")
    await error(await client.put(f"{V3}/directory/list/room/!unknown:test.local", headers=h, json={}),
                404, "M_NOT_FOUND")
    await error(await client.get(f"{V3}/directory/list/room/not-a-room"), 400, "M_INVALID_PARAM")


# -- the user directory ------------------------------------------------------------

async def _search_users(user: User, term: str, limit: int | None = None) -> dict[str, Any]:
    body: dict[str, object] = {"search_term": term}
    if limit is not None:
        body["limit"] = limit
    result = await user.call("POST", "/user_directory/search", body)
    validate_response("users.yaml", "/user_directory/search", "post", result)
    return result  # type: ignore[no-any-return]


async def _found(user: User, term: str) -> list[str]:
    return [r["user_id"] for r in (await _search_users(user, term))["results"]]


async def test_user_directory_visibility(client: TestClient) -> None:
    alice = await new_user(client, "alice", "Alice Liddell")
    bob = await new_user(client, "bob", "Bob Builder")
    carol = await new_user(client, "carol", "Carol Singer")
    dave = await new_user(client, "dave")
    private = await alice.create_room(preset="private_chat", invite=[bob.user_id])
    await bob.join(private)
    await carol.create_room(preset="public_chat")
    # Shared room: alice finds bob; dave shares nothing with bob (a private room).
    assert await _found(alice, "bob") == [bob.user_id]
    assert await _found(dave, "bob") == []
    # Members of public rooms are findable by anyone.
    assert await _found(dave, "carol") == [carol.user_id]
    # Someone in no room at all is found by nobody.
    assert await _found(alice, "dave") == []
    # Leaving the shared room hides bob again.
    await bob.call("POST", f"/rooms/{private}/leave", {})
    assert await _found(alice, "bob") == []


async def test_user_directory_matching_and_ranking(client: TestClient) -> None:
    alice = await new_user(client, "alice", "Alice Smith")
    smithy = await new_user(client, "forge", "Blacksmith")
    jo = await new_user(client, "jo.smith")
    sam = await new_user(client, "sam", "Sam Smithers")
    room = await alice.create_room(preset="public_chat")
    for user in (smithy, jo, sam):
        await user.join(room)
    # Prefix of a word, case-insensitive; "Blacksmith" has no word starting with "smith".
    found = await _found(alice, "SMITH")
    assert set(found) == {alice.user_id, jo.user_id, sam.user_id}
    assert await _found(alice, "ali smi") == [alice.user_id]
    assert await _found(alice, "@jo.smith:test.local") == [jo.user_id]
    assert await _found(alice, "blacksm") == [smithy.user_id]
    # An exact display name match ranks first.
    assert (await _found(alice, "sam smithers"))[0] == sam.user_id
    results = (await _search_users(alice, "smith"))["results"]
    by_id = {r["user_id"]: r for r in results}
    assert by_id[alice.user_id]["display_name"] == "Alice Smith"
    assert by_id[jo.user_id]["display_name"] == "jo.smith"  # registration sets the localpart
    # `limited` says the list was cut.
    limited = await _search_users(alice, "smith", limit=2)
    assert len(limited["results"]) == 2 and limited["limited"] is True
    assert (await _search_users(alice, "smith", limit=3))["limited"] is False
    assert (await _search_users(alice, "  ..  "))["results"] == []


async def test_user_directory_bad_input(client: TestClient) -> None:
    alice = await new_user(client, "alice")
    path, h = f"{V3}/user_directory/search", alice.headers
    await error(await client.post(path, headers=h, data=b"not json"), 400, "M_NOT_JSON")
    await error(await client.post(path, headers=h, json={}), 400, "M_MISSING_PARAM")
    await error(await client.post(path, headers=h, json={"search_term": 5}), 400, "M_BAD_JSON")
    await error(await client.post(path, headers=h, json={"search_term": "a", "limit": "x"}), 400, "M_BAD_JSON")
    await error(await client.post(path, headers=h, json={"search_term": "a", "limit": 0}), 400, "M_INVALID_PARAM")
    await error(await client.post(path, json={"search_term": "a"}), 401, "M_MISSING_TOKEN")
    await error(await client.post(path, headers=bearer("nope"), json={"search_term": "a"}), 401,
                "M_UNKNOWN_TOKEN")
