"""Rule 10 (v12 numbering): m.room.power_levels events."""

from __future__ import annotations

import pytest

from homeserver.state.auth_rules import AuthError
from tests.state.room_factory import ALICE, BOB, CAROL, Room, standard_room


def pl_event(room: Room, sender: str, content: dict):
    return room.event("m.room.power_levels", sender, content, "")


def rejected(room: Room, event, match: str) -> None:
    with pytest.raises(AuthError, match=match):
        room.check(event)


def _room_with_mod(version: str = "10") -> Room:
    """Alice 100, Bob 50 (a moderator), Carol 10; all joined."""
    room = standard_room(version, "public", users={BOB: 50, CAROL: 10})
    room.add(
        "m.room.power_levels",
        ALICE,
        {
            "users": {ALICE: 100, BOB: 50, CAROL: 10},
            "state_default": 50,
            "events": {"m.room.name": 50},
        },
    )
    room.member(BOB, "join")
    room.member(CAROL, "join")
    return room


# -- 10.1–10.3: shape ---------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"]
)
@pytest.mark.parametrize("value", ["50", 50.0, True, None])
def test_v10_named_levels_must_be_integers(key, value):
    room = standard_room("10")
    rejected(room, pl_event(room, ALICE, {"users": {ALICE: 100}, key: value}), "10.1")


@pytest.mark.parametrize("key", ["events", "notifications"])
@pytest.mark.parametrize("value", [{"x": "50"}, [], "x", {"x": None}])
def test_v10_events_and_notifications_must_be_integer_maps(key, value):
    room = standard_room("10")
    rejected(room, pl_event(room, ALICE, {"users": {ALICE: 100}, key: value}), "10.2")


def test_string_levels_accepted_before_v10():
    room = standard_room("9")
    content = {"users": {ALICE: "100", BOB: " +50 "}, "ban": "50", "events": {"m.room.name": "050"}}
    room.check(pl_event(room, ALICE, content))


@pytest.mark.parametrize("value", ["1.5", "ten", "1_000", "", "٣"])
def test_bad_string_user_levels_rejected_before_v10(value):
    room = standard_room("9")
    rejected(room, pl_event(room, ALICE, {"users": {ALICE: 100, BOB: value}}), "10.3")


def test_float_user_levels_allowed_in_v1_to_5_only():
    room = standard_room("5")
    room.check(pl_event(room, ALICE, {"users": {ALICE: 100, BOB: 50.57}}))
    room = standard_room("6")
    rejected(room, pl_event(room, ALICE, {"users": {ALICE: 100, BOB: 50.57}}), "10.3")


@pytest.mark.parametrize("version", ["1", "10", "12"])
@pytest.mark.parametrize("users", [[], "x", {"bob": 50}, {"@bob": 50}, {BOB: "x"}, {BOB: None}])
def test_users_must_map_user_ids_to_integers(version, users):
    room = standard_room(version)
    rejected(room, pl_event(room, ALICE, {"users": users}), "10.3")


def test_v10_string_user_level_is_rejected():
    room = standard_room("10")
    rejected(room, pl_event(room, ALICE, {"users": {ALICE: 100, BOB: "50"}}), "10.3")


def test_users_may_be_absent():
    room = standard_room("12")
    room.check(pl_event(room, ALICE, {"ban": 60}))


# -- 10.4: v12 creators ------------------------------------------------------------


def test_v12_creator_cannot_be_listed_in_users():
    room = standard_room("12")
    rejected(room, pl_event(room, ALICE, {"users": {ALICE: 100}}), "10.4")


def test_v12_additional_creator_cannot_be_listed_in_users():
    room = Room("12", create_content={"additional_creators": [BOB]})
    room.member(ALICE, "join")
    rejected(room, pl_event(room, ALICE, {"users": {BOB: 50}}), "10.4")
    room.check(pl_event(room, ALICE, {"users": {CAROL: 50}}))


def test_v11_creator_may_be_listed_in_users():
    room = standard_room("11")
    room.check(pl_event(room, ALICE, {"users": {ALICE: 100}}))


# -- 10.5: first power levels ------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "10", "11", "12"])
def test_first_power_levels_are_allowed(version):
    room = Room(version)
    room.member(ALICE, "join")
    room.check(pl_event(room, ALICE, {"users": {BOB: 10**6}, "ban": 10**6}))


def test_first_power_levels_still_need_state_default_level():
    room = Room("10")
    room.member(ALICE, "join")
    room.add("m.room.join_rules", ALICE, {"join_rule": "public"})
    room.member(BOB, "join")
    rejected(room, pl_event(room, BOB, {"users": {BOB: 100}}), "8:")


# -- 10.6: named levels ------------------------------------------------------------


def test_named_level_change_within_own_level():
    room = _room_with_mod()
    base = dict(room.state[("m.room.power_levels", "")].content)
    room.check(pl_event(room, BOB, base | {"kick": 40}))
    room.check(pl_event(room, BOB, base | {"kick": 50}))


def test_named_level_raised_above_own_is_rejected():
    room = _room_with_mod()
    base = dict(room.state[("m.room.power_levels", "")].content)
    rejected(room, pl_event(room, BOB, base | {"kick": 51}), "10.6.2")


def test_named_level_above_own_cannot_be_lowered_or_removed():
    room = _room_with_mod()
    base = dict(room.state[("m.room.power_levels", "")].content) | {"ban": 60}
    room.add("m.room.power_levels", ALICE, base)
    rejected(room, pl_event(room, BOB, base | {"ban": 10}), "10.6.1")
    without = {k: v for k, v in base.items() if k != "ban"}
    rejected(room, pl_event(room, BOB, without), "10.6.1")


def test_string_and_int_of_same_value_is_not_a_change():
    room = _room_with_mod("9")
    base = dict(room.state[("m.room.power_levels", "")].content) | {"ban": 60}
    room.add("m.room.power_levels", ALICE, base)
    room.check(pl_event(room, BOB, base | {"ban": "60"}))


# -- 10.7–10.8: events and notifications -------------------------------------------


def test_events_entry_changes():
    room = _room_with_mod()
    base = dict(room.state[("m.room.power_levels", "")].content)
    room.check(pl_event(room, BOB, base | {"events": {"m.room.name": 20, "m.room.topic": 50}}))
    rejected(room, pl_event(room, BOB, base | {"events": {"m.room.name": 51}}), "10.8")
    room.add(
        "m.room.power_levels",
        ALICE,
        base | {"events": {"m.room.name": 50, "m.room.tombstone": 100}},
    )
    rejected(room, pl_event(room, BOB, base | {"events": {"m.room.name": 50}}), "10.7")


@pytest.mark.parametrize("version, enforced", [("5", False), ("6", True), ("12", True)])
def test_notifications_enforced_from_v6(version, enforced):
    room = _room_with_mod(version)
    base = dict(room.state[("m.room.power_levels", "")].content)
    if room.rv.privileged_creators:
        base["users"] = {BOB: 50, CAROL: 10}
    room.add("m.room.power_levels", ALICE, base | {"notifications": {"room": 100}})
    event = pl_event(room, BOB, base | {"notifications": {"room": 0}})
    if enforced:
        rejected(room, event, "10.7")
    else:
        room.check(event)


# -- 10.9–10.10: users ---------------------------------------------------------------


def test_user_changes():
    room = _room_with_mod()
    base = dict(room.state[("m.room.power_levels", "")].content)
    users = base["users"]
    room.check(pl_event(room, BOB, base | {"users": users | {CAROL: 50}}))  # up to own level
    room.check(pl_event(room, BOB, base | {"users": {ALICE: 100, BOB: 50}}))  # remove lower
    rejected(room, pl_event(room, BOB, base | {"users": users | {CAROL: 51}}), "10.10")
    rejected(room, pl_event(room, BOB, base | {"users": users | {ALICE: 0}}), "10.9")
    rejected(room, pl_event(room, BOB, base | {"users": users | {BOB: 100}}), "10.10")


def test_user_may_lower_themselves():
    room = _room_with_mod()
    base = dict(room.state[("m.room.power_levels", "")].content)
    room.check(pl_event(room, BOB, base | {"users": base["users"] | {BOB: 0}}))


def test_cannot_demote_a_peer_at_the_same_level():
    room = _room_with_mod()
    base = dict(room.state[("m.room.power_levels", "")].content)
    room.add("m.room.power_levels", ALICE, base | {"users": base["users"] | {CAROL: 50}})
    rejected(room, pl_event(room, BOB, base | {"users": base["users"] | {CAROL: 0}}), "10.9")


def test_v12_creator_may_set_any_level():
    room = standard_room("12", users={BOB: 50})
    room.check(pl_event(room, ALICE, {"users": {BOB: 10**15}, "ban": 10**15}))
