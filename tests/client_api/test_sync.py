"""GET /sync on a real in-process server: initial and incremental syncs, timelines, state,
membership sections, account data, ephemeral events and bad parameters."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.client_api.conftest import error
from tests.client_api.sync_helpers import C, User, bodies, ok, state_keys, timeline


async def test_initial_sync_lists_joined_rooms_with_timeline_and_summary(client: TestClient) -> None:
    alice = await User.register(client, "alice")
    room = await alice.create_room(name="Lobby")
    await alice.send(room, "hello")

    body = await alice.sync()

    joined = body["rooms"]["join"][room]
    assert bodies(joined["timeline"]["events"]) == ["hello"]
    message = joined["timeline"]["events"][-1]
    assert message["unsigned"]["transaction_id"].startswith("t")
    assert "room_id" not in message
    assert joined["summary"]["m.joined_member_count"] == 1
    assert joined["summary"]["m.invited_member_count"] == 0
    assert joined["unread_notifications"] == {"notification_count": 0, "highlight_count": 0}
    assert body["next_batch"].startswith("s")


async def test_incremental_sync_returns_only_what_is_new(client: TestClient) -> None:
    alice = await User.register(client, "alice")
    room = await alice.create_room()
    await alice.send(room, "one")
    first = await alice.sync()
    await alice.send(room, "two")
    await alice.send(room, "three")

    second = await alice.sync(since=first["next_batch"])

    assert bodies(timeline(second, room)) == ["two", "three"]
    assert second["rooms"]["join"][room]["timeline"]["limited"] is False
    assert second["rooms"]["join"][room]["state"]["events"] == []
    third = await alice.sync(since=second["next_batch"])
    assert third["rooms"]["join"] == {}
    assert third["next_batch"] == second["next_batch"]


async def test_state_is_the_state_at_the_start_of_the_timeline(client: TestClient) -> None:
    alice = await User.register(client, "alice")
    room = await alice.create_room(name="Old name")
    topic = await alice.set_state(room, "m.room.topic", {"topic": "in the timeline"})

    body = await alice.sync(filter={"room": {"timeline": {"limit": 1}}})

    events = timeline(body, room)
    assert [e["event_id"] for e in events] == [topic]
    keys = state_keys(body, room)
    assert {("m.room.create", ""), ("m.room.name", ""), ("m.room.power_levels", ""),
            ("m.room.member", alice.user_id)} <= keys
    assert ("m.room.topic", "") not in keys  # it is in the timeline, not repeated
    assert body["rooms"]["join"][room]["timeline"]["limited"] is True


async def test_limited_incremental_timeline_has_prev_batch_and_gap_state(client: TestClient) -> None:
    alice = await User.register(client, "alice")
    room = await alice.create_room()
    first = await alice.sync()
    await alice.set_state(room, "m.room.topic", {"topic": "set in the gap"})
    for i in range(4):
        await alice.send(room, f"m{i}")

    body = await alice.sync(since=first["next_batch"], filter={"room": {"timeline": {"limit": 2}}})

    joined = body["rooms"]["join"][room]
    assert bodies(joined["timeline"]["events"]) == ["m2", "m3"]
    assert joined["timeline"]["limited"] is True
    assert joined["timeline"]["prev_batch"].startswith("s")
    # The topic changed between `since` and the start of the timeline.
    assert [e["content"] for e in joined["state"]["events"]] == [{"topic": "set in the gap"}]
    # prev_batch names the position just before the timeline: /members?at= reads there.
    members = await ok(await client.get(f"{C}/rooms/{room}/members", headers=alice.headers,
                                        params={"at": joined["timeline"]["prev_batch"]}))
    assert [m["state_key"] for m in members["chunk"]] == [alice.user_id]


async def test_full_state_and_use_state_after(client: TestClient) -> None:
    alice = await User.register(client, "alice")
    room = await alice.create_room(name="R")
    first = await alice.sync()
    await alice.set_state(room, "m.room.topic", {"topic": "t"})

    full = await alice.sync(since=first["next_batch"], full_state="true")
    assert ("m.room.name", "") in state_keys(full, room)
    assert ("m.room.topic", "") not in state_keys(full, room)  # in the timeline

    after = await alice.sync(since=first["next_batch"], use_state_after="true")
    joined = after["rooms"]["join"][room]
    assert "state" not in joined
    assert [e["type"] for e in joined["state_after"]["events"]] == ["m.room.topic"]


async def test_invite_join_and_leave_sections(client: TestClient) -> None:
    alice = await User.register(client, "alice")
    bob = await User.register(client, "bob")
    room = await alice.create_room(name="Invite only")
    start = await bob.sync()
    assert start["rooms"]["invite"] == {}

    await alice.invite(room, bob.user_id)
    invited = await bob.sync(since=start["next_batch"])
    stripped = invited["rooms"]["invite"][room]["invite_state"]["events"]
    assert {"type": "m.room.name", "state_key": "", "content": {"name": "Invite only"},
            "sender": alice.user_id} in stripped
    member = [e for e in stripped if e["type"] == "m.room.member"]
    assert member[0]["state_key"] == bob.user_id and member[0]["content"]["membership"] == "invite"

    await bob.join(room)
    joined = await bob.sync(since=invited["next_batch"])
    assert joined["rooms"]["invite"] == {}
    # Newly joined: the whole state, although the sync is incremental.
    state_and_timeline = state_keys(joined, room) | {
        (e["type"], e.get("state_key")) for e in timeline(joined, room)}
    assert {("m.room.create", ""), ("m.room.name", ""), ("m.room.member", alice.user_id),
            ("m.room.member", bob.user_id)} <= state_and_timeline

    await alice.send(room, "before bob leaves")
    await bob.leave(room)
    await alice.send(room, "after bob left")
    left = await bob.sync(since=joined["next_batch"])
    assert room not in left["rooms"]["join"]
    events = timeline(left, room, "leave")
    assert bodies(events) == ["before bob leaves"]
    assert events[-1]["content"]["membership"] == "leave"
    assert (await bob.sync(since=left["next_batch"]))["rooms"]["leave"] == {}

    initial = await bob.sync()
    assert room not in initial["rooms"]["leave"]
    with_leave = await bob.sync(filter={"room": {"include_leave": True}})
    assert room in with_leave["rooms"]["leave"]


async def test_account_data_global_and_per_room(client: TestClient) -> None:
    alice = await User.register(client, "alice")
    room = await alice.create_room()
    first = await alice.sync()
    await ok(await client.put(f"{C}/user/{alice.user_id}/account_data/org.example.g",
                              headers=alice.headers, json={"a": 1}))
    await ok(await client.put(f"{C}/user/{alice.user_id}/rooms/{room}/account_data/org.example.r",
                              headers=alice.headers, json={"b": 2}))

    body = await alice.sync(since=first["next_batch"])

    assert body["account_data"]["events"] == [{"type": "org.example.g", "content": {"a": 1}}]
    assert body["rooms"]["join"][room]["account_data"]["events"] == [
        {"type": "org.example.r", "content": {"b": 2}}]
    assert body["rooms"]["join"][room]["timeline"]["events"] == []
    again = await alice.sync(since=body["next_batch"])
    assert again["account_data"]["events"] == [] and again["rooms"]["join"] == {}
    initial = await alice.sync()
    assert {"type": "org.example.g", "content": {"a": 1}} in initial["account_data"]["events"]


async def test_typing_and_receipts_are_ephemeral_events(client: TestClient) -> None:
    alice = await User.register(client, "alice")
    bob = await User.register(client, "bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    event_id = await alice.send(room, "read me")
    first = await bob.sync()

    await ok(await client.put(f"{C}/rooms/{room}/typing/{alice.user_id}", headers=alice.headers,
                              json={"typing": True, "timeout": 30000}))
    await ok(await client.post(f"{C}/rooms/{room}/receipt/m.read/{event_id}",
                               headers=alice.headers, json={}))
    body = await bob.sync(since=first["next_batch"])

    ephemeral = {e["type"]: e["content"] for e in body["rooms"]["join"][room]["ephemeral"]["events"]}
    assert ephemeral["m.typing"] == {"user_ids": [alice.user_id]}
    assert alice.user_id in ephemeral["m.receipt"][event_id]["m.read"]
    filtered = await bob.sync(since=first["next_batch"],
                              filter={"room": {"ephemeral": {"types": ["m.typing"]}}})
    assert [e["type"] for e in filtered["rooms"]["join"][room]["ephemeral"]["events"]] == ["m.typing"]


async def test_lazy_loading_members_keeps_only_timeline_senders(client: TestClient) -> None:
    alice = await User.register(client, "alice")
    bob = await User.register(client, "bob")
    carol = await User.register(client, "carol")
    room = await alice.create_room(preset="public_chat", name="Named")
    await bob.join(room)
    await carol.join(room)
    await bob.send(room, "from bob")
    lazy = {"room": {"timeline": {"limit": 1}, "state": {"lazy_load_members": True}}}

    body = await alice.sync(filter=lazy)

    members = {k for t, k in state_keys(body, room) if t == "m.room.member"}
    assert members == {alice.user_id, bob.user_id}
    eager = await alice.sync(filter={"room": {"timeline": {"limit": 1}}})
    assert {k for t, k in state_keys(eager, room) if t == "m.room.member"} == {
        alice.user_id, bob.user_id, carol.user_id}
    assert eager["rooms"]["join"][room]["summary"]["m.joined_member_count"] == 3


async def test_presence_of_the_syncing_user(client: TestClient) -> None:
    alice = await User.register(client, "alice")
    body = await alice.sync(presence="online")
    assert {"type": "m.presence", "sender": alice.user_id} .items() <= body["presence"]["events"][0].items()
    assert body["presence"]["events"][0]["content"]["presence"] == "online"


async def test_bad_parameters_are_client_errors(client: TestClient) -> None:
    alice = await User.register(client, "alice")
    get = client.get
    h = alice.headers
    await error(await get(f"{C}/sync", headers=h, params={"since": "garbage"}), 400, "M_INVALID_PARAM")
    await error(await get(f"{C}/sync", headers=h, params={"since": "s1_x"}), 400, "M_INVALID_PARAM")
    await error(await get(f"{C}/sync", headers=h, params={"filter": "{not json"}), 400, "M_NOT_JSON")
    await error(await get(f"{C}/sync", headers=h, params={"filter": '{"room": 5}'}), 400, "M_BAD_JSON")
    await error(await get(f"{C}/sync", headers=h, params={"filter": "12345"}), 400, "M_INVALID_PARAM")
    await error(await get(f"{C}/sync", headers=h, params={"timeout": "soon"}), 400, "M_INVALID_PARAM")
    await error(await get(f"{C}/sync", headers=h, params={"set_presence": "away"}), 400,
                "M_INVALID_PARAM")
    await error(await get(f"{C}/sync"), 401, "M_MISSING_TOKEN")


async def test_future_since_is_clamped_not_rejected(client: TestClient) -> None:
    alice = await User.register(client, "alice")
    room = await alice.create_room()
    body = await alice.sync(since="s999999_999999_999999_9999999999999_0_0_999999_0")
    assert body["rooms"]["join"] == {}
    await alice.send(room, "after the clamp")
    after = await alice.sync(since=body["next_batch"])
    assert bodies(timeline(after, room)) == ["after the clamp"]


async def test_stored_filter_by_id(client: TestClient) -> None:
    alice = await User.register(client, "alice")
    room = await alice.create_room()
    await alice.send(room, "one")
    await alice.send(room, "two")
    created = await ok(await client.post(f"{C}/user/{alice.user_id}/filter", headers=alice.headers,
                                         json={"room": {"timeline": {"limit": 1}}}))
    body = await alice.sync(filter=created["filter_id"])
    assert bodies(timeline(body, room)) == ["two"]


async def test_ignored_users_events_and_invites_are_left_out(client: TestClient) -> None:
    alice = await User.register(client, "alice")
    bob = await User.register(client, "bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    await ok(await client.put(f"{C}/user/{alice.user_id}/account_data/m.ignored_user_list",
                              headers=alice.headers, json={"ignored_users": {bob.user_id: {}}}))
    first = await alice.sync()
    await bob.send(room, "ignored")
    await alice.send(room, "mine")
    body = await alice.sync(since=first["next_batch"])
    assert bodies(timeline(body, room)) == ["mine"]

    other = await bob.create_room()
    await bob.invite(other, alice.user_id)
    assert other not in (await alice.sync())["rooms"]["invite"]
