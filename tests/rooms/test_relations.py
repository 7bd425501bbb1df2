"""Relations as derived rows of the one persistence path, and bundled aggregations
computed in batch."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.clock import FakeClock
from homeserver.events.pdu import Pdu
from homeserver.rooms.relations import Relation, relation_of
from homeserver.rooms.service import RoomService
from homeserver.storage.database import Connection, Database
from tests.rooms.conftest import ALICE, BOB, make_room

_txn = iter(range(10**6))


async def _send(rooms: RoomService, room_id: str, content: dict[str, Any], sender: str = ALICE,
                event_type: str = "m.room.message") -> str:
    return await rooms.send.send_message(sender, None, room_id, event_type, content, f"t{next(_txn)}")


def _rel(rel_type: str, target: str, **extra: Any) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": "x", "m.relates_to": {"rel_type": rel_type, "event_id": target, **extra}}


def test_relation_of() -> None:
    assert relation_of({"m.relates_to": {"rel_type": "m.thread", "event_id": "$a"}}) == Relation("$a", "m.thread", None)
    assert relation_of({"m.relates_to": {"rel_type": "m.annotation", "event_id": "$a", "key": "👍"}}) == \
        Relation("$a", "m.annotation", "👍")
    for bad in ({}, {"m.relates_to": "x"}, {"m.relates_to": {"m.in_reply_to": {"event_id": "$a"}}},
                {"m.relates_to": {"rel_type": "m.thread", "event_id": 5}},
                {"m.relates_to": {"rel_type": "m.thread", "event_id": "not-an-id"}},
                {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$a"}}):
        assert relation_of(bad) is None


async def test_rows_are_written_and_removed_in_the_event_transaction(rooms: RoomService, database: Database) -> None:
    room_id = await make_room(rooms)
    root = await _send(rooms, room_id, {"msgtype": "m.text", "body": "root"})
    reply = await _send(rooms, room_id, _rel("m.thread", root))
    async with database.connection() as conn:
        row = await rooms.stores.relations.get(conn, reply)
    assert row is not None and (row.relates_to_id, row.rel_type, row.sender) == (root, "m.thread", ALICE)

    async def failing(conn: Connection, pdu: Pdu, stream_ordering: int) -> None:
        raise RuntimeError("derived write failed")

    rooms.persister.derived_writers.append(failing)
    with pytest.raises(RuntimeError):
        await _send(rooms, room_id, _rel("m.thread", root))
    rooms.persister.derived_writers.remove(failing)
    async with database.connection() as conn:
        summaries = await rooms.stores.relations.thread_summaries(conn, [root], ALICE)
    assert summaries[root].count == 1  # the failed event and its relation rolled back together

    await rooms.send.redact(ALICE, None, room_id, reply, None, "r1")
    async with database.connection() as conn:
        assert await rooms.stores.relations.get(conn, reply) is None
        assert await rooms.stores.relations.thread_summaries(conn, [root], ALICE) == {}


async def test_bundles_are_batched(rooms: RoomService, database: Database, clock: FakeClock,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    room_id = await make_room(rooms, preset="public_chat")
    await rooms.membership.join(BOB, room_id)
    roots = []
    for i in range(12):
        root = await _send(rooms, room_id, {"msgtype": "m.text", "body": f"m{i}"})
        roots.append(root)
        await _send(rooms, room_id, _rel("m.thread", root), sender=BOB)
        clock.advance(10)
        await _send(rooms, room_id, {**_rel("m.replace", root), "m.new_content": {"body": f"e{i}"}})
        await _send(rooms, room_id, _rel("m.reference", root), sender=BOB)

    async def count_queries(event_ids: list[str]) -> tuple[int, list[dict[str, Any]]]:
        calls = 0
        async with database.connection() as conn:
            stored = await rooms.stores.events.get_many(conn, event_ids)
            for name in ("fetch", "fetchrow"):
                original = getattr(conn, name)

                async def counted(*args: Any, _original: Any = original) -> Any:
                    nonlocal calls
                    calls += 1
                    return await _original(*args)

                monkeypatch.setattr(conn, name, counted)
            formatted = await rooms.loader.format(conn, [stored[e] for e in event_ids],
                                                  user_id=BOB, device_id=None)
        return calls, formatted

    few, formatted_few = await count_queries(roots[:2])
    many, formatted_many = await count_queries(roots)
    assert few == many
    for i, event in enumerate(formatted_many):
        relations = event["unsigned"]["m.relations"]
        assert relations["m.replace"]["content"]["m.new_content"] == {"body": f"e{i}"}
        assert relations["m.thread"]["count"] == 1 and relations["m.thread"]["current_user_participated"]
        assert len(relations["m.reference"]["chunk"]) == 1
    assert formatted_few == formatted_many[:2]
