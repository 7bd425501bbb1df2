"""Power-level helpers: parsing per room version, defaults, creators."""

from __future__ import annotations

import math

import pytest

from homeserver.events.pdu import Pdu
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.state.power_levels import (
    get_creators,
    get_named_level,
    get_notification_level,
    get_required_level,
    get_user_power_level,
    is_valid_user_id,
    parse_level,
)
from tests.state.room_factory import ALICE, BOB, CAROL, Room

V = KNOWN_ROOM_VERSIONS


def _pl(room: Room, content: dict) -> Pdu:
    return room.event("m.room.power_levels", ALICE, content, "")


@pytest.mark.parametrize(
    "value, v1, v6, v10",
    [
        (50, 50, 50, 50),
        (-3, -3, -3, -3),
        ("50", 50, 50, None),
        (" +0050 ", 50, 50, None),
        ("-7", -7, -7, None),
        (50.9, 50, None, None),
        (float("inf"), None, None, None),
        (float("nan"), None, None, None),
        ("5.0", None, None, None),
        ("1_0", None, None, None),
        ("", None, None, None),
        (True, None, None, None),
        (None, None, None, None),
        ([1], None, None, None),
    ],
)
def test_parse_level(value, v1, v6, v10):
    assert parse_level(value, V["1"]) == v1
    assert parse_level(value, V["6"]) == v6
    assert parse_level(value, V["10"]) == v10


@pytest.mark.parametrize(
    "user_id, ok",
    [
        (ALICE, True),
        ("@a:[::1]:8448", True),
        ("@a:1.2.3.4", True),
        ("@Historical!User:example.org", True),
        ("@:example.org", False),
        ("alice:example.org", False),
        ("@alice", False),
        ("@a:b:c:d", False),
        ("@" + "a" * 250 + ":b.test", False),
        (7, False),
    ],
)
def test_is_valid_user_id(user_id, ok):
    assert is_valid_user_id(user_id) is ok


def test_creators_per_version():
    assert get_creators(Room("10").create) == {ALICE}
    assert get_creators(Room("10", create_content={"creator": BOB}).create) == {BOB}
    assert get_creators(Room("11", create_content={"creator": BOB}).create) == {ALICE}
    room = Room("12", create_content={"additional_creators": [BOB, CAROL]})
    assert get_creators(room.create) == {ALICE, BOB, CAROL}
    assert get_creators(Room("11", create_content={"additional_creators": [BOB]}).create) == {ALICE}
    assert get_creators(None) == set()


@pytest.mark.parametrize("version", ["1", "10", "11"])
def test_implicit_creator_level_without_power_levels(version):
    room = Room(version)
    assert get_user_power_level(ALICE, None, room.create) == 100
    assert get_user_power_level(BOB, None, room.create) == 0


def test_creator_has_no_special_level_once_power_levels_exist_before_v12():
    room = Room("11")
    pl = _pl(room, {"users": {BOB: 30}, "users_default": 5})
    assert get_user_power_level(ALICE, pl, room.create) == 5
    assert get_user_power_level(BOB, pl, room.create) == 30


def test_v12_creators_are_infinite():
    room = Room("12", create_content={"additional_creators": [BOB]})
    pl = _pl(room, {"users": {CAROL: 30}})
    for levels in (None, pl):
        assert get_user_power_level(ALICE, levels, room.create) == math.inf
        assert get_user_power_level(BOB, levels, room.create) == math.inf
    assert get_user_power_level(CAROL, pl, room.create) == 30
    assert get_user_power_level(CAROL, None, room.create) == 0


def test_string_user_level_before_v10():
    room = Room("9")
    pl = _pl(room, {"users": {BOB: "42"}, "users_default": "7"})
    assert get_user_power_level(BOB, pl, room.create) == 42
    assert get_user_power_level(CAROL, pl, room.create) == 7


def test_named_level_defaults():
    assert [get_named_level(n, None) for n in ("ban", "kick", "redact", "invite")] == [
        50,
        50,
        50,
        0,
    ]
    assert get_named_level("state_default", None) == 50
    assert get_named_level("events_default", None) == 0
    room = Room("10")
    assert get_named_level("ban", _pl(room, {"ban": 70})) == 70
    assert get_named_level("ban", _pl(room, {"ban": "70"})) == 50  # strings not accepted in v10


def test_required_level():
    room = Room("10")
    pl = _pl(room, {"events": {"m.room.name": 10}, "state_default": 60, "events_default": 5})
    assert get_required_level("m.room.name", True, pl) == 10
    assert get_required_level("m.room.topic", True, pl) == 60
    assert get_required_level("m.room.message", False, pl) == 5
    assert get_required_level("m.room.topic", True, None) == 50
    assert get_required_level("m.room.message", False, None) == 0


def test_notification_level():
    room = Room("10")
    assert get_notification_level("room", None) == 50
    assert get_notification_level("room", _pl(room, {"notifications": {"room": 20}})) == 20
