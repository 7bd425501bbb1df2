"""Formatting events reads their redactions and the relations bundled into them in one
statement (RelationStore.redactions_and_relations), and no relations when no event can
have a bundle."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.clock import FakeClock
from homeserver.rooms.service import RoomService
from homeserver.storage.database import Connection, Database
from homeserver.storage.relations import ParentRelationRow, ThreadSummaryRow
from tests.rooms.conftest import ALICE, BOB, make_room

_txn = iter(range(10**6))


async def _send(rooms: RoomService, room_id: str, content: dict[str, Any], sender: str = ALICE,
                event_type: str = "m.room.message") -> str:
    return await rooms.send.send_message(sender, None, room_id, event_type, content, f"f{next(_txn)}")


def _rel(rel_type: str, target: str, **extra: Any) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": "x", "m.relates_to": {"rel_type": rel_type, "event_id": target, **extra}}


async def test_one_read_gives_redactions_edits_references_and_threads(
        rooms: RoomService, database: Database, clock: FakeClock) -> None:
    room_id = await make_room(rooms, preset="public_chat")
    await rooms.membership.join(BOB, room_id)
    root = await _send(rooms, room_id, {"msgtype": "m.text", "body": "root"})
    clock.advance(10)
    edit1 = await _send(rooms, room_id, {**_rel("m.replace", root), "m.new_content": {"body": "e1"}})
    clock.advance(10)
    edit2 = await _send(rooms, room_id, {**_rel("m.replace", root), "m.new_content": {"body": "e2"}})
    await _send(rooms, room_id, {"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "👍"}},
                sender=BOB, event_type="m.reaction")
    ref = await _send(rooms, room_id, _rel("m.reference", root), sender=BOB)
    await _send(rooms, room_id, _rel("m.thread", root), sender=BOB)
    latest = await _send(rooms, room_id, _rel("m.thread", root))
    gone = await _send(rooms, room_id, {"msgtype": "m.text", "body": "gone"})
    first = await rooms.send.redact(ALICE, None, room_id, gone, None, "fr1")
    second = await rooms.send.redact(ALICE, None, room_id, gone, None, "fr2")
    ids = [root, gone, edit1]

    async with database.connection() as conn:
        stored = await rooms.stores.events.get_many(conn, [edit1, edit2, ref])
        read = await rooms.stores.relations.redactions_and_relations(
            conn, ids, parent_ids=[root, gone], user_id=BOB)
        # The same as the per-table reads give.
        assert read.redactions == await rooms.stores.events.redactions_of(conn, ids)
        assert read.threads == await rooms.stores.relations.thread_summaries(conn, [root, gone], BOB)
        redactions_only = await rooms.stores.relations.redactions_and_relations(
            conn, ids, parent_ids=[], user_id=BOB)

    assert [r.redaction_id for r in read.redactions[gone]] == [first, second]  # oldest first
    assert set(read.redactions) == {gone}
    ts = {e: stored[e].pdu.origin_server_ts for e in (edit1, edit2, ref)}
    assert read.edits_and_references == [
        ParentRelationRow(edit1, root, "m.replace", ALICE, "m.room.message", ts[edit1]),
        ParentRelationRow(edit2, root, "m.replace", ALICE, "m.room.message", ts[edit2]),
        ParentRelationRow(ref, root, "m.reference", BOB, "m.room.message", ts[ref]),
    ]
    assert read.threads == {root: ThreadSummaryRow(root, latest, 2, 1)}
    assert redactions_only.redactions == read.redactions
    assert redactions_only.edits_and_references == [] and redactions_only.threads == {}


async def _statements_of_format(rooms: RoomService, database: Database, monkeypatch: pytest.MonkeyPatch,
                                event_ids: list[str], user_id: str) -> tuple[list[str], list[dict[str, Any]]]:
    statements: list[str] = []
    async with database.connection() as conn:
        stored = await rooms.stores.events.get_many(conn, event_ids)
        _record(conn, statements, monkeypatch)
        formatted = await rooms.loader.format(conn, [stored[e] for e in event_ids],
                                              user_id=user_id, device_id=None)
    return statements, formatted


def _record(conn: Connection, statements: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("fetch", "fetchrow", "fetchval", "execute"):
        original = getattr(conn, name)

        async def recorded(sql: str, *args: Any, _original: Any = original) -> Any:
            statements.append(sql)
            return await _original(sql, *args)

        monkeypatch.setattr(conn, name, recorded)


async def test_a_new_message_is_formatted_in_one_statement(
        rooms: RoomService, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    room_id = await make_room(rooms, preset="public_chat")
    await rooms.membership.join(BOB, room_id)
    message = await _send(rooms, room_id, {"msgtype": "m.text", "body": "hi"})
    statements, formatted = await _statements_of_format(rooms, database, monkeypatch, [message], BOB)
    assert len(statements) == 1, statements  # what a woken /sync pays for one new message
    assert "redactions" in statements[0] and "event_relations" in statements[0]
    assert formatted[0]["content"]["body"] == "hi" and "m.relations" not in formatted[0]["unsigned"]


async def test_bundles_and_redactions_come_from_the_one_read(
        rooms: RoomService, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    room_id = await make_room(rooms, preset="public_chat")
    await rooms.membership.join(BOB, room_id)
    root = await _send(rooms, room_id, {"msgtype": "m.text", "body": "root"})
    edit = await _send(rooms, room_id, {**_rel("m.replace", root), "m.new_content": {"body": "e"}})
    redacted_root = await _send(rooms, room_id, {"msgtype": "m.text", "body": "root 2"})
    await _send(rooms, room_id, {**_rel("m.replace", redacted_root), "m.new_content": {"body": "e2"}})
    ref = await _send(rooms, room_id, _rel("m.reference", redacted_root), sender=BOB)
    await rooms.send.redact(ALICE, None, room_id, redacted_root, None, "fr3")

    statements, formatted = await _statements_of_format(rooms, database, monkeypatch,
                                                        [root, redacted_root], BOB)
    relation_reads = [s for s in statements if "event_relations" in s or "redactions" in s]
    # One for the events; one for the edit, bundled inside (it bundles nothing itself).
    assert len(relation_reads) == 2, relation_reads
    assert "event_relations" not in relation_reads[1]
    assert formatted[0]["unsigned"]["m.relations"]["m.replace"]["event_id"] == edit
    # A redacted event's edits are not bundled; its references still are.
    assert "redacted_because" in formatted[1]["unsigned"]
    assert formatted[1]["unsigned"]["m.relations"] == {"m.reference": {"chunk": [{"event_id": ref}]}}


async def test_no_relations_are_read_when_no_event_can_have_a_bundle(
        rooms: RoomService, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    room_id = await make_room(rooms)
    root = await _send(rooms, room_id, {"msgtype": "m.text", "body": "root"})
    edit = await _send(rooms, room_id, {**_rel("m.replace", root), "m.new_content": {"body": "e"}})
    await _send(rooms, room_id, _rel("m.reference", edit))
    reaction = await _send(rooms, room_id, {"m.relates_to": {"rel_type": "m.annotation", "event_id": root,
                                                             "key": "👍"}}, event_type="m.reaction")
    topic = await rooms.send.set_state(ALICE, room_id, "m.room.topic", "", {"topic": "t"})
    statements, formatted = await _statements_of_format(rooms, database, monkeypatch,
                                                        [edit, reaction, topic], ALICE)
    assert not any("event_relations" in s for s in statements), statements
    assert any("redactions" in s for s in statements)
    assert all("m.relations" not in e["unsigned"] for e in formatted)
