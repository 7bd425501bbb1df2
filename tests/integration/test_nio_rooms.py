"""Issue 4 acceptance with a real client: matrix-nio drives rooms from end to end.

Alice and Bob make a group (`private_chat`, by invitation) and a channel (DevNet's
`im.devnet.channel` preset), chat, sync, page through history, edit, react, redact,
reply in a thread, see each other typing and reading, leave and come back.

What a user "sees" is only what nio made of a /sync or a room endpoint. nio validates
every response against its own JSON schemas and parses every event, so a shape it does
not accept shows up as an error response, as a BadEvent in a timeline, or as an
ephemeral event it drops silently (and then a `sync_until` that never finishes).
Nothing here sleeps: a user long-polls /sync until what they wait for arrives, a bounded
number of times.
"""

from __future__ import annotations

import asyncio
import copy
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from nio import (
    Api,
    AsyncClient,
    BadEvent,
    ErrorResponse,
    Event,
    JoinError,
    JoinResponse,
    LoginResponse,
    MessageDirection,
    ReactionEvent,
    RedactedEvent,
    RedactionEvent,
    RegisterResponse,
    RoomContextResponse,
    RoomCreateResponse,
    RoomGetEventResponse,
    RoomInviteResponse,
    RoomLeaveResponse,
    RoomMemberEvent,
    RoomMessagesResponse,
    RoomMessageText,
    RoomPreset,
    RoomReadMarkersResponse,
    RoomRedactError,
    RoomRedactResponse,
    RoomSendError,
    RoomSendResponse,
    RoomTypingResponse,
    SyncResponse,
    UnknownBadEvent,
    UpdateReceiptMarkerResponse,
)
from nio.api import RelationshipType

from tests.integration.conftest import MakeClient, Servers

PASSWORD = "correct horse battery"
ALICE = "@alice:test.local"
BOB = "@bob:test.local"
CHANNEL_PRESET = "im.devnet.channel"  # homeserver/rooms/creation.py
# One sync carries a whole (short) room, so a View's timeline holds every event it was sent.
FULL_TIMELINE = {"room": {"timeline": {"limit": 100}}}
LONG_POLL_MS = 5_000
MAX_SYNCS = 10


def assert_ok(response: Any, expected: type) -> None:
    assert isinstance(response, expected), response
    assert not isinstance(response, ErrorResponse), response


def text(body: str, **extra: Any) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": body, **extra}


class View:
    """One user's nio client, and every room event its syncs showed: as nio parsed it,
    and as it came over the wire (nio fills schema defaults into what it parses)."""

    def __init__(self, client: AsyncClient):
        self.client = client
        self.timeline: dict[str, list[Event]] = defaultdict(list)
        self.raw: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.invited: set[str] = set()
        self.left: set[str] = set()
        self._bodies: list[dict[str, Any]] = []
        parse_body = client.parse_body

        async def keep_a_copy(response: Any) -> dict[str, Any]:
            body = await parse_body(response)
            self._bodies.append(copy.deepcopy(body))
            return body

        client.parse_body = keep_a_copy  # type: ignore[method-assign]

    def raw_timeline(self, room_id: str) -> list[dict[str, Any]]:
        return [self.raw[room_id][event_id] for event_id in self.event_ids(room_id)]

    @property
    def user_id(self) -> str:
        return self.client.user_id

    def event_ids(self, room_id: str) -> list[str]:
        return [event.event_id for event in self.timeline[room_id]]

    def seen(self, room_id: str, event_id: str) -> Event | None:
        return next((e for e in self.timeline[room_id] if e.event_id == event_id), None)

    def memberships(self, room_id: str, user_id: str) -> list[str]:
        return [e.membership for e in self.timeline[room_id]
                if isinstance(e, RoomMemberEvent) and e.state_key == user_id]

    async def sync(self, timeout_ms: int = LONG_POLL_MS) -> SyncResponse:
        response = await self.client.sync(timeout=timeout_ms, sync_filter=FULL_TIMELINE)
        assert_ok(response, SyncResponse)
        wire = self._bodies[-1].get("rooms", {})
        for section in ("join", "leave"):
            for room_id, room in wire.get(section, {}).items():
                for event in room.get("timeline", {}).get("events", []):
                    self.raw[room_id].setdefault(event["event_id"], event)
        for room_id, info in [*response.rooms.join.items(), *response.rooms.leave.items()]:
            assert not info.timeline.limited, (room_id, "a short room's timeline was limited")
            # A room joined (again) since the last sync comes with its visible history,
            # which may repeat what this user saw before leaving. Nothing else repeats.
            newly_joined = room_id in response.rooms.join and (
                room_id in self.left or room_id not in self.timeline)
            known = set(self.event_ids(room_id))
            for event in info.timeline.events:
                assert not isinstance(event, BadEvent | UnknownBadEvent), event
                if event.event_id not in known:
                    self.timeline[room_id].append(event)
                else:
                    assert newly_joined, f"{event.event_id} was synced twice"
        self.invited.update(response.rooms.invite)
        self.left.update(response.rooms.leave)
        self.left.difference_update(response.rooms.join)
        return response

    async def sync_until(self, done: Callable[[], bool], what: str) -> None:
        """Long-poll /sync until `done()`: at most MAX_SYNCS syncs, and 60 s in all."""
        async with asyncio.timeout(60):
            for _ in range(MAX_SYNCS):
                if done():
                    return
                await self.sync()
        assert done(), f"{self.user_id} never saw {what}"

    async def see(self, room_id: str, event_id: str) -> Event:
        await self.sync_until(lambda: self.seen(room_id, event_id) is not None, event_id)
        event = self.seen(room_id, event_id)
        assert event is not None
        return event

    async def send(self, room_id: str, content: dict[str, Any],
                   event_type: str = "m.room.message") -> str:
        response = await self.client.room_send(room_id, event_type, content)
        assert_ok(response, RoomSendResponse)
        return response.event_id

    async def get_event(self, room_id: str, event_id: str) -> Event:
        response = await self.client.room_get_event(room_id, event_id)
        assert_ok(response, RoomGetEventResponse)
        assert not isinstance(response.event, BadEvent | UnknownBadEvent), response.event
        return response.event


async def register(nio_client: MakeClient, url: str, name: str) -> View:
    client = nio_client(url)
    assert_ok(await client.register(name, PASSWORD, device_name="Phone"), RegisterResponse)
    return View(client)


async def log_in(nio_client: MakeClient, url: str, user_id: str) -> View:
    client = nio_client(url, user_id)
    assert_ok(await client.login(PASSWORD, device_name="Laptop"), LoginResponse)
    return View(client)


async def make_group(alice: View, bob: View) -> str:
    """Alice makes a private group and invites Bob; Bob accepts from his sync."""
    created = await alice.client.room_create(name="Tea", topic="Only tea",
                                             preset=RoomPreset.private_chat, invite=[BOB])
    assert_ok(created, RoomCreateResponse)
    room = created.room_id
    await bob.sync_until(lambda: room in bob.invited, "the invitation")
    invited = bob.client.invited_rooms[room]  # nio's model, built from the stripped state
    assert (invited.name, invited.join_rule) == ("Tea", "invite")
    assert_ok(await bob.client.join(room), JoinResponse)
    await alice.sync_until(lambda: "join" in alice.memberships(room, BOB), "Bob joining")
    return room


async def make_channel(alice: View, bob: View) -> str:
    """Alice makes a channel and Bob joins it. nio's room_create takes only its own
    RoomPreset values, so this goes through nio's transport with nio's builders."""
    body = {"preset": CHANNEL_PRESET, "visibility": "public", "name": "News"}
    path = Api._build_path(["createRoom"], {"access_token": alice.client.access_token})
    created = await alice.client._send(RoomCreateResponse, "POST", path, Api.to_json(body))
    assert_ok(created, RoomCreateResponse)
    room = created.room_id
    assert_ok(await bob.client.join(room), JoinResponse)  # public: no invitation needed
    await alice.sync_until(lambda: "join" in alice.memberships(room, BOB), "Bob joining")
    await bob.sync_until(lambda: room in bob.client.rooms, "the channel")
    return room


async def chat_in_group(alice: View, bob: View, room: str) -> dict[str, str]:
    """Messages both ways, an edit, a reaction, redactions, a thread: the room story
    test_mautrix_rooms.py replays. Returns the interesting event IDs by name."""
    hello = await alice.send(room, text("Hello Bob"))
    got = await bob.see(room, hello)
    assert isinstance(got, RoomMessageText), got
    assert (got.sender, got.body) == (ALICE, "Hello Bob")
    hi = await bob.send(room, text("Hi Alice"))
    got = await alice.see(room, hi)
    assert isinstance(got, RoomMessageText), got
    assert (got.sender, got.body) == (BOB, "Hi Alice")
    assert alice.client.rooms[room].display_name == "Tea"
    assert set(alice.client.rooms[room].users) == {ALICE, BOB}

    # Edit (m.replace): Bob sees the edit, and the original now bundles it.
    edit = await alice.send(room, text("* Hello, Bob", **{
        "m.new_content": text("Hello, Bob"),
        "m.relates_to": {"rel_type": "m.replace", "event_id": hello}}))
    got = await bob.see(room, edit)
    assert isinstance(got, RoomMessageText), got
    assert got.source["content"]["m.new_content"] == text("Hello, Bob")
    original = await bob.get_event(room, hello)
    replaced = original.source["unsigned"]["m.relations"]["m.replace"]
    assert replaced["event_id"] == edit
    assert replaced["content"]["m.new_content"]["body"] == "Hello, Bob"

    # React (m.annotation): nio parses it as a ReactionEvent, /relations lists it.
    reaction = await bob.send(room, {"m.relates_to": {
        "rel_type": "m.annotation", "event_id": hello, "key": "👍"}}, "m.reaction")
    got = await alice.see(room, reaction)
    assert isinstance(got, ReactionEvent), got
    assert (got.reacts_to, got.key, got.sender) == (hello, "👍", BOB)
    related = [e.event_id async for e in alice.client.room_get_event_relations(
        room, hello, RelationshipType.annotation)]
    assert related == [reaction]

    # Redact: Bob (power 0) may not redact Alice's message, but may take back his reaction;
    # Alice (the creator, power 100) redacts her own slip.
    denied = await bob.client.room_redact(room, hello, reason="no")
    assert isinstance(denied, RoomRedactError), denied
    assert denied.status_code == "M_FORBIDDEN"
    unreact = await bob.client.room_redact(room, reaction)
    assert_ok(unreact, RoomRedactResponse)
    oops = await alice.send(room, text("wrong window"))
    redacted = await alice.client.room_redact(room, oops, reason="wrong room")
    assert_ok(redacted, RoomRedactResponse)
    got = await bob.see(room, redacted.event_id)
    assert isinstance(got, RedactionEvent), got
    assert (got.redacts, got.reason, got.sender) == (oops, "wrong room", ALICE)
    got = await alice.see(room, unreact.event_id)
    assert isinstance(got, RedactionEvent) and got.redacts == reaction, got
    gone = await bob.get_event(room, oops)
    assert isinstance(gone, RedactedEvent), gone
    assert (gone.redacter, gone.reason, gone.source["content"]) == (ALICE, "wrong room", {})
    related = [e async for e in alice.client.room_get_event_relations(
        room, hello, RelationshipType.annotation)]
    assert related == []

    # Thread: Bob replies to "hello" in a thread (with the reply fallback clients send).
    reply = await bob.send(room, text("In a thread", **{"m.relates_to": {
        "rel_type": "m.thread", "event_id": hello, "is_falling_back": True,
        "m.in_reply_to": {"event_id": hello}}}))
    got = await alice.see(room, reply)
    assert isinstance(got, RoomMessageText), got
    assert got.source["content"]["m.relates_to"]["rel_type"] == "m.thread"
    thread = (await alice.get_event(room, hello)).source["unsigned"]["m.relations"]["m.thread"]
    assert thread["count"] == 1
    assert thread["latest_event"]["event_id"] == reply
    # Spec: the root's sender has participated in its thread.
    assert thread["current_user_participated"] is True
    roots = [e.event_id async for e in alice.client.room_get_threads(room)]
    assert roots == [hello]
    related = [e.event_id async for e in bob.client.room_get_event_relations(
        room, hello, RelationshipType.thread)]
    assert related == [reply]
    return {"hello": hello, "hi": hi, "edit": edit, "reaction": reaction, "oops": oops,
            "redaction": redacted.event_id, "unreact": unreact.event_id, "reply": reply}


async def typing_and_receipts(alice: View, bob: View, room: str, read_up_to: str) -> None:
    """Typing notices and receipts arrive in sync's ephemeral events, and nio's room model
    (MatrixRoom.typing_users, read_receipts) takes them in."""
    assert_ok(await bob.client.room_typing(room, True, timeout=30_000), RoomTypingResponse)
    await alice.sync_until(lambda: alice.client.rooms[room].typing_users == [BOB], "Bob typing")
    assert_ok(await bob.client.room_typing(room, False), RoomTypingResponse)
    await alice.sync_until(lambda: alice.client.rooms[room].typing_users == [], "Bob stopping")

    # nio's update_receipt_marker sends thread_id "main": a threaded receipt.
    assert_ok(await alice.client.update_receipt_marker(room, read_up_to),
              UpdateReceiptMarkerResponse)

    def alice_main_receipt() -> str | None:
        receipt = bob.client.rooms[room].threaded_read_receipts.get(ALICE, {}).get("main")
        return receipt.event_id if receipt else None

    await bob.sync_until(lambda: alice_main_receipt() == read_up_to, "Alice's receipt")
    # read_markers: a public unthreaded m.read for Alice, a private m.fully_read for Bob.
    assert_ok(await bob.client.room_read_markers(room, read_up_to, read_up_to),
              RoomReadMarkersResponse)

    def bob_receipt() -> str | None:
        receipt = alice.client.rooms[room].read_receipts.get(BOB)
        return receipt.event_id if receipt else None

    await alice.sync_until(lambda: bob_receipt() == read_up_to, "Bob's receipt")
    await bob.sync_until(lambda: bob.client.rooms[room].fully_read_marker == read_up_to,
                         "his own m.fully_read")
    assert alice.client.rooms[room].fully_read_marker is None  # private to Bob


async def leave_and_rejoin_group(alice: View, bob: View, room: str) -> None:
    """Bob leaves the invite-only group: he can neither post nor just walk back in, until
    Alice invites him again."""
    assert_ok(await bob.client.room_leave(room), RoomLeaveResponse)
    await alice.sync_until(lambda: alice.memberships(room, BOB)[-1:] == ["leave"], "Bob leaving")
    await bob.sync_until(lambda: room in bob.left, "the group in his left rooms")
    while_away = await alice.send(room, text("Bob has gone"))
    refused = await bob.client.room_send(room, "m.room.message", text("still here?"))
    assert isinstance(refused, RoomSendError), refused
    assert refused.status_code == "M_FORBIDDEN"
    refused_join = await bob.client.join(room)
    assert isinstance(refused_join, JoinError), refused_join
    assert refused_join.status_code == "M_FORBIDDEN"

    bob.invited.discard(room)
    assert_ok(await alice.client.room_invite(room, BOB), RoomInviteResponse)
    await bob.sync_until(lambda: room in bob.invited, "the new invitation")
    assert_ok(await bob.client.join(room), JoinResponse)
    await alice.sync_until(lambda: alice.memberships(room, BOB)[-1:] == ["join"], "Bob back")
    back = await bob.send(room, text("I'm back"))
    await alice.see(room, back)
    welcome = await alice.send(room, text("Welcome back"))
    await bob.see(room, welcome)
    # History is `shared`: what was said while Bob was away is readable to him again.
    messages = await bob.client.room_messages(room, limit=20)
    assert_ok(messages, RoomMessagesResponse)
    assert while_away in [e.event_id for e in messages.chunk]


def assert_same_order(reader: View, writer: View, room: str) -> None:
    """Both saw the room's events in one order (the reader may have seen fewer)."""
    mine, theirs = reader.event_ids(room), writer.event_ids(room)
    assert [e for e in mine if e in set(theirs)] == [e for e in theirs if e in set(mine)]


async def test_group_chat(servers: Servers, nio_client: MakeClient) -> None:
    url = await servers.start()
    alice = await register(nio_client, url, "alice")
    bob = await register(nio_client, url, "bob")
    room = await make_group(alice, bob)
    ids = await chat_in_group(alice, bob, room)
    await typing_and_receipts(alice, bob, room, ids["hi"])
    await leave_and_rejoin_group(alice, bob, room)
    assert_same_order(bob, alice, room)
    assert alice.timeline[room][0].source["type"] == "m.room.create"


async def test_history_pagination(servers: Servers, nio_client: MakeClient) -> None:
    url = await servers.start()
    alice = await register(nio_client, url, "alice")
    bob = await register(nio_client, url, "bob")
    room = await make_group(alice, bob)
    sent = [await alice.send(room, text(f"message {n}")) for n in range(25)]
    await alice.see(room, sent[-1])
    everything = alice.event_ids(room)  # from m.room.create on, oldest first

    # A new device syncs with a short timeline, then pages back from its prev_batch.
    phone = await log_in(nio_client, url, BOB)
    synced = await phone.client.sync(sync_filter={"room": {"timeline": {"limit": 5}}})
    assert_ok(synced, SyncResponse)
    timeline = synced.rooms.join[room].timeline
    assert timeline.limited and timeline.prev_batch
    assert [e.event_id for e in timeline.events] == sent[-5:]
    pages: list[RoomMessagesResponse] = []
    token: str | None = timeline.prev_batch
    while token is not None and len(pages) < 10:
        page = await phone.client.room_messages(room, start=token, limit=10)
        assert_ok(page, RoomMessagesResponse)
        assert page.start == token
        pages.append(page)
        token = page.end if page.chunk else None
    assert token is None, "history never ended"
    assert len(pages) >= 3
    older = [e.event_id for page in pages for e in page.chunk]
    assert list(reversed(older)) + sent[-5:] == everything
    assert pages[-1].end is None  # spec: `end` is left out once history has ended
    assert [e for p in pages for e in p.chunk][-1].source["type"] == "m.room.create"
    assert [e.body for e in pages[0].chunk[:2]] == ["message 19", "message 18"]

    # `to` stops a page at a token from an earlier page.
    bounded = await phone.client.room_messages(room, start=pages[0].end, end=pages[1].end,
                                              limit=100)
    assert_ok(bounded, RoomMessagesResponse)
    assert [e.event_id for e in bounded.chunk] == [e.event_id for e in pages[1].chunk]

    # /context around one message; its tokens page on from either side of the window.
    context = await phone.client.room_context(room, sent[12], limit=4)
    assert_ok(context, RoomContextResponse)
    assert context.event.event_id == sent[12]
    assert [e.event_id for e in context.events_before] == [sent[11], sent[10]]
    assert [e.event_id for e in context.events_after] == [sent[13], sent[14]]
    earlier = await phone.client.room_messages(room, start=context.start, limit=2)
    assert_ok(earlier, RoomMessagesResponse)
    assert [e.event_id for e in earlier.chunk] == [sent[9], sent[8]]
    later = await phone.client.room_messages(room, start=context.end, limit=2,
                                             direction=MessageDirection.front)
    assert_ok(later, RoomMessagesResponse)
    assert [e.event_id for e in later.chunk] == [sent[15], sent[16]]

    # Forwards from the start of the room, in pages, back to the present.
    forward: list[str] = []
    token = None
    for _ in range(10):
        page = await phone.client.room_messages(room, start=token, limit=10,
                                                direction=MessageDirection.front)
        assert_ok(page, RoomMessagesResponse)
        forward += [e.event_id for e in page.chunk]
        if not page.chunk or page.end is None:
            break
        token = page.end
    assert forward == everything


async def test_channel(servers: Servers, nio_client: MakeClient) -> None:
    url = await servers.start()
    alice = await register(nio_client, url, "alice")
    bob = await register(nio_client, url, "bob")
    room = await make_channel(alice, bob)
    channel = bob.client.rooms[room]
    assert (channel.display_name, channel.join_rule) == ("News", "public")
    # nio's own power-level logic turns Bob's composer off. (It would turn Alice's off too:
    # in room version 12 the creator's power comes from m.room.create, not from
    # m.room.power_levels, and nio 0.26 does not know that.)
    assert not channel.power_levels.can_user_send_message(BOB)

    refused = await bob.client.room_send(room, "m.room.message", text("can I post?"))
    assert isinstance(refused, RoomSendError), refused
    assert refused.status_code == "M_FORBIDDEN"
    news = await alice.send(room, text("Release 1.0 is out"))
    got = await bob.see(room, news)
    assert isinstance(got, RoomMessageText) and got.body == "Release 1.0 is out", got

    # A public room: Bob leaves and walks straight back in.
    assert_ok(await bob.client.room_leave(room), RoomLeaveResponse)
    await bob.sync_until(lambda: room in bob.left, "the channel in his left rooms")
    assert_ok(await bob.client.join(room), JoinResponse)
    await alice.sync_until(lambda: alice.memberships(room, BOB) == ["join", "leave", "join"],
                           "Bob leaving and coming back")
    more = await alice.send(room, text("Release 1.1 is out"))
    await bob.see(room, more)
    refused = await bob.client.room_send(room, "m.room.message", text("and now?"))
    assert isinstance(refused, RoomSendError) and refused.status_code == "M_FORBIDDEN", refused
    assert_same_order(bob, alice, room)


async def test_many_clients_sync_at_once(servers: Servers, nio_client: MakeClient) -> None:
    """More simultaneous syncs than the SQLite engine has reader connections, some of
    them initial (receipts, unread counts) and some long-polling, while Alice sends: no
    request may wait on another for a database connection."""
    url = await servers.start()
    alice = await register(nio_client, url, "alice")
    bob = await register(nio_client, url, "bob")
    room = await make_group(alice, bob)
    hello = await alice.send(room, text("Hello"))
    assert_ok(await bob.client.room_read_markers(room, hello, hello), RoomReadMarkersResponse)
    devices = [await log_in(nio_client, url, user) for user in (ALICE, BOB, ALICE, BOB)]
    async with asyncio.timeout(30):
        await asyncio.gather(*(device.sync(timeout_ms=0) for device in devices))
        polls = [asyncio.create_task(device.sync(timeout_ms=20_000)) for device in devices]
        news = await alice.send(room, text("News"))
        await asyncio.gather(*polls)
        for device in devices:
            await device.see(room, news)
