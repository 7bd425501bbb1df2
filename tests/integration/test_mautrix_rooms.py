"""Issue 4 acceptance, second opinion: mautrix-python sees the rooms nio made.

test_nio_rooms.py's story runs first (a group with messages, an edit, reactions,
redactions, a thread, receipts, a leave and a rejoin; a channel). Then Bob logs in with
a mautrix `Client` on an `HTTPAPI` of its own (a different HTTP stack: bearer header
instead of nio's query token, its own paths and query strings), syncs, pages back to the
start of each room and must find the same events, in the same order, with the same
contents, as a fresh nio device does, and as Alice saw them live. mautrix then follows
the rooms live alongside nio.

mautrix parses events with its own typed classes. One it cannot parse falls back to a
GenericEvent with a logged warning ("Failed to deserialize"); these tests fail on any
warning mautrix logs. (Event types mautrix does not model, such as m.room.guest_access,
are GenericEvents without a warning.)
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from mautrix.api import HTTPAPI
from mautrix.client import Client
from mautrix.errors import MForbidden
from mautrix.types import (
    EventID,
    EventType,
    Filter,
    FilterID,
    MessageEvent,
    PaginationDirection,
    ReactionEvent,
    ReceiptEvent,
    ReceiptType,
    RedactionEvent,
    RelationType,
    RoomID,
    StateEvent,
    SyncToken,
    TextMessageEventContent,
    TypingEvent,
    UserID,
)
from nio import RoomReadMarkersResponse, RoomRedactResponse, RoomTypingResponse

from tests.integration.conftest import MakeClient, Servers
from tests.integration.test_nio_rooms import (
    ALICE,
    BOB,
    FULL_TIMELINE,
    PASSWORD,
    assert_ok,
    chat_in_group,
    leave_and_rejoin_group,
    log_in,
    make_channel,
    make_group,
    register,
    text,
    typing_and_receipts,
)

JsonDict = dict[str, Any]
MakeMautrix = Callable[[str, str], Client]
LONG_POLL_MS = 5_000
MAX_SYNCS = 10
# What two clients must agree on for each event (unsigned holds `age` and the like).
# Classes mautrix must parse these event types into (it has none for some others).
TYPED = {"m.room.message": MessageEvent, "m.reaction": ReactionEvent,
         "m.room.redaction": RedactionEvent, "m.room.member": StateEvent,
         "m.room.create": StateEvent, "m.room.power_levels": StateEvent,
         "m.room.join_rules": StateEvent, "m.room.name": StateEvent,
         "m.typing": TypingEvent, "m.receipt": ReceiptEvent}
COMPARED = ("event_id", "type", "sender", "origin_server_ts", "state_key", "content")


@pytest.fixture
async def mautrix_client(caplog: pytest.LogCaptureFixture) -> AsyncIterator[MakeMautrix]:
    """Make mautrix Clients, each on its own aiohttp session (closed at teardown).
    No retries: mautrix would retry a failed request after sleeping. At teardown, fail
    on any warning mautrix logged (an event it could not parse, a handler that raised)."""
    sessions: list[aiohttp.ClientSession] = []
    caplog.set_level(logging.WARNING, logger="mau")

    def make(base_url: str, user_id: str) -> Client:
        sessions.append(aiohttp.ClientSession())
        api = HTTPAPI(base_url, client_session=sessions[-1], default_retry_count=0)
        return Client(UserID(user_id), api=api)

    yield make
    for session in sessions:
        await session.close()
    complaints = [r.getMessage() for r in caplog.records
                  if r.name.startswith("mau") and r.levelno >= logging.WARNING]
    assert not complaints, complaints


class MautrixView:
    """A mautrix Client, the raw /sync JSON it received, and the typed events its
    Syncer dispatched from it."""

    def __init__(self, client: Client):
        self.client = client
        self.next_batch: str | None = None
        self.filter_id: FilterID | None = None
        self.timeline: dict[str, list[JsonDict]] = {}
        self.typed: list[Any] = []
        client.add_event_handler(EventType.ALL, self._collect, wait_sync=True)

    async def _collect(self, event: Any) -> None:
        self.typed.append(event)

    def seen(self, room_id: str, event_id: str) -> bool:
        return any(e["event_id"] == event_id for e in self.timeline.get(room_id, []))

    async def sync(self, timeout_ms: int = LONG_POLL_MS) -> JsonDict:
        data = await self.client.sync(since=SyncToken(self.next_batch) if self.next_batch else None,
                                      timeout=timeout_ms, filter_id=self.filter_id)
        raw = copy.deepcopy(data)  # the Syncer writes into what it is given
        await asyncio.gather(*self.client.handle_sync(data))
        for room_id, room in raw.get("rooms", {}).get("join", {}).items():
            self.timeline.setdefault(room_id, []).extend(room["timeline"]["events"])
        self.next_batch = raw["next_batch"]
        return raw

    async def sync_until(self, done: Callable[[], bool], what: str) -> None:
        async with asyncio.timeout(60):
            for _ in range(MAX_SYNCS):
                if done():
                    return
                await self.sync()
        assert done(), f"mautrix never saw {what}"


def comparable(event: JsonDict) -> JsonDict:
    """The fields both clients must agree on, and which redaction (if any) applied."""
    fields = {key: event[key] for key in COMPARED if key in event}
    fields["redacted_by"] = event.get("unsigned", {}).get("redacted_because", {}).get("event_id")
    return fields


async def mautrix_pages(view: MautrixView, room_id: str) -> list[Any]:
    """mautrix's get_messages, backwards from the last sync's next_batch until `end` runs
    out: the room's whole history as mautrix's typed events, oldest first."""
    events: list[Any] = []
    token: str | None = view.next_batch
    for _ in range(20):
        if token is None:
            break
        page = await view.client.get_messages(RoomID(room_id), PaginationDirection.BACKWARD,
                                              from_token=SyncToken(token), limit=10)
        events[:0] = reversed(page.events)
        token = page.end
    assert token is None, "history never ended"
    return events


async def test_mautrix_sees_what_nio_saw(servers: Servers, nio_client: MakeClient,
                                         mautrix_client: MakeMautrix) -> None:
    url = await servers.start()
    alice = await register(nio_client, url, "alice")
    bob = await register(nio_client, url, "bob")
    group = await make_group(alice, bob)
    ids = await chat_in_group(alice, bob, group)
    await typing_and_receipts(alice, bob, group, ids["hi"])
    await leave_and_rejoin_group(alice, bob, group)
    channel = await make_channel(alice, bob)
    news = await alice.send(channel, text("Release 1.0 is out"))
    await alice.see(channel, news)
    last = await alice.send(group, text("That's all"))
    await alice.see(group, last)

    # Bob on a mautrix client, logged in with his password, syncing with a filter it
    # uploaded (whole timelines); a new nio device of Bob's syncs with the same filter.
    mx = MautrixView(mautrix_client(url, BOB))
    login = await mx.client.login(password=PASSWORD, device_name="mautrix")
    assert (login.user_id, mx.client.device_id) == (BOB, login.device_id)
    assert set(await mx.client.get_joined_rooms()) == {group, channel}
    mx.filter_id = await mx.client.create_filter(Filter.deserialize(FULL_TIMELINE))
    initial = await mx.sync(timeout_ms=0)
    assert set(initial["rooms"]["join"]) == {group, channel}
    laptop = await log_in(nio_client, url, BOB)
    await laptop.sync(timeout_ms=0)

    for room in (group, channel):
        assert not initial["rooms"]["join"][room]["timeline"].get("limited")
        seen_by_mautrix = mx.timeline[room]
        assert [comparable(e) for e in seen_by_mautrix] == [
            comparable(e) for e in laptop.raw_timeline(room)]
        # ...as Alice saw them, in the same order, as they happened...
        assert [e["event_id"] for e in seen_by_mautrix] == alice.event_ids(room)
        assert seen_by_mautrix[0]["type"] == "m.room.create"
        # ...and as mautrix pages back through them.
        paged = await mautrix_pages(mx, room)
        assert [e.event_id for e in paged] == alice.event_ids(room)

    # The receipts in the initial sync: Alice's (threaded "main", nio's default) and Bob's
    # (unthreaded, from read_markers), both on "hi", with the same timestamps in both.
    # (mautrix 0.21 does not model a receipt's thread_id: that is read from the JSON.)
    mx_receipts = {user: receipt.ts
                   for event in mx.typed if isinstance(event, ReceiptEvent)
                   and event.room_id == group
                   for user, receipt in event.content.get(EventID(ids["hi"]), {}).get(
                       ReceiptType.READ, {}).items()}
    room = laptop.client.rooms[group]
    assert mx_receipts == {ALICE: room.threaded_read_receipts[ALICE]["main"].timestamp,
                           BOB: room.read_receipts[BOB].timestamp}
    [receipts] = [e["content"] for e in initial["rooms"]["join"][group]["ephemeral"]["events"]
                  if e["type"] == "m.receipt"]
    assert receipts[ids["hi"]]["m.read"][ALICE]["thread_id"] == "main"
    assert "thread_id" not in receipts[ids["hi"]]["m.read"][BOB]

    # The redaction reached both: the slip has no content left, the edit still points home.
    history = {e["event_id"]: e for e in mx.timeline[group]}
    assert history[ids["oops"]]["content"] == {}
    assert history[ids["oops"]]["unsigned"]["redacted_because"]["event_id"] == ids["redaction"]
    assert history[ids["edit"]]["content"]["m.relates_to"] == {
        "rel_type": "m.replace", "event_id": ids["hello"]}

    # mautrix's typed view of the same events.
    typed = {e.event_id: e for e in mx.typed if getattr(e, "event_id", None)}
    hello = typed[ids["hello"]]
    assert isinstance(hello, MessageEvent) and isinstance(hello.content, TextMessageEventContent)
    assert (hello.sender, hello.content.body) == (ALICE, "Hello Bob")
    for event in mx.typed:
        kind = TYPED.get(event.type.t)
        assert kind is None or isinstance(event, kind), event
    in_rooms = [e.event_id for e in mx.typed if getattr(e, "room_id", None) == group
                and getattr(e, "event_id", None)]
    assert in_rooms == alice.event_ids(group)
    reply = typed[ids["reply"]]
    assert isinstance(reply, MessageEvent), reply
    assert reply.content.relates_to.rel_type == RelationType.THREAD
    assert reply.content.relates_to.event_id == ids["hello"]
    # Bob took his reaction back: redaction keeps no m.relates_to (room version 12).
    reaction = typed[ids["reaction"]]
    assert isinstance(reaction, ReactionEvent), reaction
    assert reaction.content.relates_to.event_id is None
    assert history[ids["reaction"]]["unsigned"]["redacted_because"]["event_id"] == ids["unreact"]
    assert typed[ids["redaction"]].redacts == ids["oops"]


async def test_mautrix_follows_live(servers: Servers, nio_client: MakeClient,
                                    mautrix_client: MakeMautrix) -> None:
    """Bob follows the rooms on mautrix and on nio at once while Alice (on nio) writes;
    both syncs are taken at the same points, so both must show the same events."""
    url = await servers.start()
    alice = await register(nio_client, url, "alice")
    bob = await register(nio_client, url, "bob")
    group = await make_group(alice, bob)
    channel = await make_channel(alice, bob)
    mx = MautrixView(mautrix_client(url, BOB))
    await mx.client.login(password=PASSWORD)
    await mx.sync(timeout_ms=0)
    await bob.sync(timeout_ms=0)
    nio_before = {room: len(bob.event_ids(room)) for room in (group, channel)}
    mx_before = {room: len(mx.timeline[room]) for room in (group, channel)}

    def typing_users() -> list[str] | None:
        last = [e for e in mx.typed if isinstance(e, TypingEvent) and e.room_id == group]
        return last[-1].content.user_ids if last else None

    def read_receipt(event_id: str) -> Any:
        for event in reversed(mx.typed):
            if isinstance(event, ReceiptEvent) and event.room_id == group:
                receipts = event.content.get(EventID(event_id), {}).get(ReceiptType.READ, {})
                if ALICE in receipts:
                    return receipts[ALICE]
        return None

    # Long-polls already waiting when Alice writes: the notifier must wake both.
    waiting = [asyncio.create_task(mx.sync(timeout_ms=30_000)),
               asyncio.create_task(bob.sync(timeout_ms=30_000))]
    hello = await alice.send(group, text("Hello Bob"))
    await asyncio.gather(*waiting)
    await mx.sync_until(lambda: mx.seen(group, hello), "Alice's message")
    await bob.see(group, hello)

    edit = await alice.send(group, text("* Hello, Bob", **{
        "m.new_content": text("Hello, Bob"),
        "m.relates_to": {"rel_type": "m.replace", "event_id": hello}}))
    reaction = await alice.send(group, {"m.relates_to": {
        "rel_type": "m.annotation", "event_id": hello, "key": "🎉"}}, "m.reaction")
    await mx.sync_until(lambda: mx.seen(group, reaction), "Alice's reaction")
    await bob.see(group, reaction)

    redaction = await alice.client.room_redact(group, reaction)
    assert_ok(redaction, RoomRedactResponse)
    news = await alice.send(channel, text("Release 1.0 is out"))
    assert_ok(await alice.client.room_typing(group, True, timeout=30_000), RoomTypingResponse)
    assert_ok(await alice.client.room_read_markers(group, edit, edit), RoomReadMarkersResponse)
    await mx.sync_until(lambda: mx.seen(group, redaction.event_id) and mx.seen(channel, news)
                        and typing_users() == [ALICE] and read_receipt(edit) is not None,
                        "everything else Alice did")
    await bob.sync_until(
        lambda: bob.seen(group, redaction.event_id) is not None
        and bob.seen(channel, news) is not None
        and bob.client.rooms[group].typing_users == [ALICE]
        and ALICE in bob.client.rooms[group].read_receipts, "everything else Alice did")

    for room in (group, channel):
        mx_events = mx.timeline[room][mx_before[room]:]
        nio_events = bob.raw_timeline(room)[nio_before[room]:]
        assert [comparable(e) for e in mx_events] == [comparable(e) for e in nio_events]
    assert [e["event_id"] for e in mx.timeline[group][mx_before[group]:]] == [
        hello, edit, reaction, redaction.event_id]
    assert read_receipt(edit).ts == bob.client.rooms[group].read_receipts[ALICE].timestamp

    typed = {e.event_id: e for e in mx.typed if getattr(e, "event_id", None)}
    got = typed[edit]
    assert isinstance(got, MessageEvent), got
    assert got.content.relates_to.rel_type == RelationType.REPLACE
    assert got.content.get_edit() == hello
    assert got.content.body == "Hello, Bob"  # mautrix reads an edit as its m.new_content
    got = typed[reaction]
    assert isinstance(got, ReactionEvent), got
    assert (got.content.relates_to.event_id, got.content.relates_to.key) == (hello, "🎉")
    got = typed[redaction.event_id]
    assert isinstance(got, RedactionEvent) and got.redacts == reaction, got

    # The channel refuses Bob's message through mautrix too, as the typed M_FORBIDDEN.
    with pytest.raises(MForbidden):
        await mx.client.send_text(RoomID(channel), "can I post?")
