"""The rooms endpoints on a real in-process server (every response is checked for 5xx)."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.client_api.conftest import bearer, error, register

C = "/_matrix/client/v3"


async def _users(client: TestClient, *names: str) -> list[dict[str, str]]:
    return [bearer((await register(client, name))["access_token"]) for name in names]


async def _ok(resp: Any) -> Any:
    body = await resp.json()
    assert resp.status == 200, body
    return body


async def test_room_lifecycle(client: TestClient) -> None:
    alice, bob = await _users(client, "alice", "bob")
    room = (await _ok(await client.post(f"{C}/createRoom", headers=alice, json={
        "preset": "public_chat", "name": "Lobby", "room_alias_name": "lobby"})))["room_id"]
    assert (await _ok(await client.get(f"{C}/directory/room/%23lobby:test.local")))["room_id"] == room
    joined = await _ok(await client.post(f"{C}/join/%23lobby:test.local", headers=bob, json={}))
    assert joined == {"room_id": room}
    assert (await _ok(await client.get(f"{C}/joined_rooms", headers=bob)))["joined_rooms"] == [room]

    sent = await _ok(await client.put(f"{C}/rooms/{room}/send/m.room.message/t1", headers=bob,
                                      json={"msgtype": "m.text", "body": "hi"}))
    again = await _ok(await client.put(f"{C}/rooms/{room}/send/m.room.message/t1", headers=bob,
                                       json={"msgtype": "m.text", "body": "hi"}))
    assert sent == again
    event = await _ok(await client.get(f"{C}/rooms/{room}/event/{sent['event_id']}", headers=bob))
    assert event["content"]["body"] == "hi" and event["room_id"] == room
    assert event["unsigned"]["transaction_id"] == "t1"
    seen_by_alice = await _ok(await client.get(f"{C}/rooms/{room}/event/{sent['event_id']}", headers=alice))
    assert "transaction_id" not in seen_by_alice["unsigned"]

    await _ok(await client.put(f"{C}/rooms/{room}/state/m.room.topic", headers=alice, json={"topic": "t"}))
    assert await _ok(await client.get(f"{C}/rooms/{room}/state/m.room.topic/", headers=bob)) == {"topic": "t"}
    full = await _ok(await client.get(f"{C}/rooms/{room}/state/m.room.topic?format=event", headers=bob))
    assert full["type"] == "m.room.topic" and full["state_key"] == ""
    state = await _ok(await client.get(f"{C}/rooms/{room}/state", headers=bob))
    assert {e["type"] for e in state} >= {"m.room.create", "m.room.topic", "m.room.name"}
    members = await _ok(await client.get(f"{C}/rooms/{room}/members?membership=join", headers=bob))
    assert len(members["chunk"]) == 2
    joined_members = await _ok(await client.get(f"{C}/rooms/{room}/joined_members", headers=bob))
    assert set(joined_members["joined"]) == {"@alice:test.local", "@bob:test.local"}

    redaction = await _ok(await client.put(f"{C}/rooms/{room}/redact/{sent['event_id']}/r1",
                                           headers=bob, json={"reason": "typo"}))
    redacted = await _ok(await client.get(f"{C}/rooms/{room}/event/{sent['event_id']}", headers=alice))
    assert redacted["content"] == {}
    assert redacted["unsigned"]["redacted_because"]["event_id"] == redaction["event_id"]

    await _ok(await client.post(f"{C}/rooms/{room}/kick", headers=alice, json={"user_id": "@bob:test.local"}))
    await _ok(await client.post(f"{C}/rooms/{room}/forget", headers=bob, json={}))
    await _ok(await client.post(f"{C}/rooms/{room}/ban", headers=alice, json={"user_id": "@bob:test.local"}))
    await error(await client.post(f"{C}/rooms/{room}/join", headers=bob, json={}), 403, "M_FORBIDDEN")
    await _ok(await client.post(f"{C}/rooms/{room}/unban", headers=alice, json={"user_id": "@bob:test.local"}))
    await _ok(await client.post(f"{C}/rooms/{room}/invite", headers=alice, json={"user_id": "@bob:test.local"}))
    await _ok(await client.post(f"{C}/rooms/{room}/leave", headers=bob, json={}))

    upgraded = await _ok(await client.post(f"{C}/rooms/{room}/upgrade", headers=alice, json={"new_version": "12"}))
    assert upgraded["replacement_room"] != room
    await _ok(await client.delete(f"{C}/directory/room/%23lobby:test.local", headers=alice))
    await error(await client.get(f"{C}/directory/room/%23lobby:test.local"), 404, "M_NOT_FOUND")


async def test_bad_inputs(client: TestClient) -> None:
    alice, bob = await _users(client, "alice", "bob")
    room = (await _ok(await client.post(f"{C}/createRoom", headers=alice, json={})))["room_id"]
    unknown = "!unknown:test.local"
    await error(await client.put(f"{C}/rooms/{unknown}/send/m.room.message/t", headers=alice, json={}),
                403, "M_FORBIDDEN")
    await error(await client.post(f"{C}/join/{unknown}", headers=alice, json={}), 404, "M_NOT_FOUND")
    await error(await client.get(f"{C}/rooms/{unknown}/state", headers=alice), 403, "M_FORBIDDEN")
    await error(await client.get(f"{C}/rooms/not-a-room/state", headers=alice), 400, "M_INVALID_PARAM")
    await error(await client.put(f"{C}/rooms/{room}/send/m.room.message/t", headers=bob, json={}),
                403, "M_FORBIDDEN")
    await error(await client.get(f"{C}/rooms/{room}/members", headers=bob), 403, "M_FORBIDDEN")
    await error(await client.get(f"{C}/rooms/{room}/event/$nope", headers=alice), 404, "M_NOT_FOUND")
    await error(await client.put(f"{C}/rooms/{room}/send/m.room.message/big", headers=alice,
                                 json={"body": "x" * 70_000}), 413, "M_TOO_LARGE")
    await error(await client.put(f"{C}/rooms/{room}/state/m.room.power_levels", headers=alice,
                                 json={"users_default": "0"}), 400, "M_BAD_JSON")
    await error(await client.post(f"{C}/createRoom", headers=alice, json={"room_version": "42"}),
                400, "M_UNSUPPORTED_ROOM_VERSION")
    await error(await client.post(f"{C}/createRoom", headers=alice, json={
        "power_level_content_override": {"events": {"m.room.name": "50"}}}), 400, "M_BAD_JSON")
    await error(await client.post(f"{C}/createRoom", headers=alice, json={"invite": "x"}), 400, "M_BAD_JSON")
    await error(await client.post(f"{C}/createRoom", headers=alice, json={"visibility": "x"}), 400, "M_BAD_JSON")
    await error(await client.post(f"{C}/createRoom", headers=alice, json={"initial_state": [{"type": 1}]}),
                400, "M_BAD_JSON")
    await error(await client.post(f"{C}/rooms/{room}/invite", headers=alice, json={}), 400, "M_MISSING_PARAM")
    await error(await client.post(f"{C}/rooms/{room}/upgrade", headers=alice, json={"new_version": "0"}),
                400, "M_UNSUPPORTED_ROOM_VERSION")
    await error(await client.get(f"{C}/rooms/{room}/members?at=garbage", headers=alice), 400, "M_INVALID_PARAM")
    await error(await client.put(f"{C}/directory/room/%23x:other.server", headers=alice,
                                 json={"room_id": room}), 400, "M_INVALID_PARAM")
    await _ok(await client.put(f"{C}/directory/room/%23x:test.local", headers=alice, json={"room_id": room}))
    await error(await client.put(f"{C}/directory/room/%23x:test.local", headers=alice,
                                 json={"room_id": room}), 409, "M_UNKNOWN")
    await error(await client.delete(f"{C}/directory/room/%23x:test.local", headers=bob), 403, "M_FORBIDDEN")
    await error(await client.get(f"{C}/joined_rooms"), 401, "M_MISSING_TOKEN")


async def test_channel_preset(client: TestClient) -> None:
    alice, bob = await _users(client, "alice", "bob")
    room = (await _ok(await client.post(f"{C}/createRoom", headers=alice, json={
        "preset": "im.devnet.channel", "name": "News"})))["room_id"]
    await _ok(await client.post(f"{C}/rooms/{room}/join", headers=bob, json={}))
    await _ok(await client.put(f"{C}/rooms/{room}/send/m.room.message/a", headers=alice, json={"body": "news"}))
    await error(await client.put(f"{C}/rooms/{room}/send/m.room.message/b", headers=bob, json={"body": "hi"}),
                403, "M_FORBIDDEN")
    rules = await _ok(await client.get(f"{C}/rooms/{room}/state/m.room.join_rules/", headers=bob))
    assert rules == {"join_rule": "public"}
