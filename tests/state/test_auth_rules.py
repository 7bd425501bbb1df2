"""Rules 6–11 (v12 numbering) for non-membership events, and the room-version special
cases: v1–5 m.room.aliases, v1–2 redactions."""

from __future__ import annotations

import pytest

from homeserver.state.auth_rules import AuthError
from tests.state.room_factory import ALICE, ALL_VERSIONS, BOB, CAROL, Room, standard_room


def rejected(room: Room, event, match: str) -> None:
    with pytest.raises(AuthError, match=match):
        room.check(event)


# -- 6: sender must be joined ------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_joined_sender_may_send_messages(version):
    room = standard_room(version)
    room.check(room.event("m.room.message", ALICE, {"body": "hi"}))


@pytest.mark.parametrize("prior", [None, "invite", "leave", "ban", "knock"])
def test_not_joined_sender_is_rejected(prior):
    room = standard_room("10", "knock")
    if prior:
        room.member(BOB, prior, sender=ALICE if prior in ("invite", "ban") else BOB)
    rejected(room, room.event("m.room.message", BOB, {"body": "hi"}), "6: sender is not joined")


# -- 7: m.room.third_party_invite --------------------------------------------------


def test_third_party_invite_event_needs_invite_level():
    room = standard_room("10", "public", users={BOB: 5})
    room.add("m.room.power_levels", ALICE, {"users": {ALICE: 100, BOB: 5}, "invite": 10})
    room.member(BOB, "join")
    content = {"display_name": "x", "public_key": "abc"}
    rejected(room, room.event("m.room.third_party_invite", BOB, content, "tok"), "7.1")
    room.check(room.event("m.room.third_party_invite", ALICE, content, "tok"))


def test_third_party_invite_event_ignores_state_default():
    # Rule 7 allows outright, before the state_default check of rule 8.
    room = standard_room("10", "public")
    room.member(BOB, "join")
    room.check(room.event("m.room.third_party_invite", BOB, {"public_key": "k"}, "tok"))


# -- 8: required power level -------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_state_events_need_state_default(version):
    room = standard_room(version, "public")
    room.member(BOB, "join")
    rejected(
        room,
        room.event("m.room.name", BOB, {"name": "x"}, ""),
        "8: m.room.name needs power level 50",
    )
    room.check(room.event("m.room.name", ALICE, {"name": "x"}, ""))


def test_events_map_overrides_defaults():
    room = standard_room("10", "public")
    room.add(
        "m.room.power_levels",
        ALICE,
        {"users": {ALICE: 100}, "events": {"m.room.name": 0, "m.room.message": 20}},
    )
    room.member(BOB, "join")
    room.check(room.event("m.room.name", BOB, {"name": "x"}, ""))
    rejected(room, room.event("m.room.message", BOB, {}), "needs power level 20")


def test_events_default_for_messages():
    room = standard_room("10", "public")
    room.add("m.room.power_levels", ALICE, {"users": {ALICE: 100}, "events_default": 1})
    room.member(BOB, "join")
    rejected(room, room.event("m.room.message", BOB, {}), "8:")
    room.add(
        "m.room.power_levels",
        ALICE,
        {"users": {ALICE: 100}, "events_default": 1, "users_default": 1},
    )
    room.check(room.event("m.room.message", BOB, {}))


def test_without_power_levels_creator_has_100_before_v12():
    room = Room("10")
    room.member(ALICE, "join")
    room.add("m.room.join_rules", ALICE, {"join_rule": "public"})
    room.member(BOB, "join")
    room.check(room.event("m.room.name", ALICE, {}, ""))
    rejected(room, room.event("m.room.name", BOB, {}, ""), "8:")
    room.check(room.event("m.room.message", BOB, {}))


def test_v11_creator_is_the_create_sender():
    room = Room("11", create_content={"creator": BOB})
    room.member(ALICE, "join")
    room.check(room.event("m.room.name", ALICE, {}, ""))


def test_v12_additional_creators_have_infinite_power():
    room = Room("12", create_content={"additional_creators": [BOB]})
    room.member(ALICE, "join")
    room.add("m.room.join_rules", ALICE, {"join_rule": "public"})
    room.add("m.room.power_levels", ALICE, {"events": {"m.room.name": 10**15}})
    room.member(BOB, "join")
    room.member(CAROL, "join")
    room.check(room.event("m.room.name", BOB, {}, ""))
    rejected(room, room.event("m.room.name", CAROL, {}, ""), "8:")


# -- 9: state keys starting with @ -------------------------------------------------


@pytest.mark.parametrize("version", ["1", "10", "12"])
def test_user_state_key_must_be_the_sender(version):
    room = standard_room(version)
    rejected(room, room.event("org.example.state", ALICE, {}, BOB), "9:")
    room.check(room.event("org.example.state", ALICE, {}, ALICE))
    room.check(room.event("org.example.state", ALICE, {}, "not-a-user"))


# -- 11: everything else -----------------------------------------------------------


def test_redaction_is_an_ordinary_event_from_v3():
    room = standard_room("3", "public")
    room.member(BOB, "join")
    room.check(room.event("m.room.redaction", BOB, {}, redacts="$somewhere:elsewhere.test"))


def test_redaction_level_comes_from_events_map():
    room = standard_room("11", "public")
    room.add(
        "m.room.power_levels", ALICE, {"users": {ALICE: 100}, "events": {"m.room.redaction": 30}}
    )
    room.member(BOB, "join")
    rejected(room, room.event("m.room.redaction", BOB, {"redacts": "$x"}), "8:")


# -- v1–2: the redaction rule ------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
def test_v1_redaction_of_own_server_event_is_allowed(version):
    room = standard_room(version, "public")
    room.member(BOB, "join")
    room.check(room.event("m.room.redaction", BOB, {}, redacts="$target:b.test"))


@pytest.mark.parametrize("version", ["1", "2"])
def test_v1_redaction_of_other_server_event_needs_redact_level(version):
    room = standard_room(version, "public")
    room.member(BOB, "join")
    rejected(room, room.event("m.room.redaction", BOB, {}, redacts="$target:a.test"), "v1 11")
    room.check(room.event("m.room.redaction", ALICE, {}, redacts="$target:b.test"))


def test_v1_redaction_compares_event_id_domains_not_sender():
    room = standard_room("1", "public")
    room.member(BOB, "join")
    event = room.event("m.room.redaction", BOB, {}, redacts="$target:b.test", event_id="$r:c.test")
    rejected(room, event, "v1 11")


def test_v1_redaction_without_redacts_needs_redact_level():
    room = standard_room("1", "public")
    room.member(BOB, "join")
    rejected(room, room.event("m.room.redaction", BOB, {}), "v1 11")


# -- v1–5: m.room.aliases ----------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "3", "5"])
def test_v1_aliases_need_only_the_sender_domain(version):
    room = standard_room(version, "invite")
    # Bob is not even joined: the special case allows before the membership rules.
    room.check(room.event("m.room.aliases", BOB, {"aliases": ["#x:b.test"]}, "b.test"))
    rejected(room, room.event("m.room.aliases", BOB, {"aliases": []}, "a.test"), "v1 4.2")
    rejected(room, room.event("m.room.aliases", BOB, {"aliases": []}), "v1 4.1")


@pytest.mark.parametrize("version", ["6", "10", "12"])
def test_aliases_are_ordinary_state_from_v6(version):
    room = standard_room(version, "public")
    room.member(BOB, "join")
    rejected(room, room.event("m.room.aliases", BOB, {"aliases": []}, "b.test"), "8:")
    room.check(room.event("m.room.aliases", ALICE, {"aliases": []}, "a.test"))
