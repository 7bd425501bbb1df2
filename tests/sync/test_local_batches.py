"""A sync woken by a batch of messages sent here takes the batch's events as its stream
window and formats them without reading their redactions and relations
(sync/local_batches.py), and gives what reading would have given. At any other range or
position it reads: an edit committed after a message is still bundled with it."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from homeserver.events.pdu import Pdu
from homeserver.events.room_versions import get_room_version
from homeserver.rooms.persistence import LocalBatch, PersistedEvent, local_batch
from homeserver.server import Homeserver
from homeserver.storage import events as event_queries
from homeserver.storage import relations as relation_queries
from homeserver.storage.postgres_engine import PostgresConnection
from homeserver.storage.sqlite_engine import SqliteConnection
from homeserver.sync.local_batches import LocalBatches
from tests.client_api.conftest import Connect, MakeHs, connect, make_hs  # noqa: F401 (fixtures)
from tests.client_api.sync_helpers import C, User, ok, timeline, woken_by

V12 = get_room_version("12")
ROOM = "!room:example.org"
# The reads a woken sync makes for a local batch's events when it does not have them.
WINDOW_AND_FORMAT_READS = {
    event_queries.SELECT_STREAM_RANGE,
    relation_queries.SELECT_FORMAT_READ_PG, relation_queries.SELECT_FORMAT_READ_SQLITE,
    event_queries.SELECT_REDACTIONS_PG, event_queries.SELECT_REDACTIONS_SQLITE,
}


def _pdu(n: int, content: dict[str, Any] | None = None, **fields: Any) -> Pdu:
    assert V12 is not None
    return Pdu({"type": "m.room.message", "room_id": ROOM, "sender": "@a:example.org",
                "content": content or {"body": str(n)}, **fields}, V12, f"$e{n}")


def test_a_batch_needs_consecutive_orderings() -> None:
    pdus = [_pdu(1), _pdu(2)]
    batch = local_batch(pdus, [7, 8])
    assert batch is not None
    assert (batch.since, batch.upto) == (6, 8)
    assert [(p.event_id, o) for p, o in batch.events] == [("$e1", 7), ("$e2", 8)]
    assert local_batch(pdus, [7, 9]) is None
    assert local_batch([], []) is None


def test_a_batch_whose_events_name_each_other_is_not_one() -> None:
    edit = {"body": "x", "m.relates_to": {"rel_type": "m.replace", "event_id": "$e1"}}
    assert local_batch([_pdu(1), _pdu(2, edit)], [1, 2]) is None
    # A relation to an older event is what most relations are.
    older = {"body": "x", "m.relates_to": {"rel_type": "m.thread", "event_id": "$old"}}
    assert local_batch([_pdu(1), _pdu(2, older)], [1, 2]) is not None
    redaction = _pdu(2, {"redacts": "$e1"}, type="m.room.redaction")
    assert local_batch([_pdu(1), redaction], [1, 2]) is None


def test_windows_and_unreferenced_events_are_exact_and_bounded() -> None:
    batches = LocalBatches(kept=2)
    first = LocalBatch(0, 2, ((_pdu(1), 1), (_pdu(2), 2)))
    batches.note(first)
    batches.note(first)  # once per event of it
    window = batches.window(0, 2)
    assert window is not None and [e.event_id for e in window] == ["$e1", "$e2"]
    assert all(not e.outlier and e.replaces_state is None for e in window)
    assert batches.window(0, 1) is None and batches.window(1, 2) is None
    assert batches.unreferenced("$e1", 2)
    # At a later position something may refer to it.
    assert not batches.unreferenced("$e1", 3)
    batches.note(LocalBatch(2, 3, ((_pdu(3), 3),)))
    batches.note(LocalBatch(3, 4, ((_pdu(4), 4),)))
    assert batches.window(0, 2) is None and not batches.unreferenced("$e1", 2)
    assert batches.window(3, 4) is not None and batches.unreferenced("$e4", 4)


def test_inert_between_follows_consecutive_batches_without_redactions_or_relations() -> None:
    batches = LocalBatches(kept=3)
    reaction = {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$old", "key": "x"}}
    batches.note(LocalBatch(0, 2, ((_pdu(1), 1), (_pdu(2), 2))))
    batches.note(LocalBatch(2, 3, ((_pdu(3), 3),)))
    assert batches.inert_between(0, 3) and batches.inert_between(2, 3)
    assert batches.inert_between(1, 3)  # from inside a batch: a superset was checked
    assert batches.inert_between(3, 3)
    # A position no kept batch ends at: something else took it.
    assert not batches.inert_between(0, 4)
    batches.note(LocalBatch(3, 4, ((_pdu(4, reaction), 4),)))
    assert not batches.inert_between(2, 4) and batches.inert_between(0, 3)
    batches.note(LocalBatch(4, 5, ((_pdu(5, {"redacts": "$old"}, type="m.room.redaction"), 5),)))
    assert not batches.inert_between(4, 5)
    # A gap between batches (a state event, another writer) breaks the chain.
    batches.note(LocalBatch(6, 7, ((_pdu(7), 7),)))
    assert batches.inert_between(6, 7) and not batches.inert_between(5, 7)
    # Forgotten batches (kept=3) say nothing.
    assert not batches.inert_between(2, 3)


@pytest.fixture
async def setup(make_hs: MakeHs, connect: Connect) -> tuple[Homeserver, TestClient]:  # noqa: F811
    hs = make_hs()
    return hs, await connect(hs)


def _record_statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    for engine in (SqliteConnection, PostgresConnection):
        for name in ("fetch", "fetchrow", "fetchval", "execute"):
            original = getattr(engine, name)

            async def recording(self: Any, sql: str, *args: Any, _original: Any = original) -> Any:
                seen.append(sql)
                return await _original(self, sql, *args)
            monkeypatch.setattr(engine, name, recording)
    return seen


def _batches_of(hs: Homeserver) -> list[LocalBatch | None]:
    """Each event persisted from now on: its local batch."""
    batches: list[LocalBatch | None] = []

    async def listener(persisted: PersistedEvent) -> None:
        batches.append(persisted.local_batch)
    hs.rooms.add_event_listener(listener)
    return batches


async def _room(client: TestClient) -> tuple[User, User, str]:
    alice = await User.register(client, "alice")
    carol = await User.register(client, "carol")
    room = await carol.create_room(preset="public_chat")
    await alice.join(room)
    return alice, carol, room


async def test_a_woken_sync_reads_nothing_of_the_batch_and_gets_what_a_read_gives(
        setup: tuple[Homeserver, TestClient], monkeypatch: pytest.MonkeyPatch) -> None:
    hs, client = setup
    alice, carol, room = await _room(client)
    batches = _batches_of(hs)
    since = (await alice.sync())["next_batch"]
    seen = _record_statements(monkeypatch)
    [woken] = await woken_by(hs.notifier, [alice.sync(since=since, timeout_ms=30_000)],
                             carol.send(room, "one"))
    assert not WINDOW_AND_FORMAT_READS & set(seen)
    [event] = timeline(woken, room)
    assert event["content"]["body"] == "one"
    [batch] = batches
    assert batch is not None and batch.upto - batch.since == 1
    # The same event read from the database: a sync from the same token once another
    # batch followed (its range is no batch, and at its position something might refer
    # to the event), formats it the same way.
    await carol.send(room, "two")
    seen.clear()
    again = await alice.sync(since=since)
    assert event_queries.SELECT_STREAM_RANGE in seen
    assert {relation_queries.SELECT_FORMAT_READ_PG, relation_queries.SELECT_FORMAT_READ_SQLITE} & set(seen)
    [read, _] = timeline(again, room)
    for formatted in (event, read):
        formatted["unsigned"].pop("age")
    assert read == event


async def test_state_events_are_no_local_batch(setup: tuple[Homeserver, TestClient]) -> None:
    hs, client = setup
    alice, carol, room = await _room(client)
    batches = _batches_of(hs)
    await carol.set_state(room, "m.room.topic", {"topic": "t"})
    assert batches == [None]


async def test_an_edit_after_the_batch_is_bundled_for_a_sync_behind_both(
        setup: tuple[Homeserver, TestClient]) -> None:
    hs, client = setup
    alice, carol, room = await _room(client)
    since = (await alice.sync())["next_batch"]
    original = await carol.send(room, "one")
    edit = {"msgtype": "m.text", "body": "* two",
            "m.new_content": {"msgtype": "m.text", "body": "two"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": original}}
    edit_id = (await ok(await client.put(f"{C}/rooms/{room}/send/m.room.message/edit1",
                                         headers=carol.headers, json=edit)))["event_id"]
    body = await alice.sync(since=since)
    [first, _] = timeline(body, room)
    assert first["event_id"] == original
    assert first["unsigned"]["m.relations"]["m.replace"]["event_id"] == edit_id


LAZY = {"room": {"state": {"lazy_load_members": True}}}


def _members(body: dict[str, Any], room: str) -> dict[str, dict[str, Any]]:
    events = body["rooms"]["join"][room]["state"]["events"]
    return {e["state_key"]: e for e in events if e["type"] == "m.room.member"}


async def _woken_member(hs: Homeserver, alice: User, carol: User, room: str, since: str,
                        body: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A lazy-loading sync of Alice's woken by Carol's message: the response, and Carol's
    membership in its state."""
    [woken] = await woken_by(hs.notifier, [alice.sync(since=since, timeout_ms=30_000, filter=LAZY)],
                             carol.send(room, body))
    return woken, _members(woken, room)[carol.user_id]


async def test_a_lazily_loaded_membership_is_read_once_while_only_messages_follow(
        setup: tuple[Homeserver, TestClient], monkeypatch: pytest.MonkeyPatch) -> None:
    hs, client = setup
    alice, carol, room = await _room(client)
    since = (await alice.sync(filter=LAZY))["next_batch"]
    seen = _record_statements(monkeypatch)
    first, member = await _woken_member(hs, alice, carol, room, since, "one")
    assert WINDOW_AND_FORMAT_READS & set(seen)  # carol's membership is no new event
    seen.clear()
    second, again = await _woken_member(hs, alice, carol, room, first["next_batch"], "two")
    assert not WINDOW_AND_FORMAT_READS & set(seen)
    for formatted in (member, again):
        formatted["unsigned"].pop("age")
    assert again == member

    # A redaction in between: the membership is read again, and shows it; then carried.
    redaction = await ok(await client.put(
        f"{C}/rooms/{room}/redact/{member['event_id']}/r1", headers=carol.headers, json={}))
    await carol.send(room, "three")
    third = await alice.sync(since=second["next_batch"], filter=LAZY)
    redacted = _members(third, room)[carol.user_id]
    assert redacted["unsigned"]["redacted_because"]["event_id"] == redaction["event_id"]
    seen.clear()
    _, still = await _woken_member(hs, alice, carol, room, third["next_batch"], "four")
    assert not WINDOW_AND_FORMAT_READS & set(seen)
    assert still["unsigned"]["redacted_because"]["event_id"] == redaction["event_id"]
