"""Relations, bundled aggregations and threads on a real in-process server."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from homeserver.clock import FakeClock
from tests.client_api.conftest import error
from tests.client_api.history_helpers import (
    V1,
    C,
    bodies,
    create_room,
    join,
    ok,
    query,
    redact,
    send,
    text,
    users,
)
from tests.spec_schemas import validate_response


def _edit(original: str, body: str) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": f"* {body}",
            "m.new_content": {"msgtype": "m.text", "body": body},
            "m.relates_to": {"rel_type": "m.replace", "event_id": original}}


def _in_thread(root: str, body: str) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": body,
            "m.relates_to": {"rel_type": "m.thread", "event_id": root, "is_falling_back": True,
                             "m.in_reply_to": {"event_id": root}}}


def _reaction(target: str, key: str) -> dict[str, Any]:
    return {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}}


async def _event(client: TestClient, headers: dict[str, str], room: str, event_id: str) -> Any:
    return await ok(await client.get(f"{C}/rooms/{room}/event/{event_id}", headers=headers))


async def _relations(client: TestClient, headers: dict[str, str], room: str, event_id: str,
                     *path: str, **params: Any) -> Any:
    suffix = "".join(f"/{p}" for p in path)
    resp = await client.get(f"{V1}/rooms/{room}/relations/{event_id}{suffix}{query(**params)}",
                            headers=headers)
    body = await ok(resp)
    spec_path = ["/rooms/{roomId}/relations/{eventId}", "/rooms/{roomId}/relations/{eventId}/{relType}",
                 "/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}"][len(path)]
    validate_response("relations.yaml", spec_path, "get", body)
    return body


async def _threads(client: TestClient, headers: dict[str, str], room: str, **params: Any) -> Any:
    body = await ok(await client.get(f"{V1}/rooms/{room}/threads{query(**params)}", headers=headers))
    validate_response("threads_list.yaml", "/rooms/{roomId}/threads", "get", body)
    return body


async def _room(client: TestClient, *names: str) -> tuple[list[dict[str, str]], str]:
    people = await users(client, *names)
    room = await create_room(client, people[0], preset="public_chat")
    for person in people[1:]:
        await join(client, person, room)
    return people, room


async def test_edits_are_bundled_from_the_original_sender_only(client: TestClient, clock: FakeClock) -> None:
    (alice, bob), room = await _room(client, "alice", "bob")
    original = await text(client, alice, room, "helo")
    first = await send(client, alice, room, _edit(original, "hello"))
    clock.advance(1000)
    latest = await send(client, alice, room, _edit(original, "hello!"))
    clock.advance(1000)
    await send(client, bob, room, _edit(original, "hijacked"))
    await send(client, alice, room, {"m.new_content": {}, "m.relates_to": {"rel_type": "m.replace", "event_id": original}},
               event_type="org.example.other_type")

    event = await _event(client, bob, room, original)
    assert event["content"]["body"] == "helo"  # the original content stays (spec v1.7)
    replace = event["unsigned"]["m.relations"]["m.replace"]
    assert replace["event_id"] == latest and replace["content"]["m.new_content"]["body"] == "hello!"
    page = await ok(await client.get(f"{C}/rooms/{room}/messages{query(dir='b', limit=10)}", headers=bob))
    in_page = next(e for e in page["chunk"] if e["event_id"] == original)
    assert in_page["unsigned"]["m.relations"]["m.replace"]["event_id"] == latest
    ctx = await ok(await client.get(f"{C}/rooms/{room}/context/{original}", headers=bob))
    assert ctx["event"]["unsigned"]["m.relations"]["m.replace"]["event_id"] == latest
    # Edits carry no bundles of their own.
    assert "m.relations" not in (await _event(client, bob, room, latest))["unsigned"]

    await redact(client, alice, room, latest)
    event = await _event(client, bob, room, original)
    assert event["unsigned"]["m.relations"]["m.replace"]["event_id"] == first
    await redact(client, alice, room, original)
    assert "m.relations" not in (await _event(client, bob, room, original))["unsigned"]
    edits = await _relations(client, bob, room, original, "m.replace")
    assert [e["event_id"] for e in edits["chunk"]][-1] == first


async def test_threads_summaries_and_participation(client: TestClient) -> None:
    (alice, bob, carol), room = await _room(client, "alice", "bob", "carol")
    root = await text(client, alice, room, "root")
    await send(client, bob, room, _in_thread(root, "r1"))
    last = await send(client, bob, room, _in_thread(root, "r2"))
    other_root = await text(client, carol, room, "other root")
    await send(client, carol, room, _in_thread(other_root, "o1"))

    for who, participated in ((alice, True), (bob, True), (carol, False)):
        thread = (await _event(client, who, room, root))["unsigned"]["m.relations"]["m.thread"]
        assert thread["count"] == 2 and thread["latest_event"]["event_id"] == last
        assert thread["current_user_participated"] is participated

    listed = await _threads(client, alice, room)
    assert [e["event_id"] for e in listed["chunk"]] == [other_root, root] and "next_batch" not in listed
    await send(client, alice, room, _in_thread(root, "r3"))
    listed = await _threads(client, alice, room, limit=1)
    assert [e["event_id"] for e in listed["chunk"]] == [root]
    assert listed["chunk"][0]["unsigned"]["m.relations"]["m.thread"]["count"] == 3
    rest = await _threads(client, alice, room, limit=1, **{"from": listed["next_batch"]})
    assert [e["event_id"] for e in rest["chunk"]] == [other_root]
    assert (await _threads(client, alice, room, **{"from": rest["next_batch"]}))["chunk"] == []

    mine = await _threads(client, bob, room, include="participated")
    assert [e["event_id"] for e in mine["chunk"]] == [root]
    theirs = await _threads(client, carol, room, include="participated")
    assert [e["event_id"] for e in theirs["chunk"]] == [other_root]

    # The thread's latest reply carries its own edit, and an edit is no reply.
    r3 = listed["chunk"][0]["unsigned"]["m.relations"]["m.thread"]["latest_event"]["event_id"]
    edit = await send(client, alice, room, _edit(r3, "r3 edited"))
    thread = (await _event(client, carol, room, root))["unsigned"]["m.relations"]["m.thread"]
    assert thread["count"] == 3
    assert thread["latest_event"]["unsigned"]["m.relations"]["m.replace"]["event_id"] == edit
    replies = await _relations(client, carol, room, root, "m.thread")
    assert bodies(replies["chunk"]) == ["r3", "r2", "r1"]


async def test_reactions_and_references(client: TestClient) -> None:
    (alice, bob), room = await _room(client, "alice", "bob")
    target = await text(client, alice, room, "react to me")
    thumbs = await send(client, alice, room, _reaction(target, "👍"), "m.reaction")
    await send(client, bob, room, _reaction(target, "👍"), "m.reaction")
    await send(client, bob, room, _reaction(target, "🎉"), "m.reaction")
    ref = await send(client, bob, room, {"msgtype": "m.text", "body": "see",
                                         "m.relates_to": {"rel_type": "m.reference", "event_id": target}})

    reactions = await _relations(client, bob, room, target, "m.annotation")
    assert [e["content"]["m.relates_to"]["key"] for e in reactions["chunk"]] == ["🎉", "👍", "👍"]
    assert len((await _relations(client, bob, room, target, "m.annotation", "m.reaction"))["chunk"]) == 3
    assert (await _relations(client, bob, room, target, "m.annotation", "m.room.message"))["chunk"] == []
    assert len((await _relations(client, bob, room, target))["chunk"]) == 4

    relations = (await _event(client, bob, room, target))["unsigned"]["m.relations"]
    assert "m.annotation" not in relations  # not bundled since spec v1.7
    assert relations["m.reference"] == {"chunk": [{"event_id": ref}]}

    await redact(client, alice, room, thumbs)
    reactions = await _relations(client, bob, room, target, "m.annotation", "m.reaction")
    assert thumbs not in [e["event_id"] for e in reactions["chunk"]] and len(reactions["chunk"]) == 2


async def test_relations_pagination_and_recursion(client: TestClient) -> None:
    (alice,), room = await _room(client, "alice")
    root = await text(client, alice, room, "root")
    refs = [await send(client, alice, room, {"body": f"ref{i}", "msgtype": "m.text",
                                             "m.relates_to": {"rel_type": "m.reference", "event_id": root}})
            for i in range(7)]
    page1 = await _relations(client, alice, room, root, "m.reference", limit=3)
    assert [e["event_id"] for e in page1["chunk"]] == refs[6:3:-1] and "prev_batch" not in page1
    page2 = await _relations(client, alice, room, root, "m.reference", limit=3, **{"from": page1["next_batch"]})
    assert [e["event_id"] for e in page2["chunk"]] == refs[3:0:-1]
    assert page2["prev_batch"] == page1["next_batch"]
    page3 = await _relations(client, alice, room, root, "m.reference", limit=3, **{"from": page2["next_batch"]})
    assert [e["event_id"] for e in page3["chunk"]] == refs[:1] and "next_batch" not in page3
    # `to` stops early; forward walks the other way.
    bounded = await _relations(client, alice, room, root, **{"from": page1["next_batch"], "to": page2["next_batch"]})
    assert [e["event_id"] for e in bounded["chunk"]] == refs[3:0:-1]
    forward = await _relations(client, alice, room, root, dir="f", limit=4)
    assert [e["event_id"] for e in forward["chunk"]] == refs[:4]
    forward2 = await _relations(client, alice, room, root, dir="f", **{"from": forward["next_batch"]})
    assert [e["event_id"] for e in forward2["chunk"]] == refs[4:]

    nested = await send(client, alice, room, _reaction(refs[0], "👀"), "m.reaction")
    deeper = await send(client, alice, room, _reaction(nested, "🔁"), "m.reaction")
    flat = await _relations(client, alice, room, root)
    assert nested not in [e["event_id"] for e in flat["chunk"]] and "recursion_depth" not in flat
    deep = await _relations(client, alice, room, root, recurse="true")
    assert deep["recursion_depth"] == 3
    assert {nested, deeper} <= {e["event_id"] for e in deep["chunk"]}
    # The walk goes through every relation; the filters pick what is returned.
    only_reactions = await _relations(client, alice, room, root, "m.annotation", recurse="true")
    assert [e["event_id"] for e in only_reactions["chunk"]] == [deeper, nested]
    assert (await _relations(client, alice, room, root, "m.annotation"))["chunk"] == []
    not_recursed = await _relations(client, alice, room, root, recurse="false")
    assert not_recursed["recursion_depth"] == 1


async def test_relations_visibility_and_errors(client: TestClient) -> None:
    (alice, bob), room = await _room(client, "alice", "bob")
    [carol] = await users(client, "carol")
    private = await create_room(client, alice, preset="private_chat")
    secret = await text(client, alice, private, "secret")
    target = await text(client, alice, room, "public")
    base = f"{V1}/rooms/{room}/relations"
    await error(await client.get(f"{base}/$unknown", headers=alice), 404, "M_NOT_FOUND")
    await error(await client.get(f"{V1}/rooms/{private}/relations/{secret}", headers=bob), 404, "M_NOT_FOUND")
    await error(await client.get(f"{base}/{secret}", headers=alice), 404, "M_NOT_FOUND")
    await error(await client.get(f"{base}/{target}?dir=x", headers=alice), 400, "M_INVALID_PARAM")
    await error(await client.get(f"{base}/{target}?from=garbage", headers=alice), 400, "M_INVALID_PARAM")
    await error(await client.get(f"{base}/{target}?limit=0", headers=alice), 400, "M_INVALID_PARAM")
    await error(await client.get(f"{base}/{target}?recurse=maybe", headers=alice), 400, "M_INVALID_PARAM")
    await error(await client.get(f"{base}/{target}"), 401, "M_MISSING_TOKEN")
    threads = f"{V1}/rooms/{room}/threads"
    await error(await client.get(f"{threads}?include=some", headers=alice), 400, "M_INVALID_PARAM")
    await error(await client.get(f"{threads}?from=nope", headers=alice), 400, "M_INVALID_PARAM")
    await error(await client.get(f"{threads}?limit=-3", headers=alice), 400, "M_INVALID_PARAM")
    await error(await client.get(f"{V1}/rooms/{private}/threads", headers=carol), 403, "M_FORBIDDEN")
    assert (await _relations(client, alice, room, target, limit=10**6))["chunk"] == []


async def test_sync_timelines_carry_bundles(client: TestClient) -> None:
    (alice, bob), room = await _room(client, "alice", "bob")
    root = await text(client, alice, room, "root")
    reply = await send(client, bob, room, _in_thread(root, "reply"))
    edit = await send(client, alice, room, _edit(root, "root!"))
    body = await ok(await client.get(f"{C}/sync", headers=alice))
    timeline = body["rooms"]["join"][room]["timeline"]["events"]
    synced_root = next(e for e in timeline if e["event_id"] == root)
    relations = synced_root["unsigned"]["m.relations"]
    assert relations["m.replace"]["event_id"] == edit
    assert relations["m.thread"]["latest_event"]["event_id"] == reply
    assert "room_id" not in relations["m.thread"]["latest_event"]  # sync's room-less format
