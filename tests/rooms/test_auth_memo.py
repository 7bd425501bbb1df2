"""Plain events of one sender and type built on one state share their auth events and
verdict (rooms/auth_memo.py): checked once, kept from committed batches only, and never
for a refusal, a state event or a redaction."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.errors import Forbidden
from homeserver.rooms import persistence
from homeserver.rooms.auth_memo import AuthMemo, memo_key
from homeserver.rooms.persistence import TxnKey
from homeserver.rooms.service import RoomService
from homeserver.storage.database import Database
from tests.rooms.conftest import ALICE, BOB, make_room
from tests.rooms.test_persistence import _POISON


def _message(room_id: str, sender: str = ALICE, body: str = "hi") -> dict[str, Any]:
    return {"type": "m.room.message", "room_id": room_id, "sender": sender,
            "content": {"body": body}}


def _count_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    checked: list[str] = []
    real = persistence.check_auth_rules

    def counting(pdu: Any, *args: Any) -> None:
        checked.append(pdu.type)
        real(pdu, *args)
    monkeypatch.setattr(persistence, "check_auth_rules", counting)
    return checked


def test_only_plain_events_have_a_key() -> None:
    assert memo_key({"type": "m.room.message", "sender": ALICE}, 7, True) == (
        7, ALICE, "m.room.message", True)
    assert memo_key({"type": "m.room.topic", "sender": ALICE, "state_key": ""}, 7, False) is None
    assert memo_key({"type": "m.room.redaction", "sender": ALICE}, 7, False) is None


def test_the_memo_is_bounded() -> None:
    memo = AuthMemo(size=2)
    entry: Any = object()
    memo.remember({(1, ALICE, "a", False): entry, (2, ALICE, "a", False): entry})
    assert memo.get((1, ALICE, "a", False)) is entry  # now the most recent
    memo.remember({(3, ALICE, "a", False): entry})
    assert len(memo) == 2 and memo.get((2, ALICE, "a", False)) is None


async def test_a_senders_messages_are_checked_once_per_state(
        rooms: RoomService, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    room_id = await make_room(rooms, preset="public_chat")
    checked = _count_checks(monkeypatch)
    first = await rooms.persister.send(_message(room_id))
    second = await rooms.persister.send(_message(room_id, body="again"))
    assert checked == ["m.room.message"]
    assert first.pdu.auth_event_ids == second.pdu.auth_event_ids
    # Another sender, another type: checked on their own.
    await rooms.persister.send({**_message(room_id), "type": "m.reaction"})
    assert checked == ["m.room.message", "m.reaction"]
    # A state change is a new state: checked again, and the state event itself too.
    await rooms.persister.send({"type": "m.room.topic", "room_id": room_id, "sender": ALICE,
                                "state_key": "", "content": {"topic": "t"}})
    third = await rooms.persister.send(_message(room_id))
    assert checked == ["m.room.message", "m.reaction", "m.room.topic", "m.room.message"]
    assert third.pdu.auth_event_ids == first.pdu.auth_event_ids


async def test_a_refusal_is_never_kept(
        rooms: RoomService, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    room_id = await make_room(rooms, preset="public_chat")
    checked = _count_checks(monkeypatch)
    for _ in range(2):
        with pytest.raises(Forbidden):
            await rooms.persister.send(_message(room_id, sender=BOB))
    assert checked == ["m.room.message", "m.room.message"]
    # Once Bob has joined (a new state), his messages are allowed.
    await rooms.membership.join(BOB, room_id)
    await rooms.persister.send(_message(room_id, sender=BOB))


async def test_a_rolled_back_batch_leaves_no_verdict(
        rooms: RoomService, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    room_id = await make_room(rooms, preset="public_chat")
    await database.execute(_POISON[database.engine])
    checked = _count_checks(monkeypatch)
    with pytest.raises(Exception):  # noqa: B017 (the engine's own error type)
        await rooms.persister.send(_message(room_id), txn=TxnKey(ALICE, "DEV", "poison"))
    assert not len(rooms.persister._allowed)
    await rooms.persister.send(_message(room_id))
    assert checked == ["m.room.message", "m.room.message"]
    assert len(rooms.persister._allowed) == 1
