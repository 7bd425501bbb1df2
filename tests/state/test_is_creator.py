"""`is_creator` answers exactly `user_id in get_creators(create)`, whatever the create
event holds (the auth rules ask it of every sender)."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.events.pdu import Pdu
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.state.power_levels import get_creators, is_creator
from tests.state.room_factory import ALICE, ALL_VERSIONS, BOB, CAROL

V = KNOWN_ROOM_VERSIONS

CONTENTS: list[dict[str, Any]] = [
    {},
    {"creator": ALICE},
    {"creator": BOB},
    {"creator": 1},
    {"creator": [ALICE]},
    {"additional_creators": [BOB]},
    {"additional_creators": [1, None, {"a": BOB}, BOB]},
    {"additional_creators": BOB},
    {"additional_creators": {BOB: 1}},
    {"creator": CAROL, "additional_creators": [CAROL, BOB]},
]


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("content", CONTENTS)
def test_is_creator_matches_get_creators(version: str, content: dict[str, Any]) -> None:
    create = Pdu({"type": "m.room.create", "state_key": "", "sender": ALICE, "content": content,
                  "prev_events": [], "auth_events": []}, V[version], event_id="$c")  # fmt: skip
    creators = get_creators(create)
    for user in (ALICE, BOB, CAROL, "@nobody:x"):
        assert is_creator(user, create) == (user in creators), user


def test_no_create_event_means_no_creator() -> None:
    assert not is_creator(ALICE, None)
