"""POST /search (room_events) on a real in-process server."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from homeserver.storage.search import SearchStore
from tests.client_api.conftest import Connect, MakeHs, error
from tests.client_api.search_helpers import V3, User, new_user
from tests.spec_schemas import validate_response


async def _search(user: User, criteria: dict[str, Any], next_batch: str | None = None) -> dict[str, Any]:
    path = "/search" + (f"?next_batch={next_batch}" if next_batch else "")
    body = await user.call("POST", path, {"search_categories": {"room_events": criteria}})
    validate_response("search.yaml", "/search", "post", body)
    return body["search_categories"]["room_events"]  # type: ignore[no-any-return]


def _ids(results: dict[str, Any]) -> list[str]:
    return [r["result"]["event_id"] for r in results["results"]]


async def test_finds_messages_in_joined_rooms_only(client: TestClient) -> None:
    alice = await new_user(client, "alice")
    bob = await new_user(client, "bob")
    room = await alice.create_room(preset="public_chat", name="Moonbase Alpha")
    other = await bob.create_room(preset="public_chat")
    hit = await alice.send(room, "The Martians have landed")
    await alice.send(room, "Nothing to see here")
    await bob.send(other, "martians in bob's room")
    results = await _search(alice, {"search_term": "martian"})
    assert _ids(results) == [hit]
    assert results["count"] == 1
    assert results["results"][0]["result"]["content"]["body"] == "The Martians have landed"
    assert results["results"][0]["rank"] > 0
    assert "martians" in results["highlights"] and "martian" in results["highlights"]
    assert "next_batch" not in results
    # Room names are indexed too, and `keys` picks what is searched.
    named = await _search(alice, {"search_term": "moonbase"})
    assert [r["result"]["type"] for r in named["results"]] == ["m.room.name"]
    assert _ids(await _search(alice, {"search_term": "moonbase", "keys": ["content.body"]})) == []
    # Once bob joins, he finds alice's message (shared history), but not after leaving.
    await bob.join(room)
    assert set(_ids(await _search(bob, {"search_term": "martians", "keys": ["content.body"]}))) == \
        {hit, *_ids(await _search(bob, {"search_term": "bob"}))}
    await bob.call("POST", f"/rooms/{room}/leave", {})
    assert _ids(await _search(bob, {"search_term": "landed"})) == []


async def test_history_visibility_applies(client: TestClient) -> None:
    alice = await new_user(client, "alice")
    bob = await new_user(client, "bob")
    room = await alice.create_room(preset="public_chat")
    await alice.call("PUT", f"/rooms/{room}/state/m.room.history_visibility/",
                     {"history_visibility": "joined"})
    await alice.send(room, "secret plans before bob")
    await bob.join(room)
    after = await alice.send(room, "secret plans after bob")
    assert _ids(await _search(bob, {"search_term": "secret"})) == [after]
    assert len(_ids(await _search(alice, {"search_term": "secret"}))) == 2


async def test_order_by_rank_and_recent_with_pagination(client: TestClient) -> None:
    alice = await new_user(client, "alice")
    room = await alice.create_room(preset="private_chat")
    weak = await alice.send(room, "a long message that mentions apple once among many other words here")
    strong = await alice.send(room, "apple apple apple")
    others = [await alice.send(room, f"apple number {i} with padding words") for i in range(5)]
    newest_first = list(reversed([weak, strong, *others]))
    recent = await _search(alice, {"search_term": "apple", "order_by": "recent"})
    assert _ids(recent) == newest_first and recent["count"] == 7
    ranked = await _search(alice, {"search_term": "apple"})
    assert _ids(ranked)[0] == strong
    ranks = [r["rank"] for r in ranked["results"]]
    assert ranks == sorted(ranks, reverse=True)
    for order, expected in (("recent", newest_first), ("rank", _ids(ranked))):
        seen: list[str] = []
        token = None
        pages = 0
        while True:
            page = await _search(alice, {"search_term": "apple", "order_by": order,
                                         "filter": {"limit": 3}}, token)
            seen += _ids(page)
            pages += 1
            token = page.get("next_batch")
            if token is None:
                break
        assert seen == expected and pages == 3


async def test_redacted_messages_are_not_found(client: TestClient) -> None:
    alice = await new_user(client, "alice")
    room = await alice.create_room(preset="private_chat")
    gone = await alice.send(room, "delete this embarrassing typo")
    kept = await alice.send(room, "a typo that stays")
    assert set(_ids(await _search(alice, {"search_term": "typo"}))) == {gone, kept}
    await alice.redact(room, gone)
    assert _ids(await _search(alice, {"search_term": "typo"})) == [kept]
    assert _ids(await _search(alice, {"search_term": "embarrassing"})) == []


async def test_filter_context_groups_and_state(client: TestClient) -> None:
    alice = await new_user(client, "alice", "Alice")
    bob = await new_user(client, "bob", "Bob")
    room = await alice.create_room(preset="public_chat", name="Kitchen")
    other = await alice.create_room(preset="public_chat")
    await bob.join(room)
    before = await alice.send(room, "first")
    hit = await bob.send(room, "pizza tonight?")
    after = await alice.send(room, "yes")
    other_hit = await alice.send(other, "pizza elsewhere")
    assert set(_ids(await _search(alice, {"search_term": "pizza"}))) == {hit, other_hit}
    only_room = await _search(alice, {"search_term": "pizza", "filter": {"rooms": [room]}})
    assert _ids(only_room) == [hit]
    not_bob = await _search(alice, {"search_term": "pizza", "filter": {"not_senders": [bob.user_id]}})
    assert _ids(not_bob) == [other_hit]
    results = await _search(alice, {
        "search_term": "pizza", "filter": {"rooms": [room]}, "include_state": True,
        "event_context": {"before_limit": 1, "after_limit": 1, "include_profile": True},
        "groupings": {"group_by": [{"key": "room_id"}, {"key": "sender"}]}})
    context = results["results"][0]["context"]
    assert [e["event_id"] for e in context["events_before"]] == [before]
    assert [e["event_id"] for e in context["events_after"]] == [after]
    assert context["profile_info"][bob.user_id] == {"displayname": "Bob"}
    assert context["start"] and context["end"]
    assert results["groups"]["room_id"][room]["results"] == [hit]
    assert results["groups"]["sender"][bob.user_id]["results"] == [hit]
    state_types = {e["type"] for e in results["state"][room]}
    assert {"m.room.create", "m.room.name", "m.room.member"} <= state_types


async def test_index_catches_up_after_a_crash(make_hs: MakeHs, connect: Connect) -> None:
    first = make_hs()
    client = await connect(first)
    alice = await new_user(client, "alice")
    room = await alice.create_room(preset="private_chat")
    indexed = await alice.send(room, "indexed normally")
    # Simulate events left unindexed (indexing failed, or a crash of a version that
    # indexed after commit): neither the in-transaction writer (nor the entries riding
    # the timeline statement) nor the hook runs.
    first.rooms.persister.on_event_persisted.remove(first.search_indexer.on_event_persisted)
    first.rooms.persister.batch_writers.remove(first.search_indexer.index_in_transaction)
    first.rooms.persister.timeline_search = None
    missed = [await alice.send(room, f"lost in the crash {i}") for i in range(3)]
    assert not await SearchStore().is_indexed(first.db, missed[0])
    assert _ids(await _search(alice, {"search_term": "crash"})) == []
    await client.close()
    await first.close()

    second = make_hs()
    client = await connect(second)
    alice.client = client
    for event_id in missed:
        assert await SearchStore().is_indexed(second.db, event_id)
    assert set(_ids(await _search(alice, {"search_term": "crash"}))) == set(missed)
    assert _ids(await _search(alice, {"search_term": "normally"})) == [indexed]
    # And indexing goes on as usual afterwards.
    later = await alice.send(room, "after the restart")
    assert _ids(await _search(alice, {"search_term": "restart"})) == [later]


async def test_search_bad_input(client: TestClient) -> None:
    alice = await new_user(client, "alice")
    room = await alice.create_room(preset="private_chat")
    await alice.send(room, "hello")
    path, h = f"{V3}/search", alice.headers

    async def bad(body: Any, status: int, errcode: str, query: str = "") -> None:
        await error(await client.post(path + query, headers=h, json=body), status, errcode)

    def events(**criteria: Any) -> dict[str, Any]:
        return {"search_categories": {"room_events": {"search_term": "hello", **criteria}}}

    await error(await client.post(path, headers=h, data=b"{"), 400, "M_NOT_JSON")
    await bad({}, 400, "M_MISSING_PARAM")
    await bad({"search_categories": []}, 400, "M_BAD_JSON")
    await bad({"search_categories": {"rooms": {}}}, 400, "M_BAD_JSON")
    await bad({"search_categories": {"room_events": {}}}, 400, "M_MISSING_PARAM")
    await bad({"search_categories": {"room_events": "x"}}, 400, "M_BAD_JSON")
    await bad(events(order_by="oldest"), 400, "M_BAD_JSON")
    await bad(events(keys=["content.url"]), 400, "M_BAD_JSON")
    await bad(events(keys=[]), 400, "M_BAD_JSON")
    await bad(events(filter={"limit": "ten"}), 400, "M_BAD_JSON")
    await bad(events(filter={"limit": 0}), 400, "M_INVALID_PARAM")
    await bad(events(filter={"rooms": "!r:x"}), 400, "M_BAD_JSON")
    await bad(events(event_context={"before_limit": -1}), 400, "M_INVALID_PARAM")
    await bad(events(event_context=[]), 400, "M_BAD_JSON")
    await bad(events(groupings={"group_by": [{"key": "type"}]}), 400, "M_BAD_JSON")
    await bad(events(), 400, "M_INVALID_PARAM", "?next_batch=garbage")
    await bad(events(order_by="recent"), 400, "M_INVALID_PARAM", "?next_batch=k10")
    await bad(events(), 400, "M_INVALID_PARAM", "?next_batch=k99999999999999999999")
    await error(await client.post(path, json=events()), 401, "M_MISSING_TOKEN")
    # Odd but valid terms: query syntax characters are not syntax, and a term with no
    # words finds nothing rather than failing.
    for term in ('"', "a & b | !c", "*", "()", "hello:*", "-", "  "):
        body = await alice.call("POST", "/search", {"search_categories": {"room_events": {"search_term": term}}})
        validate_response("search.yaml", "/search", "post", body)
